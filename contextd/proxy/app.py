"""The API proxy's HTTP side: an ASGI app relaying every request to the upstream API.

Each request is forwarded with the client's own headers and credentials (hop-by-hop headers
dropped, ``accept-encoding: identity`` asked for so the tap can read the answer), to the same
path and query under the upstream base URL. The answer is relayed as it arrives: every chunk
read from upstream is written to the client before the next is read, byte for byte, and a slow
client slows the upstream read (no buffering in between). The tap (:mod:`contextd.proxy.tap`)
reads each chunk after it was passed on; its failure only ends the telemetry of that exchange.

Failures: a body over ``max_body`` → 413, a wrong ``Host`` → 421, a foreign browser ``Origin``
→ 403 (before anything is forwarded); upstream unreachable → 502, silent longer than the read
timeout before answering → 504 (JSON ``{"error", "field"}``). Once the answer has started, an
upstream failure closes the client's connection before the answer's end (the server does so
when the app returns without it), so a cut stream never looks complete. A client
that disconnects cancels the upstream request (its connection is closed).

Telemetry (:mod:`contextd.proxy.telemetry`) is handed to ``sink`` in a background task after
the answer has been relayed: it never delays a byte. Keys, prompts and completions are never
logged: log lines name exception types only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from contextd.config import Settings
from contextd.errors import ContextdError, UpstreamError, UpstreamTimeoutError
from contextd.events import ApiError
from contextd.ingest.transcripts import ResponseLine
from contextd.proxy.client import Headers, UpstreamClient, UpstreamResponse
from contextd.proxy.tap import Answer, UsageTap
from contextd.proxy.telemetry import Exchange, Item, exchange_items

log = logging.getLogger("contextd.proxy")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Sink = Callable[[list[Item], str], Awaitable[None]]
TapFactory = Callable[[str, str], UsageTap]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})  # fmt: skip
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"accept-encoding", b"expect"}


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The proxy's settings (see :mod:`contextd.config`, keys ``proxy_*``)."""

    upstream: str
    port: int
    max_body: int
    connect_timeout: float
    read_timeout: float
    session_header: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ProxyConfig:
        return cls(settings.proxy_upstream, settings.proxy_port, settings.proxy_max_body_bytes,
                   settings.proxy_connect_timeout, settings.proxy_read_timeout,
                   settings.proxy_session_header)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Request:
    """What goes upstream: method, path with query, headers, the whole body."""

    method: str
    target: str
    headers: Headers
    body: bytes


@dataclass(slots=True)
class _Outcome:
    """How one relay went (filled in as it goes)."""

    status: int | None = None
    headers: dict[str, str] | None = None
    tap: UsageTap | None = None
    failure: str | None = None
    done: bool = False


async def _problem(send: Send, status: int, message: str, field: str) -> None:
    body = orjson.dumps({"error": message, "field": field})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _forwarded(raw_headers: list[tuple[bytes, bytes]]) -> Headers:
    """The client's headers as sent upstream: hop-by-hop ones (and those ``Connection`` names)
    dropped, ``accept-encoding: identity`` so the tap can read the answer."""
    named = {
        name.strip().lower().encode("latin-1")
        for k, v in raw_headers if k.lower() == b"connection"
        for name in v.decode("latin-1").split(",")
    }  # fmt: skip
    forwarded = [
        (k, v) for k, v in raw_headers
        if k.lower() not in _NOT_FORWARDED and k.lower() not in named
    ]  # fmt: skip
    forwarded.append((b"accept-encoding", b"identity"))
    return forwarded


