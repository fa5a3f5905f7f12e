"""The API proxy served in-process for tests: a real uvicorn on a free loopback port.

:func:`running_proxy` serves :class:`contextd.proxy.app.Proxy` behind the same
:class:`~contextd.proxy.mount.ByPort` dispatcher the daemon uses, on a thread with its own event
loop, and records what the proxy hands its telemetry sink (:attr:`RunningProxy.received`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn

from contextd.proxy.app import Message, Proxy, ProxyConfig, Receive, Scope, Send, TapFactory
from contextd.proxy.mount import ByPort
from contextd.proxy.tap import UsageTap
from contextd.proxy.telemetry import Item

SECRET = b"\x01" * 32  # the install secret the tests' proxies hash keys with


async def _lifespan_only(scope: Scope, receive: Receive, send: Send) -> None:
    """The daemon's place in :class:`ByPort`: answers the lifespan, 404 for the rest."""
    if scope["type"] == "lifespan":
        while True:
            message: Message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"{message['type']}.complete"})
            if kind == "shutdown":
                return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@dataclass
class RunningProxy:
    proxy: Proxy
    port: int
    received: list[tuple[list[Item], str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, trust_env=False, timeout=10.0, **kwargs)

    def wait_received(self, count: int, timeout: float = 10.0) -> list[tuple[list[Item], str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.received)} telemetry deliveries, expected {count}")


@contextlib.contextmanager
def running_proxy(
    upstream: str,
    *,
    tap: TapFactory = UsageTap,
    max_body: int = 1024 * 1024,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    session_header: str | None = None,
) -> Iterator[RunningProxy]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port: int = sock.getsockname()[1]
    config = ProxyConfig(upstream, port, max_body, connect_timeout, read_timeout, session_header)
    received: list[tuple[list[Item], str]] = []

    async def sink(items: list[Item], counter: str) -> None:
        received.append((items, counter))

    proxy = Proxy(config, sink, SECRET, tap=tap)
    app = ByPort(_lifespan_only, proxy, port)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="critical",
                                           access_log=False, server_header=False,
                                           date_header=False))  # fmt: skip

    def serve() -> None:  # on uvloop when installed, as the daemon runs
        with asyncio.Runner(loop_factory=uvicorn.Config(app, loop="auto").get_loop_factory()) as r:
            r.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=serve, name="proxy-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the proxy did not start"
        time.sleep(0.01)
    try:
        yield RunningProxy(proxy, port, received)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
