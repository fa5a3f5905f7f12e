"""MCP over the daemon's unix socket, with the official client, against a real ``contextd serve``.

The client is the SDK's streamable HTTP transport on an ``httpx2`` client (the HTTP library
mcp 2.x is built on) whose transport connects to the socket; the URL's host is a bare
``localhost``, which the daemon accepts over the socket only. Sessions are made through the
daemon's HTTP API (``POST /api/statusline``), as Claude Code's status line would.

reliability.md scenario 20: garbage, an oversized request line and half-open connections on the
socket do not disturb a good client using it at the same time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from mcp.client import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp.harness import SID3, TOOLS, ok
from tests.served import Served
from tests.test_server import SID, SID2

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
URL = "http://localhost/mcp"
# Context tokens per session, all on a 200k window: 50 %, 10 %, 95 %.
CONTEXT = {SID: 100_000, SID2: 20_000, SID3: 190_000}


def status_line(served: Served, sid: str, context: int, window: int = 200_000) -> None:
    usage = {"input_tokens": 3, "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": context - 1003, "output_tokens": 50}  # fmt: skip
    body = {"session_id": sid, "cwd": "/home/u/proj", "model": {"id": "claude-opus-4-6"},
            "context_window": {"context_window_size": window, "current_usage": usage}}  # fmt: skip
    status, reply = served.post("/api/statusline", body)
    assert status == 200, reply


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One daemon for the module, holding three sessions of the local user."""
    # Short temp root: a unix socket path must fit in 108 bytes.
    s = Served(tmp_path_factory.mktemp("uds"))
    s.start()
    try:
        for sid, context in CONTEXT.items():
            status_line(s, sid, context)
        yield s
    finally:
        if s.proc is not None and s.proc.poll() is None:
            assert s.stop() == 0
        else:
            s.stop(signal.SIGKILL)


@asynccontextmanager
async def over_socket(
    path: Path, *, headers: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The official client, connected to ``/mcp`` through the daemon's unix socket."""
    transport = httpx2.AsyncHTTPTransport(uds=str(path))
    async with (
        httpx2.AsyncClient(
            transport=transport, headers=headers, timeout=httpx2.Timeout(10.0)
        ) as http,
        Client(streamable_http_client(URL, http_client=http), mode=mode) as client,
    ):
        yield client


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(scenario)


def statuses(session: ClientSession) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def call() -> dict[str, Any]:
        return ok(await session.call_tool("context_status", {}))

    return call


# -- the tools over the socket ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_over_the_socket_the_client_initializes_lists_tools_and_calls_them(
    served: Served, mode: str
) -> None:
    """``legacy`` runs the initialize handshake; ``auto`` negotiates 2026-07-28."""

    async def scenario() -> tuple[str, str | None, set[str], dict[str, Any], dict[str, Any]]:
        async with over_socket(served.socket, headers={"X-Claude-Session-ID": SID3},
                               mode=mode) as client:  # fmt: skip
            info = client.server_info
            tools = {t.name for t in (await client.session.list_tools()).tools}
            status = ok(await client.session.call_tool("context_status", {}))
            listed = ok(await client.session.call_tool("list_sessions", {"user": "*"}))
            return (client.protocol_version, info.name if info else None, tools, status,
                    listed)  # fmt: skip

    version, name, tools, status, listed = run(scenario)
    assert name == "contextd"
    assert (version == "2026-07-28") == (mode == "auto")
    assert tools == TOOLS
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID3, "header")
    assert status["session_id"] == SID3
    assert (status["context_tokens"], status["context_window"]) == (190_000, 200_000)
    assert status["context_percent"] == 95.0
    assert status["threshold_state"] == "critical"
    assert status["recommendation"] == "checkpoint now (/compact)"
    assert status["project"] == "proj"
    assert status["checkpoints"] == 0
    rows = {s["session_id"]: s for s in listed["sessions"]}
    assert set(rows) == set(CONTEXT)
    assert {sid: row["context_tokens"] for sid, row in rows.items()} == CONTEXT
    assert {sid: row["is_me"] for sid, row in rows.items()} == {SID: False, SID2: False,
                                                                  SID3: True}  # fmt: skip
    assert rows[SID2]["threshold_state"] == "ok"


@pytest.mark.parametrize("header", ["X-Claude-Session-ID", "X-Claude-Code-Session-Id"])
def test_over_the_socket_a_session_header_names_the_caller(served: Served, header: str) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with over_socket(served.socket, headers={header: SID2}) as client:
            status = ok(await client.session.call_tool("context_status", {}))
            listed = ok(await client.session.call_tool("list_sessions", {}))
            return status, listed

    status, listed = run(scenario)
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID2, "header")
    assert (status["context_tokens"], status["threshold_state"]) == (20_000, "ok")
    assert status["recommendation"] == "ok"
    assert listed["resolved_session_id"] == SID2
    assert {s["session_id"]: s["is_me"] for s in listed["sessions"]} == {
        SID: False, SID2: True, SID3: False}  # fmt: skip


def client_process(
    served: Served, out: Path, *, orphan: bool, env: dict[str, str]
) -> dict[str, Any]:
    """Run :mod:`tests.mcp.socket_client` against ``served`` and return what it wrote."""
    argv = [sys.executable, "-m", "tests.mcp.socket_client", str(served.socket), str(out)]
    subprocess.run([*argv, *(["--orphan"] if orphan else [])], env=env, cwd=REPO,
                   check=True, timeout=30)  # fmt: skip
    deadline = time.monotonic() + 30  # an orphan writes after its parent has returned
    while not out.exists():
        assert time.monotonic() < deadline, "the socket client wrote nothing"
        time.sleep(0.05)
    data: dict[str, Any] = json.loads(out.read_text())
    assert "failure" not in data, data
    return data


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "CLAUDE"))}
    return {**env, **extra}


def test_over_the_socket_without_a_hint_the_caller_is_the_connection(
    served: Served, tmp_path: Path
) -> None:
    """No header, no ``_meta``, and a peer with no Claude Code process above it (an orphan,
    whatever runs the tests): the fallback, and context_status says why it cannot answer;
    naming the session explicitly still works."""
    data = client_process(served, tmp_path / "out.json", orphan=True, env=clean_env())
    listed, error = data["list_sessions"], data["context_status"]["error"]
    assert listed["resolved_by"] == "connection"
    assert listed["resolved_session_id"].startswith("conn_")
    assert not any(s["is_me"] for s in listed["sessions"])
    assert "could not tell which Claude Code session is calling" in error

    async def scenario() -> dict[str, Any]:
        async with over_socket(served.socket) as client:
            return ok(await client.session.call_tool("context_status", {"session_id": SID}))

    named = run(scenario)
    assert (named["session_id"], named["context_tokens"]) == (SID, 100_000)


def test_over_the_socket_the_peer_pid_names_the_claude_process_above_it(
    served: Served, tmp_path: Path
) -> None:
    """The client's parent (this test process) plays ``claude``: its sessions/<pid>.json names
    SID2, although the client inherited a stale ``CLAUDE_CODE_SESSION_ID`` (a /clear since)."""
    sessions = served.root / "sessions"
    sessions.mkdir(exist_ok=True)
    mine = sessions / f"{os.getpid()}.json"
    mine.write_text(json.dumps({"pid": os.getpid(), "sessionId": SID2}))
    try:
        env = clean_env(CLAUDE_CODE_SESSION_ID=SID3)
        data = client_process(served, tmp_path / "out.json", orphan=False, env=env)
    finally:
        mine.unlink()
    status, listed = data["context_status"], data["list_sessions"]
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID2, "peer_pid")
    assert (status["session_id"], status["context_tokens"]) == (SID2, 20_000)
    assert {s["session_id"]: s["is_me"] for s in listed["sessions"]} == {
        SID: False, SID2: True, SID3: False}  # fmt: skip


