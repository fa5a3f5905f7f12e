"""The composition root of ``contextd serve``: HTTP app, listeners and lifespan.

Surfaces (all JSON unless noted; field names documented in the README):

* ingest: ``POST /hooks`` (Claude Code ``type: "http"`` hooks), ``POST /api/statusline``,
  ``POST /api/session/start`` and ``/api/session/end`` (anthropic-spy compatible);
* read: ``GET /api/sessions``, ``/api/sessions/{id}``, ``/api/stats``, ``/api/events``,
  ``/api/context``, ``/healthz``, each with ``?user=<id>`` filtering;
* session history (:mod:`contextd.records`): ``POST /v1/session-events`` (records from other
  machines), ``GET /v1/session-records``;
* ``GET /metrics`` (Prometheus text exposition);
* ``/mcp``: the MCP server (:mod:`contextd.mcp`) over streamable HTTP.

Every request first passes :class:`Guard`: Host and Origin allow-lists (DNS rebinding), the
bearer token when one is configured, and the body size cap (413 before parsing).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import hmac
import logging
import math
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contextd import __version__
from contextd.config import Settings
from contextd.daemon import Daemon
from contextd.errors import ConfigError, NotKeptError, OptionError, StoreError
from contextd.events import Compaction
from contextd.exporters import names
from contextd.exporters.prometheus import SessionCollector, render
from contextd.ingest.hooks import (
    HookPayload,
    SessionEndPayload,
    SessionId,
    SessionStartPayload,
    StatusLinePayload,
    end_observations,
    hook_observations,
    start_observations,
    status_line_observations,
)
from contextd.mcp import DaemonBackend, build_mcp, http_app
from contextd.models import SessionEvent, SessionSnapshot, SessionStatus
from contextd.peer import PEER_EXTENSION, peer_credentials
from contextd.records.model import RecordBatch, SessionRecord
from contextd.records.store import RecordQuery
from contextd.sessions import EngineConfig
from contextd.usage.options import parse_options, parse_report
from contextd.views import event_view, iso, session_view, threshold_state

log = logging.getLogger("contextd")
P = TypeVar("P", bound=BaseModel)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Hook event names Claude Code 2.1.330 sends; anything else is counted as "other".
HOOK_EVENTS = frozenset({
    "PreToolUse", "PostToolUse", "PostToolUseFailure", "PostToolBatch", "Notification",
    "UserPromptSubmit", "UserPromptExpansion", "SessionStart", "SessionEnd", "Stop",
    "StopFailure", "SubagentStart", "SubagentStop", "PreCompact", "PostCompact",
    "PreModelSwitch", "PostModelSwitch", "PermissionRequest", "PermissionDenied", "Setup",
    "TeammateIdle", "TaskCreated", "TaskCompleted", "Elicitation", "ElicitationResult",
    "ConfigChange", "WorktreeCreate", "WorktreeRemove", "InstructionsLoaded", "CwdChanged",
    "FileChanged", "DirectoryAdded", "MessageDisplay",
})  # fmt: skip
_ROUTES = frozenset({
    "/hooks", "/api/statusline", "/api/session/start", "/api/session/end", "/api/sessions",
    "/api/stats", "/api/events", "/api/context", "/healthz", "/metrics", "/mcp",
    "/api/checkpoint", "/v1/session-events", "/v1/session-records",
})  # fmt: skip
_TEMPLATES = (("/api/sessions/", "/api/sessions/{id}"), ("/api/tool-uses/", "/api/tool-uses/{id}"))


def _templated(path: str) -> str:
    """The latency histogram's ``route`` label of a path with an id in it (else "other")."""
    for prefix, template in _TEMPLATES:
        if path.startswith(prefix):
            return template
    return "other"


# Over the unix socket, clients send a bare name (the MCP SDK sends "localhost").
SOCKET_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "contextd"})


