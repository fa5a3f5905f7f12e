"""The API proxy's added latency: streamed responses through ``contextd serve --proxy`` against
the same responses straight from the upstream.

Usage::

    python bench/bench_proxy.py [--responses 200] [--runs 5] [--json bench/out/proxy.json]

The upstream is a small asyncio server in a child process (``--serve-upstream``, below): every
``POST`` gets a Messages API event stream (``message_start``, 12 text deltas, ``message_delta``,
``message_stop``; about 3.5 KB) written as 15 chunks of HTTP/1.1 chunked encoding, draining
between writes, over keep-alive connections. The daemon is a real ``contextd serve --proxy``
child (own state in a temp dir) forwarding to it, recording each response's telemetry (SQLite
commit) as in use. The client (this process) sends a 48 KB request body like Claude Code's,
with its session header and a key, over one keep-alive connection per path, and times on a raw
socket: **first byte** (request sent → first response byte) and **last byte** (→ the
terminating chunk). With ``--anonymous`` the proxied requests carry no key and no session, so
the tap still reads every answer but nothing is recorded (the cost of the telemetry's commit,
by difference). Per run: 20 warm-up requests, then ``--responses`` direct and
``--responses`` proxied, in alternating blocks of 20; each run's percentiles, then the median
of them over ``--runs``. *Added* = proxied - direct at the same percentile, per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_daemon import STEAL_LIMIT, cpu_times

SESSION = "be4c0000-0000-4000-8000-000000000001"
KEY = "sk-ant-api03-bench-key-000000000000000000000000"
WARMUP = 20
BLOCK = 20


def _events() -> list[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    usage = {"input_tokens": 12, "cache_creation_input_tokens": 1_500,
             "cache_read_input_tokens": 40_000, "output_tokens": 1}  # fmt: skip
    start = {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-opus-5-5",
        "content": [], "stop_reason": None, "usage": usage}}  # fmt: skip
    chunks = [
        event("message_start", start),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    text = "The quick brown fox jumps over the lazy dog. " * 4
    chunks += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": text}})
               for _ in range(12)]  # fmt: skip
    chunks.append(
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {**usage, "output_tokens": 240}})
        + event("message_stop", {"type": "message_stop"})
    )  # fmt: skip
    return chunks


async def _upstream(port_file: Path) -> None:
    chunks = _events()
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: req_bench\r\n"
            b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(head)
                for chunk in chunks:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Client:
    """One keep-alive connection; times one request at a time on the raw socket."""

    def __init__(self, port: int, body: bytes, *, anonymous: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        who = "" if anonymous else f"x-api-key: {KEY}\r\nx-claude-code-session-id: {SESSION}\r\n"
        self.request = (
            f"POST /v1/messages?beta=true HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\n{who}anthropic-version: 2023-06-01\r\n"
            f"user-agent: claude-cli/2.1.330 (external, sdk-cli)\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body

    def once(self) -> tuple[float, float]:
        """(first byte, last byte) in seconds after sending."""
        sock = self.sock
        started = time.perf_counter()
        sock.sendall(self.request)
        data = sock.recv(65536)
        first = time.perf_counter() - started
        if not data:
            raise ConnectionError("closed")
        while not data.endswith(b"\r\n0\r\n\r\n"):
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed mid-response")
            data += more
        return first, time.perf_counter() - started

    def close(self) -> None:
        self.sock.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(direct: Client, proxied: Client, responses: int) -> dict[str, float]:
    for _ in range(WARMUP):
        direct.once()
        proxied.once()
    times: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
    while len(times["proxy"]) < responses:
        for name, client in (("direct", direct), ("proxy", proxied)):
            times[name] += [client.once() for _ in range(min(BLOCK, responses - len(times[name])))]
    out: dict[str, float] = {}
    for name, pairs in times.items():
        for i, what in enumerate(("first", "last")):
            values = [p[i] * 1000 for p in pairs]
            out[f"{name}_{what}_p50"] = _pct(values, 0.50)
            out[f"{name}_{what}_p99"] = _pct(values, 0.99)
    for what in ("first", "last"):
        for q in ("p50", "p99"):
            out[f"added_{what}_{q}"] = out[f"proxy_{what}_{q}"] - out[f"direct_{what}_{q}"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--responses", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("bench/out/proxy.json"))
    parser.add_argument(
        "--anonymous",
        action="store_true",
        help="send no key and no session: the tap reads, nothing is recorded",
    )
    parser.add_argument("--serve-upstream", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        asyncio.run(_upstream(args.serve_upstream))
        return 0
    body = json.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 1000,
            "stream": True,
            "messages": [{"role": "user", "content": "x" * 48_000}],
        }
    ).encode()
    with tempfile.TemporaryDirectory(prefix="contextd-bench-proxy-") as scratch:
        tmp = Path(scratch)
        port_file = tmp / "upstream.port"
        upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port_file)])
        daemon: subprocess.Popen[bytes] | None = None
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.02)
            up_port = int(port_file.read_text())
            port, proxy_port = _free_port(), _free_port()
            (tmp / "claude" / "projects").mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
            env["CONTEXTD_PROXY_UPSTREAM"] = f"http://127.0.0.1:{up_port}"
            daemon = subprocess.Popen(
                [sys.executable, "-m", "contextd", "serve", "--port", str(port),
                 "--config-dir", str(tmp / "claude"), "--db", str(tmp / "state" / "c.db"),
                 "--socket", str(tmp / "run" / "c.sock"), "--log-level", "warning",
                 "--proxy", "--proxy-port", str(proxy_port)], env=env)  # fmt: skip
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            runs = []
            for i in range(args.runs):
                direct = Client(up_port, body)
                proxied = Client(proxy_port, body, anonymous=args.anonymous)
                steal_before, total_before = cpu_times()
                try:
                    figures = _run(direct, proxied, args.responses)
                finally:
                    direct.close()
                    proxied.close()
                steal_after, total_after = cpu_times()
                figures["cpu_steal_percent"] = round(
                    100 * (steal_after - steal_before) / max(1, total_after - total_before), 2
                )
                runs.append(figures)
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()
                                                   if k.startswith("added")))  # fmt: skip
        finally:
            for proc in (daemon, upstream):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=15)
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    # Runs during which the VM's host took CPU away measure the host, not contextd.
    calm = [r for r in runs if r["cpu_steal_percent"] < STEAL_LIMIT]
    summary_calm = {key: statistics.median(r[key] for r in calm) for key in runs[0]} if calm else {}
    print(f"median of {args.runs} runs, {args.responses} responses each (ms):")
    for key, value in summary.items():
        print(f"  {key:22} {value:8.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                     "python": platform.python_version(),
                                     "anonymous": args.anonymous,
                                     "responses": args.responses, "runs": runs,
                                     "median": summary, "runs_without_steal": len(calm),
                                     "median_without_steal": summary_calm}, indent=2))  # fmt: skip
    if summary_calm:
        print(f"median of the {len(calm)} runs without CPU steal (ms):")
        for key, value in summary_calm.items():
            print(f"  {key:22} {value:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