def test_over_the_socket_a_peer_without_a_sessions_file_is_named_by_its_environment(
    served: Served, tmp_path: Path
) -> None:
    """No sessions file anywhere above the client: the nearest CLAUDE_CODE_SESSION_ID (the
    client's own, as a tool Claude Code started would have it) names the session."""
    data = client_process(served, tmp_path / "out.json", orphan=False,
                          env=clean_env(CLAUDE_CODE_SESSION_ID=SID3))  # fmt: skip
    status = data["context_status"]
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID3, "peer_pid")
    assert status["context_tokens"] == 190_000


# -- reliability.md scenario 20: bad clients on the socket -------------------------------------


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def _drain(sock: socket.socket) -> bytes:
    """What the daemon answers before it closes (or ``b""`` if it just closes)."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return reply


class BadClients:
    """Bad clients of the socket, each on its own thread; half-open ones stay until closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replies: dict[str, bytes] = {}
        self.held: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def _spawn(self, name: str, action: Callable[[], bytes | None]) -> None:
        def body() -> None:
            try:
                reply = action()
                if reply is not None:
                    self.replies[name] = reply
            except BaseException as exc:  # noqa: BLE001  (reported by the test)
                self.errors.append(exc)

        thread = threading.Thread(target=body, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def garbage(self) -> None:
        def action() -> bytes:
            sock = _connect(self.path)
            with sock:
                sock.sendall(os.urandom(4096) + b"\r\n\r\n\x00\xff" * 64)
                sock.shutdown(socket.SHUT_WR)
                return _drain(sock)

        self._spawn("garbage", action)

    def oversized_line(self) -> None:
        def action() -> bytes:
            sock = _connect(self.path)
            with sock:
                try:
                    sock.sendall(b"POST /mcp?" + b"a" * (2 << 20) + b" HTTP/1.1\r\n")
                    sock.sendall(b"Host: localhost\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the daemon gave up on it mid-line: also fine
                return _drain(sock)

        self._spawn("oversized", action)

    def half_open(self) -> None:
        """A request cut off mid-body, one cut off mid-headers, and one that never speaks;
        all three stay connected until :meth:`close`."""
        body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"context_'
        partial = [
            b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nContent-Length: 4096\r\n\r\n" + body,
            b"POST /mcp HTTP/1.1\r\nHost: localh",
            b"",
        ]
        for data in partial:
            sock = _connect(self.path)
            if data:
                sock.sendall(data)
            self.held.append(sock)

    def join(self, timeout: float = 20.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still running"

    def close(self) -> None:
        for sock in self.held:
            sock.close()


def test_garbage_on_the_socket_does_not_affect_a_concurrent_good_client(served: Served) -> None:
    bad = BadClients(served.socket)

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        async with over_socket(served.socket, headers={"X-Claude-Session-ID": SID}) as client:
            call = statuses(client.session)
            results = [await call()]  # connected before the bad clients arrive
            bad.half_open()
            bad.garbage()
            bad.oversized_line()
            slowest = 0.0
            for _ in range(40):
                started = time.monotonic()
                results.append(await call())
                slowest = max(slowest, time.monotonic() - started)
                await anyio.sleep(0.01)
            # Half-open connections are still held; a new client connects and is served.
            async with over_socket(served.socket,
                                   headers={"X-Claude-Session-ID": SID2}) as other:  # fmt: skip
                results.append(ok(await other.session.call_tool("context_status", {})))
            return results, slowest

    try:
        results, slowest = run(scenario)
        bad.join()
    finally:
        bad.close()
    assert not bad.errors, bad.errors
    assert [r["context_tokens"] for r in results] == [100_000] * 41 + [20_000]
    assert all(r["resolved_by"] == "header" for r in results)
    assert slowest < 2.0
    # The bad requests got an HTTP error, or were closed without one; never a 2xx.
    for name in ("garbage", "oversized"):
        reply = bad.replies[name]
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), (name, reply[:200])
    # The daemon is still healthy and still serves the socket after they are gone.
    assert served.proc is not None
    assert served.proc.poll() is None
    assert served.get("/healthz")[0] == 200

    async def after() -> dict[str, Any]:
        async with over_socket(served.socket, headers={"X-Claude-Session-ID": SID}) as client:
            return await statuses(client.session)()

    assert run(after)["context_tokens"] == 100_000