class RequestError(Exception):
    """A bad request, answered as ``{"error": message, "field": field}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> Response:
        return problem(self.status, self.message, self.field)


class CheckpointPayload(BaseModel):
    """``POST /api/checkpoint``: an explicit checkpoint (what the MCP tool
    ``record_checkpoint`` sends when ``contextd mcp`` runs as a client of the daemon)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    session_id: SessionId
    trigger: Literal["explicit"] = "explicit"
    pre_tokens: Annotated[int, Field(ge=0)] | None = None
    post_tokens: Annotated[int, Field(ge=0)] | None = None


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def problem(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, object] = {"error": message}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def parse(body: bytes, model: type[P]) -> P:
    """Decode and validate a JSON body; a problem names the offending field."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, "request body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise RequestError(422, "request body must be a JSON object", "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestError(422, f"{field}: {first['msg']}", field) from None


def allowed_hosts(settings: Settings) -> set[str]:
    """The Host header values accepted over TCP."""
    port = settings.port
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", *settings.allowed_hosts}
    if not settings.loopback:
        hosts.add(f"{settings.host}:{port}")
    return hosts


class Guard:
    """ASGI middleware: Host/Origin checks, bearer token, body cap, latency histogram."""

    def __init__(self, app: ASGIApp, settings: Settings, latency: Histogram) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.socket_hosts = SOCKET_HOSTS
        self.origins = {f"http://{h}" for h in self.hosts}
        self.token = settings.token.encode() if settings.token else None
        self.max_body = settings.max_body_bytes
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, timed_send)
                return
            body = await self._read_body(scope, receive)
            if isinstance(body, Response):
                await body(scope, receive, timed_send)
                return
            await self.app(scope, _replay(body), timed_send)
        finally:
            path = scope.get("path", "")
            route = path if path in _ROUTES else _templated(path)
            self.latency.labels(route, str(status["code"])).observe(time.perf_counter() - started)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        via_socket = scope.get("client") is None or not scope["client"] or not isinstance(
            scope["client"][1], int
        )  # fmt: skip
        if host not in self.hosts and not (via_socket and host in self.socket_hosts):
            return problem(421, "Host header not allowed", "Host")
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return problem(403, "Origin not allowed", "Origin")
        if self.token is not None:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + self.token):
                return problem(401, "a valid bearer token is required", "Authorization")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return problem(413, f"request body over {self.max_body} bytes", "body")
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Response:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:  # chunked or lying Content-Length: stop reading
                return problem(413, f"request body over {self.max_body} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise RequestError(422, f"{name} must be an integer", name) from None


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RequestError(422, f"{name} must be seconds since the epoch", name)
    return value


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class Api:
    """The route handlers of one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.engine = daemon.settings.engine
        self.registry = CollectorRegistry()
        self.registry.register(
            SessionCollector(
                lambda: daemon.sessions,  # the published tuple; the collector keeps live ones
                lambda: daemon.counters,
                max_series=daemon.settings.max_series,
                usage=lambda: daemon.usage_metrics,
            )
        )
        self.latency = Histogram(
            names.HTTP_DURATION.family, names.HTTP_DURATION.help,
            list(names.HTTP_DURATION.labels), registry=self.registry, unit="seconds",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )  # fmt: skip
        self._background: set[asyncio.Task[int]] = set()

    def routes(self) -> list[Route]:
        return [
            Route("/hooks", self.hooks, methods=["POST"]),
            Route("/api/statusline", self.statusline, methods=["POST"]),
            Route("/api/session/start", self.session_start, methods=["POST"]),
            Route("/api/session/end", self.session_end, methods=["POST"]),
            Route("/api/checkpoint", self.checkpoint, methods=["POST"]),
            Route("/api/sessions", self.sessions),
            Route("/api/sessions/{session_id}", self.session_detail),
            Route("/api/tool-uses/{tool_use_id}", self.tool_use),
            Route("/api/stats", self.stats),
            Route("/api/events", self.events),
            Route("/api/context", self.context),
            Route("/api/usage", self.usage),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            Route("/v1/session-events", self.session_events, methods=["POST"]),
            Route("/v1/session-records", self.session_records),
        ]

    def _follow_transcript(self, path: str | None) -> None:
        """Read the transcript a payload names right away (the watcher would, a bit later)."""
        inside = self.daemon.transcript_under_roots(path) if path else None
        if inside is not None and self.daemon.ready:
            task = asyncio.create_task(self.daemon.ingest([inside]))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- ingest ----------------------------------------------------------------------------

    async def hooks(self, request: Request) -> Response:
        try:
            payload = parse(await request.body(), HookPayload)
        except RequestError as exc:
            return exc.response()
        event = payload.hook_event_name
        now = self.daemon.clock()
        if event == "PreToolUse" and payload.tool_use_id:
            self.daemon.tool_uses.add(payload.tool_use_id, payload.session_id, now)
        await self.daemon.observe(hook_observations(payload, now),
                                  event if event in HOOK_EVENTS else "other")  # fmt: skip
        self._follow_transcript(payload.transcript_path)
        return json_response({})

    async def statusline(self, request: Request) -> Response:
        try:
            payload = parse(await request.body(), StatusLinePayload)
        except RequestError as exc:
            return exc.response()
        now = self.daemon.clock()
        await self.daemon.observe(status_line_observations(payload, now), "StatusLine")
        self._follow_transcript(payload.transcript_path)
        return json_response({"ok": True})

    async def session_start(self, request: Request) -> Response:
        try:
            payload = parse(await request.body(), SessionStartPayload)
        except RequestError as exc:
            return exc.response()
        await self.daemon.observe(start_observations(payload, self.daemon.clock()),
                                  "SessionStart")  # fmt: skip
        return json_response({"success": True, "message": "Session started",
                              "session_key": f"session:{payload.session_id}"})  # fmt: skip

    async def session_end(self, request: Request) -> Response:
        try:
            payload = parse(await request.body(), SessionEndPayload)
        except RequestError as exc:
            return exc.response()
        await self.daemon.observe(end_observations(payload, self.daemon.clock()), "SessionEnd")
        return json_response({"success": True, "message": "Session ended"})

    async def checkpoint(self, request: Request) -> Response:
        """Record an explicit checkpoint of a session the daemon holds; answers its view."""
        try:
            payload = parse(await request.body(), CheckpointPayload)
        except RequestError as exc:
            return exc.response()
        sid = payload.session_id
        if not any(s.session_id == sid for s in self.daemon.sessions):
            return problem(404, "no such session", "session_id")
        checkpoint = Compaction(sid, self.daemon.clock(), payload.trigger,
                                pre_tokens=payload.pre_tokens, post_tokens=payload.post_tokens,
                                source="mcp")  # fmt: skip
        await self.daemon.observe([checkpoint], "record_checkpoint")
        after = next((s for s in self.daemon.sessions if s.session_id == sid), None)
        if after is None:  # expired and dropped in the meantime
            return problem(404, "no such session", "session_id")
        return json_response(session_view(after, self.engine))

    # -- read ------------------------------------------------------------------------------

    def _live(self, request: Request) -> list[SessionSnapshot]:
        user = request.query_params.get("user") or None
        return [s for s in self.daemon.sessions if s.live and (user is None or s.user == user)]

    async def sessions(self, request: Request) -> Response:
        if request.query_params.get("all") in ("1", "true", "yes"):
            user = request.query_params.get("user") or None
            rows = await self.daemon.run(self.daemon.ingestor.store.sessions)
            chosen = [s for s in rows if user is None or s.user == user]
        else:
            chosen = sorted(self._live(request), key=lambda s: -s.last_activity)
        return json_response({
            "active_count": sum(1 for s in chosen if s.live),
            "sessions": [self._view(s) for s in chosen],
        })  # fmt: skip

    def _view(self, snap: SessionSnapshot) -> dict[str, object]:
        """A session as the JSON API shows it: with ``is_me`` (the daemon's own user)."""
        return {**session_view(snap, self.engine), "is_me": snap.user == self.daemon.user}

    async def session_detail(self, request: Request) -> Response:
        sid = request.path_params["session_id"]
        ingestor = self.daemon.ingestor

        def load() -> tuple[SessionSnapshot | None, list[SessionEvent]]:
            snap = ingestor.manager.session(sid) or ingestor.store.session(sid)
            return snap, ingestor.store.events(sid, 50) if snap else []

        snap, events = await self.daemon.run(load)
        user = request.query_params.get("user") or None
        if snap is None or (user is not None and snap.user != user):
            return problem(404, "no such session", "session_id")
        return json_response({**self._view(snap),
                              "events": [event_view(e) for e in events]})  # fmt: skip

    async def tool_use(self, request: Request) -> Response:
        """The session a ``PreToolUse`` hook announced a tool use for (while the short-lived
        index holds it): how ``contextd mcp`` joins an MCP call's ``claudecode/toolUseId``."""
        tool_use_id = request.path_params["tool_use_id"]
        sid = self.daemon.tool_uses.session(tool_use_id, self.daemon.clock())
        if sid is None:
            return problem(404, "no such tool use (or it expired)", "tool_use_id")
        return json_response({"tool_use_id": tool_use_id, "session_id": sid})

    async def stats(self, request: Request) -> Response:
        live = self._live(request)
        return json_response({
            **aggregate(live, self.engine),
            "ingest": dict(self.daemon.counters),
            "uptime_seconds": round(self.daemon.clock() - self.daemon.started_at, 3),
            # Objects the cyclic GC no longer walks (contextd.daemon.settle_heap).
            "gc_frozen_objects": gc.get_freeze_count(),
        })  # fmt: skip

    async def events(self, request: Request) -> Response:
        user = request.query_params.get("user") or None
        sid = request.query_params.get("session_id")
        try:
            after = _int_param(request, "after", 0)
            limit = min(500, max(1, _int_param(request, "limit", 100)))
        except RequestError as exc:
            return exc.response()
        owners = {s.session_id: s.user for s in self.daemon.sessions}
        chosen = [
            e for e in self.daemon.events
            if e.seq > after and (sid is None or e.session_id == sid)
            and (user is None or owners.get(e.session_id) == user)
        ][-limit:]  # fmt: skip
        return json_response({"events": [event_view(e) for e in chosen],
                              "next_after": chosen[-1].seq if chosen else after})  # fmt: skip

    async def context(self, request: Request) -> Response:
        sid = request.query_params.get("session_id")
        live = [s for s in self._live(request) if sid is None or s.session_id == sid]
        if not live:
            return problem(404, "no live session matches", "session_id" if sid else "user")
        snap = max(live, key=lambda s: s.last_activity)
        state = threshold_state(snap, self.engine)
        return json_response({
            "session_id": snap.session_id,
            "current_tokens": snap.context_tokens,
            "limit_tokens": snap.window_tokens,
            "usage_pct": round(snap.percent, 2),
            "warning_level": "normal" if state == "ok" else state,
            "compacts": snap.checkpoints,
            "tokens_saved": snap.tokens_saved,
            "last_activity": iso(snap.last_activity),
        })  # fmt: skip

    async def usage(self, request: Request) -> Response:
        """``GET /api/usage``: the live view, or ``report=daily|session`` (contextd.usage)."""
        params = dict(request.query_params)
        try:
            report, options = parse_report(params.get("report")), parse_options(params)
        except OptionError as exc:
            return problem(400, exc.detail, exc.field)
        service = self.daemon.usage

        def compute() -> dict[str, object]:
            service.refresh()  # lines appended since the last refresh are in this answer
            answer = service.report(report, options)
            return {**answer, "source": "daemon", "coverage": service.coverage()}

        try:
            return json_response(await asyncio.to_thread(compute))
        except NotKeptError as exc:  # older than the daemon keeps: the CLI reads transcripts
            return problem(422, exc.detail, exc.field)

    # -- session history (contextd.records) ------------------------------------------------

    async def session_events(self, request: Request) -> Response:
        """``POST /v1/session-events``: one session record, or ``{"records": [...]}``; stored
        idempotently (a record whose key is there is a duplicate); 202 once committed."""
        history = self.daemon.history
        if history is None:
            return problem(503, "the record store is not open yet")
        body = await request.body()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return problem(400, "request body is not valid JSON", "body")
        try:
            if isinstance(data, dict) and "records" in data:
                records = parse(body, RecordBatch).records
            else:
                records = [parse(body, SessionRecord)]
        except RequestError as exc:
            return exc.response()
        added = await asyncio.to_thread(history.store.add, records)
        return json_response({"accepted": added.accepted, "duplicates": added.duplicates}, 202)

    async def session_records(self, request: Request) -> Response:
        """``GET /v1/session-records?user=&project=&since=&until=&limit=`` (times: epoch
        seconds): stored records, oldest first, each with ``is_me``."""
        history = self.daemon.history
        if history is None:
            return problem(503, "the record store is not open yet")
        params = request.query_params
        try:
            since, until = _float_param(request, "since"), _float_param(request, "until")
            limit = min(10_000, max(1, _int_param(request, "limit", 1000)))
        except RequestError as exc:
            return exc.response()
        query = RecordQuery(identity=params.get("user") or None, since=since, until=until,
                            project=params.get("project") or None, limit=limit)  # fmt: skip
        found = await asyncio.to_thread(history.store.records, query)
        me = self.daemon.user
        return json_response({"records": [{**r.as_json(), "is_me": r.identity_hash == me}
                                          for r in found]})  # fmt: skip

    async def healthz(self, request: Request) -> Response:
        daemon = self.daemon
        return json_response({
            "status": "ok", "ready": daemon.ready, "version": __version__,
            "uptime_seconds": round(daemon.clock() - daemon.started_at, 3),
            "live_sessions": sum(1 for s in daemon.sessions if s.live),
        })  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        return Response(render(self.registry), media_type=CONTENT_TYPE_LATEST)


def aggregate(live: list[SessionSnapshot], engine: EngineConfig) -> dict[str, object]:
    """Totals over live sessions, as ``/api/stats`` reports them."""
    percents = [s.percent for s in live]
    states = [threshold_state(s, engine) for s in live]
    tokens = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0}
    for s in live:
        for key, value in s.tokens.as_dict().items():
            tokens[key] += value
    return {
        "sessions": {"live": len(live),
                     "active": sum(1 for s in live if s.status is SessionStatus.ACTIVE),
                     "idle": sum(1 for s in live if s.status is SessionStatus.IDLE)},
        "context": {"total_tokens": sum(s.context_tokens for s in live),
                    "average_percent": round(sum(percents) / len(percents), 2) if live else 0.0,
                    "max_percent": round(max(percents), 2) if live else 0.0,
                    "warning": states.count("warning"), "critical": states.count("critical")},
        "thresholds": {"warn_crossings": sum(s.warn_crossings for s in live),
                       "critical_crossings": sum(s.critical_crossings for s in live)},
        "checkpoints": sum(s.checkpoints for s in live),
        "tokens_saved": sum(s.tokens_saved for s in live),
        "tokens": {**tokens, "total": sum(tokens.values())},
    }  # fmt: skip


def build_app(daemon: Daemon, *, start_daemon: bool = True) -> Guard:
    """The HTTP application of ``daemon`` (its lifespan starts and stops the daemon)."""
    api = Api(daemon)
    sessions_dirs = [root / "sessions" for root in daemon.roots]  # for unix-socket peers
    mcp = build_mcp(DaemonBackend(daemon), session_dirs=sessions_dirs)
    hosts = allowed_hosts(daemon.settings)
    mcp_app = http_app(mcp, hosts=hosts | SOCKET_HOSTS, origins={f"http://{h}" for h in hosts})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start_daemon:
            await daemon.start()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            if start_daemon:
                await daemon.stop()

    async def unavailable(request: Request, exc: Exception) -> Response:
        # Nothing was committed, so nothing may be acknowledged: the client should retry.
        return problem(503, f"state not saved: {exc}")

    app = Starlette(
        routes=[*api.routes(), Route("/mcp", mcp_app)],
        lifespan=lifespan,
        exception_handlers={StoreError: unavailable},
    )
    return Guard(app, daemon.settings, api.latency)


class PeerCredHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol, adding a unix-socket peer's credentials to every
    request scope (``extensions["contextd.peer"]``, see :mod:`contextd.peer`): the MCP caller
    resolution follows the peer's pid to the Claude Code session it runs under."""

    peer: dict[str, int | None] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = peer_credentials(transport.get_extra_info("socket"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.peer is not None:
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope.setdefault("extensions", {})[PEER_EXTENSION] = dict(self.peer)


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then; without it,
    # every keep-alive response after the first waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is in use (is contextd already running?)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """Listen on ``path`` (mode 0600, in a 0700 directory, with no window where it is wider).

    A socket left by a killed instance is reclaimed; a live instance's never is.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # stale
        else:
            raise ConfigError(f"another contextd is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(512)
    return sock


def proxy_listener(settings: Settings) -> list[socket.socket]:
    """The API proxy's socket (always 127.0.0.1, see :mod:`contextd.proxy`), when enabled."""
    if not settings.proxy:
        return []
    if settings.proxy_port == settings.port:
        raise ConfigError(f"proxy_port: {settings.proxy_port} is the daemon's own port")
    return [bind_tcp("127.0.0.1", settings.proxy_port)]


def with_proxy(app: ASGIApp, daemon: Daemon) -> ASGIApp:
    """``app``, plus the API proxy on its own port when ``settings.proxy`` is on."""
    if not daemon.settings.proxy:
        return app
    from contextd.proxy.mount import mount  # noqa: PLC0415 (httpx only when the proxy runs)

    log.info("API proxy on http://127.0.0.1:%d → %s", daemon.settings.proxy_port,
             daemon.settings.proxy_upstream)  # fmt: skip
    return mount(app, daemon)


def serve(settings: Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit code."""
    if not settings.loopback and not settings.token:
        raise ConfigError(
            f"refusing to listen on {settings.host} without a token: set CONTEXTD_TOKEN"
        )
    tcp = bind_tcp(settings.host, settings.port)
    listeners = [tcp]
    try:
        listeners.append(bind_unix(settings.socket))
        listeners += proxy_listener(settings)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    daemon = Daemon(settings, settle=True)
    config = uvicorn.Config(
        with_proxy(build_app(daemon), daemon), lifespan="on", log_level="warning", access_log=False,
        http=PeerCredHttpToolsProtocol, loop="auto",
        timeout_keep_alive=5, timeout_graceful_shutdown=10, limit_concurrency=1024,
        h11_max_incomplete_event_size=64 * 1024, server_header=False, date_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    log.info("contextd %s listening on http://%s:%d and %s", __version__, settings.host,
             settings.port, settings.socket)  # fmt: skip
    # uvicorn handles SIGTERM/SIGINT itself (drain, lifespan shutdown), then restores the
    # previous handlers and raises the signal again: no-op handlers make that an exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop if any
            runner.run(server.serve(sockets=listeners))
    finally:
        for sock in listeners:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            settings.socket.unlink()
    return 0
