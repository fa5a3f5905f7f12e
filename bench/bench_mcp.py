"""MCP: the caller-resolution middleware's cost per request, and ``context_status`` round trips
over the daemon's unix socket.

Usage::

    python bench/bench_mcp.py [--calls 10000] [--round-trips 500] [--runs 3]
                              [--json bench/out/mcp.json]

(a) Middleware, in process: :class:`contextd.mcp.server.CallerResolution` over the daemon's
real :class:`~contextd.mcp.backend.DaemonBackend` (its session index and the PreToolUse
``ToolUseIndex``), with 500 published sessions, called ``--calls`` times per case with a
``call_next`` that returns at once, on one asyncio loop. Each call gets its own Starlette
``Request`` (built beforehand) so reading the headers is paid as in the server. Cases: the
header names a known session (Claude Code with ``X-Claude-Session-ID``); the header holds the
``unset`` placeholder and ``_meta`` carries a ``toolUseId`` a PreToolUse hook announced; no
hint at all (the connection fallback); ``tools/list``, which passes straight through; and a
unix-socket peer without hints (``peer_pid``): the request's scope carries the pid of a child
process of the bench (``sleep``), followed up to the bench process, whose
``sessions/<pid>.json`` names a
known session (two ``/proc`` reads per level and one file read): remembered for a second per
pid, and ``peer_pid_uncached`` forgets it before every call (a client's first call). The
same loop around ``call_next`` alone is the baseline; ``overhead`` is a case minus the
baseline at the same percentile. Target (issue 4): p99 < 1 ms.

(b) Round trip: a real ``contextd serve`` child holding 500 sessions (made through
``POST /api/statusline``); the official client (``mcp.client.Client``, streamable HTTP over an
``httpx2`` transport on the unix socket, protocol 2026-07-28, one POST per call as Claude Code
sends them) calls ``context_status`` ``--round-trips`` times in sequence on one client after
50 warm-up calls, naming its session in ``X-Claude-Session-ID``.

Every figure is the median over ``--runs`` runs of that run's percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from starlette.requests import Request

from contextd.daemon import Daemon
from contextd.identity import ToolUseIndex
from contextd.mcp.backend import DaemonBackend
from contextd.mcp.server import CallerResolution
from contextd.models import SessionSnapshot, SessionStatus
from contextd.peer import PEER_EXTENSION

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 500
TARGET_P99_MS = 1.0
USER = "3f2a9c0d1e4b5a67"


def session_ids(count: int, seed: int = 4) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values_ms), 4),
            "p99_ms": round(percentile(values_ms, 0.99), 4),
            "max_ms": round(max(values_ms), 4)}  # fmt: skip


# -- (a) the middleware, in process -----------------------------------------------------------


class _Published:
    """What :class:`DaemonBackend` reads of a daemon: the published sessions, the PreToolUse
    index and the clock."""

    def __init__(self, ids: list[str]) -> None:
        now = time.time()
        self.sessions = tuple(
            SessionSnapshot(
                session_id=sid,
                status=SessionStatus.ACTIVE,
                started_at=now - 600,
                last_activity=now,
                project="proj",
                user=USER,
                context_tokens=50_000 + i,
            )
            for i, sid in enumerate(ids)
        )
        self.tool_uses = ToolUseIndex()
        self.clock = time.time


def _request(headers: dict[str, str], peer_pid: int | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http", "method": "POST", "path": "/mcp", "query_string": b"",
        "client": ("127.0.0.1", 50_000), "server": ("127.0.0.1", 7323),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    if peer_pid is not None:  # what the daemon's protocol puts in for a unix-socket peer
        scope |= {"client": None, "extensions": {PEER_EXTENSION: {"pid": peer_pid}}}
    return Request(scope)


def _context(method: str, request: Request, meta: dict[str, Any] | None) -> Any:
    return ServerRequestContext[Any, Any](
        session=cast("Any", None), lifespan_context=None, protocol_version="2026-07-28",
        method=method, request_id=1, meta=cast("Any", meta), request=request,
    )  # fmt: skip


async def _time_calls(contexts: list[Any], call: Callable[[Any], Awaitable[object]]) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for ctx in contexts:
        started = clock()
        await call(ctx)
        out.append((clock() - started) / 1e6)
    return out


def middleware_run(calls: int, seed: int) -> dict[str, dict[str, float]]:
    ids = session_ids(SESSIONS)
    published = _Published(ids)
    backend = DaemonBackend(cast("Daemon", published))
    sessions_dir = Path(tempfile.mkdtemp(prefix="contextd-bench-")) / "sessions"
    sessions_dir.mkdir()
    (sessions_dir / f"{os.getpid()}.json").write_text(
        json.dumps({"pid": os.getpid(), "sessionId": ids[0]}))  # fmt: skip
    child = subprocess.Popen(["sleep", "600"])
    middleware = CallerResolution(backend, session_dirs=[sessions_dir])
    rng = random.Random(seed)
    now = time.time()
    tool_use_ids = []
    for i in range(1_000):
        tool_use_id = f"toolu_{i:024d}"
        published.tool_uses.add(tool_use_id, rng.choice(ids), now)
        tool_use_ids.append(tool_use_id)

    async def call_next(ctx: ServerRequestContext[Any, Any]) -> None:
        return None

    def build(kind: str) -> list[Any]:
        out = []
        for _ in range(calls):
            if kind == "header":
                ctx = _context("tools/call", _request({"x-claude-session-id": rng.choice(ids)}),
                               None)  # fmt: skip
            elif kind == "tool_use_id":
                meta = {"claudecode/toolUseId": rng.choice(tool_use_ids)}
                ctx = _context("tools/call", _request({"x-claude-session-id": "unset"}), meta)
            elif kind == "connection":
                ctx = _context("tools/call", _request({}), None)
            elif kind.startswith("peer_pid"):
                ctx = _context("tools/call", _request({}, peer_pid=child.pid), None)
            else:  # passes through
                ctx = _context("tools/list", _request({}), None)
            out.append(ctx)
        return out

    async def main() -> dict[str, dict[str, float]]:
        results: dict[str, dict[str, float]] = {}
        baseline = await _time_calls(build("header"), call_next)
        results["baseline_call_next_only"] = summary(baseline)
        for kind in ("header", "tool_use_id", "connection", "peer_pid", "peer_pid_uncached",
                     "tools_list_pass_through"):  # fmt: skip
            contexts = build(kind)
            forget = kind == "peer_pid_uncached"

            async def wrapped(ctx: Any, forget: bool = forget) -> object:
                if forget:  # every call walks /proc, as a client's first call does
                    middleware._peers.clear()
                return await middleware(ctx, call_next)

            await _time_calls(contexts[:200], wrapped)  # warm-up
            times = await _time_calls(contexts, wrapped)
            results[kind] = summary(times)
            results[kind]["overhead_p50_ms"] = round(
                statistics.median(times) - statistics.median(baseline), 4)  # fmt: skip
            results[kind]["overhead_p99_ms"] = round(
                percentile(times, 0.99) - percentile(baseline, 0.99), 4)  # fmt: skip
        return results

    try:
        return asyncio.run(main())
    finally:
        child.kill()
        child.wait()


# -- (b) context_status over the unix socket ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _post(port: int, path: str, body: object) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"content-type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return bool(json.loads(conn.getresponse().read()).get("ready"))
    except OSError:
        return False
    finally:
        conn.close()


async def round_trips(sock: Path, sid: str, count: int) -> list[float]:
    transport = httpx2.AsyncHTTPTransport(uds=str(sock))
    headers = {"X-Claude-Session-ID": sid}
    async with (
        httpx2.AsyncClient(
            transport=transport, headers=headers, timeout=httpx2.Timeout(10.0)
        ) as http,
        Client(streamable_http_client("http://localhost/mcp", http_client=http)) as client,
    ):
        session = client.session

        async def one() -> None:
            result = await session.call_tool("context_status", {})
            data = result.structured_content
            if result.is_error or data is None or data["session_id"] != sid:
                raise RuntimeError(f"unexpected context_status result: {result}")

        for _ in range(50):
            await one()
        out = []
        for _ in range(count):
            started = time.perf_counter_ns()
            await one()
            out.append((time.perf_counter_ns() - started) / 1e6)
        return out


def socket_runs(count: int, runs: int) -> list[dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="contextd-bench-mcp-"))
    (work / "claude" / "projects").mkdir(parents=True)
    sock = work / "run" / "contextd.sock"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "OTEL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "contextd", "serve", "--port", str(port), "--config-dir",
         str(work / "claude"), "--db", str(work / "state" / "contextd.db"),
         "--socket", str(sock), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _ready(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("contextd serve did not become ready")
            time.sleep(0.05)
        ids = session_ids(SESSIONS)
        for i, sid in enumerate(ids):
            context = 20_000 + 300 * i
            usage = {"input_tokens": 3, "cache_creation_input_tokens": 1000,
                     "cache_read_input_tokens": context - 1003, "output_tokens": 50}  # fmt: skip
            body = {"session_id": sid, "cwd": f"/home/u/p{i % 20}",
                    "model": {"id": "claude-opus-4-6"},
                    "context_window": {"context_window_size": 200_000,
                                       "current_usage": usage}}  # fmt: skip
            if _post(port, "/api/statusline", body) != 200:
                raise RuntimeError("status line refused")
        out = []
        for run in range(runs):
            times = asyncio.run(round_trips(sock, ids[run * 7 % SESSIONS], count))
            out.append(summary(times))
            print(f"round trip run {run + 1}: {json.dumps(out[-1])}", flush=True)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 4) for key in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--round-trips", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "mcp.json")
    args = ap.parse_args()

    middleware_runs = []
    for run in range(args.runs):
        middleware_runs.append(middleware_run(args.calls, seed=run))
        brief = {k: (v["p50_ms"], v["p99_ms"]) for k, v in middleware_runs[-1].items()}
        print(f"middleware run {run + 1} (p50, p99 ms): {json.dumps(brief)}", flush=True)
    middleware = {case: _median_of([r[case] for r in middleware_runs])
                  for case in middleware_runs[0]}  # fmt: skip
    socket = socket_runs(args.round_trips, args.runs)
    # The target is per request; a unix-socket client's first call in a second walks /proc
    # (``peer_pid_uncached``), reported beside it.
    steady = {k: v for k, v in middleware.items()
              if k not in ("baseline_call_next_only", "peer_pid_uncached")}  # fmt: skip
    worst_p99 = max(v["p99_ms"] for v in steady.values())
    machine = (f"{platform.machine()} {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    result = {
        "machine": machine,
        "sessions": SESSIONS,
        "middleware": {"calls_per_case": args.calls, "runs": middleware_runs,
                       "median": middleware, "worst_case_p99_ms": worst_p99,
                       "target_p99_ms": TARGET_P99_MS, "met": worst_p99 < TARGET_P99_MS},
        "context_status_over_unix_socket": {"calls": args.round_trips, "runs": socket,
                                            "median": _median_of(socket)},
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {"middleware": middleware, "context_status_over_unix_socket": _median_of(socket)},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