class Proxy:
    """The ASGI app of the API proxy (see the module docstring)."""

    def __init__(
        self,
        config: ProxyConfig,
        sink: Sink | None,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        tap: TapFactory = UsageTap,
    ) -> None:
        self.config = config
        self.sink = sink
        self.secret = secret
        self.clock = clock
        self.tap = tap
        port = config.port
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}
        connect, read = config.connect_timeout, config.read_timeout
        # Upstream is reached directly (no HTTP(S)_PROXY from the environment), as configured.
        self.client = UpstreamClient(config.upstream, connect_timeout=connect, read_timeout=read)
        self.dropped = 0  # exchanges whose telemetry an internal error dropped
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Let pending telemetry finish (bounded), then close the upstream connections."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self.client.close()

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets, no lifespan of its own (see contextd.proxy.mount)
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        refusal = self._refusal(headers)
        if refusal is not None:
            await _problem(send, *refusal)
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client left while sending
        if isinstance(body, tuple):
            await _problem(send, *body)
            return
        at = self.clock()
        outcome = _Outcome()
        try:
            target = scope.get("raw_path") or scope["path"].encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            request = _Request(scope["method"], target.decode("latin-1"),
                               _forwarded(raw_headers), body)  # fmt: skip
            await self._relay(request, receive, send, outcome)
        finally:
            answer = self._answer(outcome)
            self._record(Exchange(scope["path"], headers, body, at, outcome.status,
                                  outcome.headers, answer, outcome.failure))  # fmt: skip

    def _refusal(self, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if headers.get("host", "") not in self.hosts:
            return 421, "Host header not allowed", "Host"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return 403, "Origin not allowed", "Origin"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body):
            return 413, f"request body over {self.config.max_body} bytes", "body"
        return None

    async def _read_body(self, receive: Receive) -> bytes | tuple[int, str, str] | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body:  # chunked, or a lying Content-Length
                return 413, f"request body over {self.config.max_body} bytes", "body"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _relay(
        self, request: _Request, receive: Receive, send: Send, outcome: _Outcome
    ) -> None:
        """Forward, relay the answer, and cancel it all when the client disconnects."""
        forward = asyncio.ensure_future(self._forward(request, send, outcome))
        watch = asyncio.ensure_future(receive())
        try:
            while not forward.done():
                await asyncio.wait((forward, watch), return_when=asyncio.FIRST_COMPLETED)
                if watch.done() and not forward.done():
                    if watch.result()["type"] == "http.disconnect":
                        outcome.failure = "disconnected"
                        forward.cancel()
                        break
                    watch = asyncio.ensure_future(receive())
        finally:
            watch.cancel()
            forward.cancel()
        try:
            await forward
        except asyncio.CancelledError:
            if outcome.failure != "disconnected":
                raise

    async def _forward(self, request: _Request, send: Send, outcome: _Outcome) -> None:
        try:
            response = await self.client.open(
                request.method, request.target, request.headers, request.body
            )
        except UpstreamTimeoutError:
            outcome.failure = "timeout"
            await _problem(send, 504, "the API did not answer in time", "upstream")
            return
        except UpstreamError as exc:
            outcome.failure = "unreachable"
            await _problem(send, 502, f"cannot reach the API: {exc}", "upstream")
            return
        try:
            await self._stream(response, send, outcome)
        finally:
            response.close()

    async def _stream(self, response: UpstreamResponse, send: Send, outcome: _Outcome) -> None:
        headers = [(k, v) for k, v in response.headers if k not in HOP_BY_HOP]
        outcome.status = response.status
        outcome.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        outcome.tap = self._new_tap(response)
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})  # fmt: skip
        try:
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if outcome.tap is not None:
                    self._feed(outcome, chunk)
        except UpstreamError as exc:
            # Returning without the last body message makes the server close the client's
            # connection: a stream cut upstream must not end like a whole one.
            outcome.failure = "timeout" if isinstance(exc, UpstreamTimeoutError) else "broken"
            log.warning("proxy: the API's answer broke off (%s); the client's stream is cut", exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        outcome.done = True

    # -- telemetry (never allowed to disturb the relay) ----------------------------------------

    def _new_tap(self, response: UpstreamResponse) -> UsageTap | None:
        try:
            return self.tap(response.header(b"content-type"), response.header(b"content-encoding"))
        except Exception as exc:  # noqa: BLE001 (any tap failure only drops the telemetry)
            self._tap_failed(exc)
            return None

    def _feed(self, outcome: _Outcome, chunk: bytes) -> None:
        assert outcome.tap is not None
        try:
            outcome.tap.feed(chunk)
        except Exception as exc:  # noqa: BLE001 (any tap failure only drops the telemetry)
            self._tap_failed(exc)
            outcome.tap = None

    def _answer(self, outcome: _Outcome) -> Answer | None:
        if outcome.tap is None:
            return None
        try:
            return outcome.tap.answer()
        except Exception as exc:  # noqa: BLE001 (any tap failure only drops the telemetry)
            self._tap_failed(exc)
            return None

    def _tap_failed(self, exc: Exception) -> None:
        self.dropped += 1
        log.warning("proxy: telemetry of one exchange dropped (%s in the usage tap)",
                    type(exc).__name__)  # fmt: skip

    def _record(self, exchange: Exchange) -> None:
        if self.sink is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, exchange: Exchange) -> None:
        assert self.sink is not None
        try:
            items = exchange_items(exchange, self.secret, self.config.session_header)
            if not items:
                return
            kinds = {type(item) for item in items}
            counter = "proxy_requests"
            if ApiError in kinds:
                counter = "proxy_api_errors"
            elif ResponseLine in kinds:
                counter = "proxy_responses"
            await self.sink(items, counter)
        except ContextdError as exc:
            log.warning("proxy: telemetry not recorded: %s", exc)
        except Exception as exc:  # noqa: BLE001 (a background task's top level: log, go on)
            self.dropped += 1
            log.warning("proxy: telemetry not recorded (%s)", type(exc).__name__)
