"""The API proxy inside ``contextd serve``: its own loopback port, the daemon's engine.

The proxy listens on ``127.0.0.1:<proxy_port>`` (never elsewhere, whatever ``host`` says), in
the same uvicorn server as the daemon: :class:`ByPort` sends each connection to the proxy or
to the daemon's app by the local port it arrived on. A port of its own keeps the two apart:
the daemon's Guard (bearer token, 1 MiB body cap) does not apply to API calls, whose
``Authorization`` is the client's credential for the API and whose bodies run to megabytes.
"""

from __future__ import annotations

import sys

from contextd.daemon import Daemon
from contextd.identity import install_secret
from contextd.proxy.app import ASGIApp, Message, Proxy, ProxyConfig, Receive, Scope, Send
from contextd.proxy.telemetry import Item


class ByPort:
    """Route connections on ``port`` to ``proxy``, all others (and the lifespan) to ``main``;
    at shutdown the proxy's telemetry is drained and its connections closed first."""

    def __init__(self, main: ASGIApp, proxy: Proxy, port: int) -> None:
        self.main = main
        self.proxy = proxy
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            proxy = self.proxy

            async def draining() -> Message:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    # Before the daemon stops: pending telemetry still reaches its engine.
                    await proxy.aclose()
                return message

            await self.main(scope, draining, send)
            return
        server = scope.get("server")
        if server is not None and server[1] == self.port:
            await self.proxy(scope, receive, send)
        else:
            await self.main(scope, receive, send)


def daemon_proxy(daemon: Daemon) -> Proxy:
    """The proxy feeding ``daemon``: exchanges are committed like hook payloads."""

    async def sink(items: list[Item], counter: str) -> None:
        await daemon.observe(items, "proxy", counter=counter)

    secret = install_secret(daemon.settings.db.parent)
    return Proxy(ProxyConfig.from_settings(daemon.settings), sink, secret, clock=daemon.clock)


# The engine thread commits each exchange's telemetry while the event loop relays the next
# streams; with CPython's default 5 ms switch interval a relay can wait that long for the GIL.
SWITCH_INTERVAL = 0.0005


def mount(app: ASGIApp, daemon: Daemon) -> ByPort:
    """``app`` with the API proxy on ``daemon.settings.proxy_port`` (and a GIL switch interval
    short enough for relaying, see :data:`SWITCH_INTERVAL`)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    return ByPort(app, daemon_proxy(daemon), daemon.settings.proxy_port)
