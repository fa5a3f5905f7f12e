"""A stand-in central contextd for forwarding tests: answers ``POST /v1/session-events`` like
the real one (202 with counts, or a status the test chooses) and keeps every body."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: Capture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(body)
        self.server.paths.append(self.path)
        self.server.tokens.append(self.headers.get("authorization"))
        status = self.server.status(body)
        count = len(json.loads(body)["records"])
        answer = json.dumps({"accepted": count, "duplicates": 0} if status == 202
                            else {"error": "no", "field": "records"}).encode()  # fmt: skip
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Capture(ThreadingHTTPServer):
    bodies: list[bytes]
    paths: list[str]
    tokens: list[str | None]
    status: Callable[[bytes], int]


@contextmanager
def capturing(port: int, status: Callable[[bytes], int] = lambda _: 202) -> Iterator[Capture]:
    server = Capture(("127.0.0.1", port), _Handler)
    server.bodies, server.paths, server.tokens, server.status = [], [], [], status
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
