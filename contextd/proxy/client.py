"""The proxy's upstream HTTP/1.1 client: pooled keep-alive connections, streamed answers.

Small on purpose, for the proxy's one job (measured in ``bench/bench_proxy.py``: a general
client's request building and pure-Python response parsing cost more than the rest of the
relay): the request is written at once (the proxy has the whole body), the answer is parsed by
httptools (llhttp, the parser uvicorn uses) and handed over chunk by chunk as it arrives, with
its transfer framing removed — the body bytes are exactly the upstream's. While the consumer
is slower than the upstream, reading pauses (at most ``_HIGH_WATER`` bytes are queued).

Timeouts: ``connect_timeout`` for the connection (TLS included), ``read_timeout`` for each wait
on the upstream (the answer's head, every next chunk). Closing an unfinished answer aborts its
connection, so the upstream sees the request cancelled. A kept-alive connection that turns out
to be closed before anything was read is replaced once by a fresh one.

Failures raise :class:`~contextd.errors.UpstreamError` subclasses.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

from contextd.errors import (
    UpstreamBrokenError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)

_HIGH_WATER = 256 * 1024
_END = b""  # queued when an answer is complete (bodies never queue an empty chunk)
Headers = list[tuple[bytes, bytes]]


class _Connection(asyncio.Protocol):
    """One upstream connection and the answer being read from it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.queue: deque[bytes | tuple[int, Headers]] = deque()
        self.queued = 0
        self.waiter: asyncio.Future[None] | None = None
        self.error: UpstreamError | None = None
        self.closed = False
        self.received = False  # any byte of the current answer
        self.complete = True  # no answer under way
        self.head_only = False
        self.headers: Headers = []
        self.paused = False
        self.interim = False  # the message being parsed is a 1xx
        self.until_eof = False  # the answer has neither a length nor chunks: EOF ends it

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            self._fail(UpstreamBrokenError("the API sent bytes outside an answer"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamBrokenError("the API's answer is not valid HTTP/1.1"))

    def eof_received(self) -> None:
        self.closed = True  # never reused; an answer under way fails in connection_lost,
        if self.until_eof and not self.complete:  # unless it is one that EOF ends
            self._push(_END)
            self.complete = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamBrokenError("the API closed the connection mid-answer"))

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, self.headers = self.headers, []
        self.interim = 100 <= status < 200
        if self.interim:
            return  # an interim answer (100 Continue): the real one follows
        names = {name for name, _ in headers}
        self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        self._push((status, headers))
        if self.head_only:  # an answer to HEAD has no body, whatever its length says
            self._push(_END)
            self.complete = True
            self.abort()  # llhttp would wait for that body: this connection is not reused

    def on_body(self, body: bytes) -> None:
        self._push(body)
        if self.queued > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.complete:
            self._push(_END)
            self.complete = True
            if not self.parser.should_keep_alive():
                self.abort()

    # -- consumer side -------------------------------------------------------------------------

    def _push(self, item: bytes | tuple[int, Headers]) -> None:
        self.queue.append(item)
        if isinstance(item, bytes):
            self.queued += len(item)
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self, timeout: float) -> bytes | tuple[int, Headers]:
        """The next piece of the answer: its head, a body chunk, or ``_END``."""
        while not self.queue:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self.waiter
            except TimeoutError:
                self.abort()
                raise UpstreamTimeoutError(f"the API sent nothing for {timeout:g}s") from None
        item = self.queue.popleft()
        if isinstance(item, bytes):
            self.queued -= len(item)
            if self.paused and self.queued < _HIGH_WATER // 4 and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
        return item

    def begin(self, request: bytes, head_only: bool) -> None:
        self.complete = False
        self.received = False
        self.head_only = head_only
        if not self.alive:
            raise UpstreamBrokenError("the API closed the connection")
        assert self.transport is not None
        self.transport.write(request)

    @property
    def alive(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    @property
    def reusable(self) -> bool:
        return self.complete and self.alive and self.error is None and not self.queue

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class UpstreamResponse:
    """An answer being received: ``status``, ``headers`` (names lower-cased), then
    :meth:`chunks`. Always :meth:`close` it (a finished answer's connection goes back to the
    pool; an unfinished one's is aborted)."""

    def __init__(
        self, client: UpstreamClient, conn: _Connection, status: int, headers: Headers
    ) -> None:
        self.client = client
        self.status = status
        self.headers = headers
        self._conn: _Connection | None = conn

    def header(self, name: bytes) -> str:
        return next((v.decode("latin-1") for k, v in self.headers if k == name), "")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer framing removed)."""
        conn = self._conn
        while conn is not None:
            item = await conn.next(self.client.read_timeout)
            if item == _END:
                return
            if isinstance(item, bytes):
                yield item

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self.client.release(conn)


class UpstreamClient:
    """Requests to one base URL (``http://`` or ``https://``, optionally with a path prefix)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = url.scheme == "https"
        self.hostname = url.hostname
        self.port = url.port or (443 if self.tls else 80)
        default = 443 if self.tls else 80
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        self.host_header = (host if self.port == default else f"{host}:{self.port}").encode()
        self.prefix = url.path.rstrip("/").encode()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self.ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection, self.hostname, self.port, ssl=self.ssl,
                    server_hostname=self.hostname if self.tls else None,
                )  # fmt: skip
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"no connection to the API within {self.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise UpstreamUnreachableError(f"cannot connect to the API ({exc})") from None
        return conn

    def _encode(self, method: str, target: str, headers: Headers, body: bytes) -> bytes:
        lines = [b"%s %s%s HTTP/1.1\r\nhost: %s\r\n" % (
            method.encode(), self.prefix, target.encode("latin-1"), self.host_header)]  # fmt: skip
        lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def open(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        """Send a request (``target``: path and query) and wait for the answer's head."""
        request = self._encode(method, target, headers, body)
        while True:
            self._idle = [c for c in self._idle if c.alive]
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            try:
                conn.begin(request, head_only=method == "HEAD")
                head = await conn.next(self.read_timeout)
            except UpstreamBrokenError:
                conn.abort()
                if reused and not conn.received:
                    continue  # a kept-alive connection the API had closed: once more, afresh
                raise
            except BaseException:
                conn.abort()  # cancelled, timed out: the API sees the request dropped
                raise
            assert isinstance(head, tuple)
            return UpstreamResponse(self, conn, *head)

    def release(self, conn: _Connection) -> None:
        self._idle = [c for c in self._idle if c.alive]
        if conn.reusable and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle = []
