"""The MCP tools served from a running daemon: :class:`RemoteBackend` over its unix socket.

``contextd mcp`` (the stdio server Claude Code spawns) is a thin client of ``contextd serve``
when one runs: every read is one request to the daemon's JSON API (``GET /api/sessions``,
``/api/sessions/{id}``, ``/api/events``) and a checkpoint is ``POST /api/checkpoint``, so the
daemon stays the only writer of the state. Session views (:func:`contextd.views.session_view`)
are turned back into :class:`~contextd.models.SessionSnapshot`\\ s for the tools.

HTTP/1.1 is spoken directly over :func:`asyncio.open_unix_connection`, one connection per
request (``Connection: close``): nothing to keep alive or to clean up, and no HTTP client
library to import at start-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from contextd.errors import ContextdError, StoreError
from contextd.events import Compaction, Observation
from contextd.mcp.backend import FixedSettingsBackend
from contextd.mcp.resolve import session_id as resolve_session_id
from contextd.models import (
    EventKind,
    ModelUsage,
    SessionEvent,
    SessionSnapshot,
    SessionStatus,
    TokenCounts,
    WindowSource,
)
from contextd.sessions import EngineConfig

SOURCE = "daemon"
_MAX_RESPONSE = 64 * 1024 * 1024
# Events the daemon keeps per session are bounded by the engine's ``session_events``; one page
# of /api/events (at most 500) holds them all with the default settings.
_EVENTS_PAGE = 500


class DaemonUnavailableError(ContextdError):
    """The daemon's socket did not answer, or answered something that is not HTTP."""


def _ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value).timestamp()


def _tokens(data: object) -> TokenCounts:
    if not isinstance(data, Mapping):
        return TokenCounts()
    return TokenCounts(
        int(data.get("input", 0)),
        int(data.get("output", 0)),
        int(data.get("cache_creation", 0)),
        int(data.get("cache_read", 0)),
    )


def event_from_view(view: Mapping[str, Any]) -> SessionEvent:
    """The :class:`SessionEvent` a :func:`contextd.views.event_view` dict describes."""
    return SessionEvent(
        seq=int(view["seq"]),
        session_id=str(view["session_id"]),
        at=_ts(view.get("at")) or 0.0,
        kind=EventKind(view["kind"]),
        data=dict(view.get("data") or {}),
    )


def _last_checkpoint_saved(events: Sequence[SessionEvent]) -> int | None:
    """What the latest checkpoint saved (None while unmeasured), from the session's events."""
    for event in reversed(events):
        if event.kind in (EventKind.CHECKPOINT, EventKind.CHECKPOINT_MEASURED):
            saved = event.data.get("tokens_saved")
            return saved if isinstance(saved, int) else None
    return None


def snapshot_from_view(
    view: Mapping[str, Any], events: Sequence[SessionEvent] = ()
) -> SessionSnapshot:
    """The :class:`SessionSnapshot` a :func:`contextd.views.session_view` dict describes.

    Times come back at the view's millisecond precision; what the view does not carry (the
    thresholds' arming, the context's timestamp) keeps its default; ``last_checkpoint_saved``
    is taken from ``events`` when given.
    """
    started = _ts(view.get("started_at")) or 0.0
    return SessionSnapshot(
        session_id=str(view["session_id"]),
        status=SessionStatus(view["status"]),
        started_at=started,
        last_activity=_ts(view.get("last_activity")) or started,
        project=view.get("project"),
        cwd=view.get("cwd"),
        model=view.get("model"),
        user=view.get("user"),
        git_branch=view.get("git_branch"),
        version=view.get("claude_version"),
        entrypoint=view.get("entrypoint"),
        ended_at=_ts(view.get("ended_at")),
        end_reason=view.get("end_reason"),
        context_tokens=int(view.get("context_tokens", 0)),
        window_tokens=int(view.get("context_window", 200_000)),
        window_source=WindowSource(view.get("context_window_source", "config")),
        tokens=_tokens(view.get("tokens")),
        sidechain_tokens=_tokens(view.get("subagent_tokens")),
        by_model=tuple(
            ModelUsage(str(m["model"]), _tokens(m.get("tokens")), int(m.get("responses", 0)))
            for m in view.get("models") or ()
        ),
        responses=int(view.get("responses", 0)),
        tool_calls=int(view.get("tool_calls", 0)),
        warn_crossings=int(view.get("threshold_warn_crossings", 0)),
        critical_crossings=int(view.get("threshold_critical_crossings", 0)),
        peak_percent=float(view.get("peak_context_percent", 0.0)),
        checkpoints=int(view.get("checkpoints", 0)),
        tokens_saved=int(view.get("tokens_saved", 0)),
        pending_checkpoint=view.get("checkpoint_pending_pre_tokens"),
        last_checkpoint_at=_ts(view.get("last_checkpoint_at")),
        last_checkpoint_saved=_last_checkpoint_saved(events),
        superseded_by=view.get("superseded_by"),
    )


def _decode_chunked(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2 :]


class DaemonClient:
    """Requests to the daemon's HTTP API over its unix socket."""

    def __init__(self, socket: Path, *, token: str | None = None, timeout: float = 5.0) -> None:
        self.socket = socket
        self.token = token
        self.timeout = timeout

    async def request(
        self, method: str, path: str, body: object = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """``(status, decoded JSON body)``; raises :class:`DaemonUnavailableError`."""
        try:
            return await asyncio.wait_for(
                self._exchange(method, path, body), timeout or self.timeout
            )
        except (OSError, TimeoutError, ValueError, EOFError, asyncio.LimitOverrunError) as exc:
            raise DaemonUnavailableError(
                f"the contextd daemon at {self.socket} did not answer {method} {path}: "
                f"{exc or type(exc).__name__}"
            ) from None

    async def _exchange(self, method: str, path: str, body: object) -> tuple[int, Any]:
        payload = orjson.dumps(body) if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close",
                "Accept: application/json"]  # fmt: skip
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
            header = await reader.readuntil(b"\r\n\r\n")
            lines = header.decode("latin-1").rstrip("\r\n").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip()
                      for k, _, v in (line.partition(":") for line in lines[1:])}  # fmt: skip
            length = fields.get("content-length")
            if length is not None:
                if not length.isdigit() or int(length) > _MAX_RESPONSE:
                    raise ValueError(f"bad Content-Length {length!r}")
                content = await reader.readexactly(int(length))
            else:  # Connection: close delimits the body
                content = await reader.read(_MAX_RESPONSE)
                while chunk := await reader.read(_MAX_RESPONSE):
                    content += chunk
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    content = _decode_chunked(content)
        finally:
            writer.close()
        return status, orjson.loads(content) if content else None

    async def answers(self, timeout: float = 1.0) -> bool:
        """Whether a daemon answers ``GET /healthz`` on the socket."""
        try:
            status, _ = await self.request("GET", "/healthz", timeout=timeout)
        except DaemonUnavailableError:
            return False
        return status == 200


class RemoteBackend(FixedSettingsBackend):
    """A :class:`~contextd.mcp.backend.Backend` over a running daemon's JSON API
    (``tool_use_session`` asks the daemon's ``PreToolUse`` index, ``GET /api/tool-uses/{id}``).
    """

    source = SOURCE

    def __init__(
        self,
        client: DaemonClient,
        engine: EngineConfig,
        local_user: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        super().__init__(engine, local_user, clock)

    @property
    def writable(self) -> bool:
        return True

    async def _get(self, path: str) -> Any:
        status, data = await self.client.request("GET", path)
        if status != 200 or not isinstance(data, dict):
            raise ContextdError(f"the contextd daemon answered {status} for {path}")
        return data

    async def sessions(self) -> Sequence[SessionSnapshot]:
        # The live ones: every tool that lists sessions shows only those (``?all=1`` would
        # read the whole history from the daemon's database on every call).
        data = await self._get("/api/sessions")
        return [snapshot_from_view(view) for view in data["sessions"]]

    async def session(self, session_id: str) -> SessionSnapshot | None:
        path = f"/api/sessions/{quote(session_id, safe='')}"
        status, data = await self.client.request("GET", path)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise ContextdError(f"the contextd daemon answered {status} for {path}")
        events = [event_from_view(e) for e in data.get("events") or ()]
        return snapshot_from_view(data, events)

    async def events(self, session_id: str) -> Sequence[SessionEvent]:
        query = urlencode({"session_id": session_id, "limit": _EVENTS_PAGE})
        data = await self._get(f"/api/events?{query}")
        return [event_from_view(e) for e in data["events"]]

    async def tool_use_session(self, tool_use_id: str) -> str | None:
        path = f"/api/tool-uses/{quote(tool_use_id, safe='')}"
        status, data = await self.client.request("GET", path)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise ContextdError(f"the contextd daemon answered {status} for {path}")
        return resolve_session_id(data.get("session_id"))

    async def observe(self, observations: list[Observation], source: str) -> None:
        """Send checkpoints to ``POST /api/checkpoint`` (the only observation the tools make)."""
        for obs in observations:
            if not isinstance(obs, Compaction):
                raise ContextdError(f"the daemon's API takes no {type(obs).__name__} from MCP")
            body = {"session_id": obs.session_id, "trigger": obs.trigger,
                    "pre_tokens": obs.pre_tokens, "post_tokens": obs.post_tokens}  # fmt: skip
            status, data = await self.client.request("POST", "/api/checkpoint", body)
            if status == 503:
                raise StoreError(str((data or {}).get("error", "the daemon could not save it")))
            if status != 200:
                detail = data.get("error") if isinstance(data, dict) else None
                raise ContextdError(f"the contextd daemon refused the checkpoint ({status}: "
                                    f"{detail or 'no detail'})")  # fmt: skip
