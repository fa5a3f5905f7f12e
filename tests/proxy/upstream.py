"""A scripted upstream for the API proxy's tests: answers exactly the bytes it is told to.

Where :class:`tests.e2e.fake_anthropic.FakeAnthropic` plays the Messages API for the real CLI,
this one gives a test control of the wire: each request takes the next :class:`Script` (status,
headers, body chunks), and a :class:`Gate` between chunks holds the answer until the test opens
it — how a test shows that a chunk reached the client before the next was sent, and how it
holds a request open to disconnect its client. The server notes when a client closed the
connection before the answer was complete (:attr:`Upstream.closed`). Bodies are built with the
fake API's own wire forms (:func:`~tests.e2e.fake_anthropic.sse`, ``message``).
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.fake_anthropic import MODEL, Reply, message, sse

GATE_TIMEOUT = 30.0  # a gate no test opens releases after this (the test has failed by then)


@dataclass(frozen=True, slots=True)
class Gate:
    """A pause in an answer until the test sets ``event``."""

    event: threading.Event = field(default_factory=threading.Event)

    def open(self) -> None:
        self.event.set()


Chunk = bytes | Gate


@dataclass(frozen=True, slots=True)
class Script:
    """One answer: ``chunks`` are written as they come, chunked unless ``length`` is set."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream"),)
    chunks: tuple[Chunk, ...] = ()
    length: bool = False  # send a content-length (and the body in one piece) instead
    before: Gate | None = None  # hold the status line itself until opened
    close: bool = False  # close the connection after the answer (no keep-alive)
    interim: bool = False  # send "100 Continue" first
    drop: bool = False  # close the connection after the answer without announcing it
    eof: bool = False  # neither a length nor chunks: the body ends when the connection closes

    @property
    def body(self) -> bytes:
        """Every byte of the body, as a client must receive it."""
        return b"".join(c for c in self.chunks if isinstance(c, bytes))


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def streamed(
    reply: Reply, message_id: str, *, pieces: int = 3, request_id: str = "req_up_1",
    model: str = MODEL, extra: Sequence[tuple[str, str]] = (),
) -> Script:  # fmt: skip
    """``reply`` as an SSE answer cut into ``pieces`` chunks at arbitrary byte offsets."""
    body = sse(reply, message_id, model)
    step = max(1, len(body) // pieces)
    chunks = tuple(body[i : i + step] for i in range(0, len(body), step))
    headers = (("content-type", "text/event-stream; charset=utf-8"),
               ("request-id", request_id), *extra)  # fmt: skip
    return Script(200, headers, chunks)


def whole(reply: Reply, message_id: str, *, request_id: str = "req_up_1") -> Script:
    """``reply`` as the JSON answer to ``stream: false``."""
    body = json.dumps(message(reply, message_id, MODEL)).encode()
    headers = (("content-type", "application/json"), ("request-id", request_id))
    return Script(200, headers, (body,), length=True)


def error(
    status: int, kind: str, *, request_id: str = "req_up_err",
    extra: Sequence[tuple[str, str]] = (),
) -> Script:  # fmt: skip
    """An API error answer (``{"type": "error", "error": {...}}``)."""
    body = json.dumps({"type": "error", "error": {"type": kind, "message": "scripted"}}).encode()
    headers = (("content-type", "application/json"), ("request-id", request_id), *extra)
    return Script(status, headers, (body,), length=True)


class Upstream:
    """The scripted server on ``127.0.0.1`` (a free port). Requests beyond the script get 599."""

    def __init__(self, scripts: Sequence[Script] = (), tls: ssl.SSLContext | None = None) -> None:
        self.scripts = list(scripts)
        self.seen: list[Seen] = []
        self.closed: list[str] = []  # paths whose client left before the answer ended
        self.closed_event = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.connections = 0  # TCP connections accepted
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="upstream", daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def add(self, *scripts: Script) -> None:
        with self._lock:
            self.scripts.extend(scripts)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            gates = [c for s in self.scripts for c in (*s.chunks, s.before) if isinstance(c, Gate)]
        for gate in gates:
            gate.open()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _next(self, seen: Seen) -> Script | None:
        with self._lock:
            self.seen.append(seen)
            return self.scripts.pop(0) if self.scripts else None

    def _left(self, path: str) -> None:
        with self._lock:
            self.closed.append(path)
        self.closed_event.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with upstream._lock:
                    upstream.connections += 1

            def _gone(self) -> bool:
                """Whether the client closed its end (readable with nothing to read)."""
                sock: socket.socket = self.connection
                readable, _, _ = select.select([sock], [], [], 0)
                return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""

            def _wait(self, gate: Gate) -> bool:
                """Wait for ``gate``; False when the client left meanwhile."""
                for _ in range(int(GATE_TIMEOUT / 0.02)):
                    if gate.event.wait(0.02):
                        return not self._gone()
                    if self._gone():
                        return False
                return True

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path,
                            [(k.lower(), v) for k, v in self.headers.items()], body)  # fmt: skip
                script = upstream._next(seen)
                if script is None:
                    script = error(599, "unscripted")
                if script.before is not None and not self._wait(script.before):
                    upstream._left(self.path)
                    self.close_connection = True
                    return
                if script.interim:
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.send_response(script.status)
                for name, value in script.headers:
                    self.send_header(name, value)
                if script.length:
                    self.send_header("content-length", str(len(script.body)))
                elif not script.eof:
                    self.send_header("transfer-encoding", "chunked")
                if script.close:
                    self.send_header("connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command == "HEAD":
                    return
                if script.drop:
                    self.close_connection = True
                try:
                    self._body(script)
                except (BrokenPipeError, ConnectionResetError):
                    upstream._left(self.path)
                    self.close_connection = True

            def _body(self, script: Script) -> None:
                if script.length or script.eof:
                    self.close_connection = self.close_connection or script.eof
                    self.wfile.write(script.body)
                    self.wfile.flush()
                    return
                for chunk in script.chunks:
                    if isinstance(chunk, Gate):
                        if not self._wait(chunk):
                            upstream._left(self.path)
                            self.close_connection = True
                            return
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_HEAD(self) -> None:
                self._answer()

        return Handler
