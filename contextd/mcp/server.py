"""The MCP server: session-aware tools, resources and a prompt over a :class:`Backend`.

Tools (typed inputs, structured outputs from :mod:`contextd.mcp.outputs`):

* ``context_status`` — the calling session's context: tokens, window, percent, threshold
  state, checkpoints, tokens saved and a plain recommendation;
* ``list_sessions`` — live sessions with an ``is_me`` flag, filtered by project and user;
* ``session_stats`` — tokens by type and model, duration, responses, tool calls (cost: null);
* ``session_events`` — a session's recent events, paged forward with ``after``/``limit``;
* ``record_checkpoint`` — an explicit checkpoint of the calling session;
* ``usage_summary`` — combined usage of the live sessions, per project.

Every request for a tool, a resource or a prompt first passes :class:`CallerResolution`, which
works out the calling Claude Code session (:mod:`contextd.mcp.resolve`); each output says who
the caller was taken to be (``resolved_session_id``, ``resolved_by``). Reads are scoped to the
caller's user unless ``user="*"`` is asked for. A session contextd does not know, or a caller
it cannot identify, gets a tool error (``isError``) saying so; the server keeps serving.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import Field, StringConstraints
from starlette.applications import Starlette
from starlette.requests import Request

from contextd import __version__
from contextd.errors import StoreError
from contextd.events import Compaction
from contextd.mcp import outputs, resolve
from contextd.mcp.backend import Backend
from contextd.mcp.resolve import Resolution
from contextd.models import SessionSnapshot
from contextd.peer import scope_peer_pid
from contextd.views import session_view

log = logging.getLogger("contextd.mcp")

INSTRUCTIONS = (
    "contextd watches the context windows of the Claude Code sessions on this machine. "
    "Call context_status to see how full your own context is and whether to checkpoint "
    "(/compact) now; list_sessions and usage_summary show the other sessions."
)
# Requests whose handlers need the caller; everything else passes straight through.
_RESOLVED_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})
_caller: ContextVar[Resolution] = ContextVar("contextd_mcp_caller")
PEER_TTL = 1.0
PEER_CACHE_SIZE = 1024

SessionIdArg = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$"),
    Field(description="A session id (default: the calling session)"),
]
UserArg = Annotated[
    str,
    StringConstraints(pattern=r"^([0-9a-f]{16}|\*)$"),
    Field(description='A 16-hex user id, or "*" for every user (default: the caller\'s user)'),
]
ProjectArg = Annotated[
    str, StringConstraints(min_length=1, max_length=512), Field(description="A project name")
]
_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)


class CallerResolution:
    """MCP middleware: resolves the caller of every tool call, resource read and prompt.

    The result is visible to the handlers of that one request (a context variable), so tools
    stay plain functions of their arguments. ``process`` resolves through the parent process
    (a stdio server; see :func:`contextd.mcp.resolve.process_session`); over HTTP on the unix
    socket, the peer's pid (which the daemon's HTTP protocol puts in the request scope, see
    :func:`peer_pid`) is followed up its process tree through ``session_dirs``
    (:func:`contextd.mcp.resolve.peer_session`).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        process: Callable[[], Resolution | None] | None = None,
        session_dirs: Sequence[Path] = (),
    ) -> None:
        self.backend = backend
        self.process = process
        self.session_dirs = list(session_dirs)
        # pid -> (monotonic expiry, resolution): a client's calls in a burst walk /proc once.
        self._peers: dict[int, tuple[float, Resolution | None]] = {}
        # Without HTTP there is one connection per server process (stdio, in-memory).
        self.instance = f"instance:{uuid.uuid4().hex}"

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method not in _RESOLVED_METHODS or ctx.request_id is None:
            return await call_next(ctx)
        request = ctx.request if isinstance(ctx.request, Request) else None
        caller = await resolve.resolve(
            request.headers if request is not None else None,
            ctx.meta,
            self.connection_key(request),
            known=self._known,
            tool_use_session=self.backend.tool_use_session,
            process=self.process or self._peer_process(request),
        )
        token = _caller.set(caller)
        try:
            return await call_next(ctx)
        finally:
            _caller.reset(token)

    async def _known(self, session_id: str) -> bool:
        return await self.backend.session(session_id) is not None

    def _peer_process(self, request: Request | None) -> Callable[[], Resolution | None] | None:
        pid = peer_pid(request)
        if pid is None:
            return None
        return lambda: self._peer_session(pid)

    def _peer_session(self, pid: int) -> Resolution | None:
        """:func:`resolve.peer_session`, remembered for :data:`PEER_TTL` seconds per pid (short
        enough that a ``/clear``'s rewritten sessions file is seen at the next call)."""
        now = time.monotonic()
        cached = self._peers.get(pid)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = resolve.peer_session(pid, self.session_dirs)
        if len(self._peers) >= PEER_CACHE_SIZE:
            self._peers = {p: e for p, e in self._peers.items() if e[0] > now}
            if len(self._peers) >= PEER_CACHE_SIZE:
                self._peers.clear()
        self._peers[pid] = (now + PEER_TTL, found)
        return found

    def connection_key(self, request: Request | None) -> str:
        """What identifies the connection: the MCP session, else the peer (its address over
        TCP, its pid over the unix socket)."""
        if request is None:
            return self.instance
        mcp_session = request.headers.get("mcp-session-id")
        if mcp_session:
            return f"mcp-session:{mcp_session}"
        peer = request.client
        if peer is not None:
            return f"peer:{peer.host}:{peer.port}"
        pid = peer_pid(request)
        return f"peer:unix:{pid}" if pid is not None else "peer:unix"


def peer_pid(request: Request | None) -> int | None:
    """The pid of the process at the other end of a unix-socket request (``SO_PEERCRED``, see
    :mod:`contextd.peer`); None over TCP and without a request."""
    return scope_peer_pid(request.scope) if request is not None else None


def current_caller() -> Resolution:
    """The caller of the request being handled (set by :class:`CallerResolution`)."""
    found = _caller.get(None)
    return found if found is not None else resolve.connection("unresolved")


def _caller_model(caller: Resolution) -> outputs.Caller:
    return outputs.Caller(resolved_session_id=caller.session_id, resolved_by=caller.source.value)


def _unidentified(caller: Resolution) -> str:
    if not caller.identified:
        return (
            "contextd could not tell which Claude Code session is calling (it resolved only "
            f"to connection {caller.session_id}): the request carried no X-Claude-Session-ID "
            "header, no _meta claudecode/sessionId, and no claudecode/toolUseId that a "
            "PreToolUse hook announced to contextd. Install contextd's hooks, or pass "
            "session_id (list_sessions shows the live sessions)."
        )
    return (
        f"session {caller.session_id!r} (resolved by {caller.source.value}) is not known to "
        "contextd: no hook, status line or transcript has named it yet. list_sessions shows "
        "the live sessions."
    )


class Tools:
    """The tool, resource and prompt handlers over one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def _own(self, caller: Resolution) -> SessionSnapshot | None:
        return await self.backend.session(caller.session_id) if caller.identified else None

    async def _user_of(self, caller: Resolution) -> str:
        own = await self._own(caller)
        return own.user if own is not None and own.user else self.backend.local_user

    async def _scope(self, caller: Resolution, user: str | None) -> str | None:
        """The user a read is limited to: the asked one, None for "*", else the caller's."""
        if user == "*":
            return None
        return user or await self._user_of(caller)

    async def _subject(self, caller: Resolution, session_id: str | None) -> SessionSnapshot:
        """The session a tool reports on: ``session_id`` if given (within the caller's user),
        else the caller's own."""
        if session_id is None:
            own = await self._own(caller)
            if own is None:
                raise ToolError(_unidentified(caller))
            return own
        snap = await self.backend.session(session_id)
        if snap is None or (snap.user is not None and snap.user != await self._user_of(caller)):
            raise ToolError(
                f"unknown session {session_id!r}: contextd holds no such session of this user "
                "(list_sessions shows the live ones)"
            )
        return snap

    # -- tools -----------------------------------------------------------------------------

    async def context_status(self, session_id: SessionIdArg | None = None) -> outputs.ContextStatus:
        """How full the calling session's context window is, and whether to checkpoint now.

        Returns tokens in context, the window, the percentage, the threshold state (ok,
        warning at 70 %, critical at 90 % by default), checkpoints so far, tokens they saved
        and a plain recommendation.
        """
        caller = current_caller()
        snap = await self._subject(caller, session_id)
        return outputs.context_status(snap, self.backend.engine, _caller_model(caller))

    async def list_sessions(
        self, project: ProjectArg | None = None, user: UserArg | None = None
    ) -> outputs.SessionList:
        """The live Claude Code sessions (of the caller's user by default), most recently
        active first; ``is_me`` marks the calling session."""
        caller = current_caller()
        scope = await self._scope(caller, user)
        chosen = [
            s for s in await self.backend.sessions()
            if s.live and (scope is None or s.user == scope)
            and (project is None or s.project == project)
        ]  # fmt: skip
        chosen.sort(key=lambda s: (-s.last_activity, s.session_id))
        who = _caller_model(caller)
        engine = self.backend.engine
        return outputs.SessionList(
            **who.model_dump(),
            user=scope,
            project=project,
            sessions=[outputs.session_row(s, engine, who) for s in chosen],
        )

    async def session_stats(self, session_id: SessionIdArg | None = None) -> outputs.SessionStats:
        """Usage of one session (default: the calling one): tokens by type and by model,
        sub-agent tokens, duration, responses and tool calls. Cost is not computed yet."""
        caller = current_caller()
        snap = await self._subject(caller, session_id)
        return outputs.session_stats(snap, _caller_model(caller))

    async def session_events(
        self,
        session_id: SessionIdArg | None = None,
        after: Annotated[int, Field(strict=True, ge=0)] | None = None,
        limit: Annotated[int, Field(strict=True, ge=1, le=500)] = 50,
    ) -> outputs.EventPage:
        """Recent events of one session (default: the calling one): responses, threshold
        crossings, checkpoints, model and status changes. Without ``after``: the newest
        ``limit``; with it: the ``limit`` events that follow seq ``after``."""
        caller = current_caller()
        snap = await self._subject(caller, session_id)
        kept = await self.backend.events(snap.session_id)
        if after is None:
            chosen, more = list(kept[-limit:]), False
            next_after = kept[-1].seq if kept else 0
        else:
            newer = [e for e in kept if e.seq > after]
            chosen, more = newer[:limit], len(newer) > limit
            next_after = chosen[-1].seq if chosen else after
        return outputs.EventPage(
            **_caller_model(caller).model_dump(),
            session_id=snap.session_id,
            events=[outputs.event_of(e) for e in chosen],
            next_after=next_after,
            more=more,
        )

    async def record_checkpoint(
        self,
        note: Annotated[str, StringConstraints(max_length=500)] | None = None,
        tokens_saved: Annotated[int, Field(strict=True, ge=0)] | None = None,
    ) -> outputs.CheckpointRecord:
        """Record an explicit checkpoint of the calling session (for example before /compact
        or after writing a handover). ``tokens_saved``, when known, is taken as what it saved;
        otherwise the next response measures it. The note is not stored."""
        caller = current_caller()
        snap = await self._subject(caller, None)
        backend = self.backend
        if not backend.writable:
            raise ToolError("checkpoints can only be recorded through a running contextd daemon")
        pre = post = None
        if tokens_saved is not None:
            pre = snap.context_tokens
            post = max(0, pre - tokens_saved)
        checkpoint = Compaction(snap.session_id, backend.now(), "explicit", pre_tokens=pre,
                                post_tokens=post, source="mcp")  # fmt: skip
        try:
            await backend.observe([checkpoint], "record_checkpoint")
        except StoreError as exc:
            raise ToolError(f"checkpoint not saved: {exc}") from None
        after = await backend.session(snap.session_id) or snap
        counted = after.checkpoints > snap.checkpoints
        return outputs.CheckpointRecord(
            **_caller_model(caller).model_dump(),
            session_id=snap.session_id,
            counted=counted,
            checkpoints=after.checkpoints,
            tokens_saved=after.tokens_saved,
            checkpoint_tokens_saved=after.last_checkpoint_saved if counted else None,
            note_stored=False,
        )

    async def usage_summary(self, user: UserArg | None = None) -> outputs.UsageSummary:
        """Combined usage of the live sessions (of the caller's user by default): context
        tokens, tokens by type, checkpoints, per project."""
        caller = current_caller()
        scope = await self._scope(caller, user)
        live = [
            s for s in await self.backend.sessions()
            if s.live and (scope is None or s.user == scope)
        ]  # fmt: skip
        return outputs.usage_summary(live, scope, _caller_model(caller))

    # -- resources and prompt ----------------------------------------------------------------

    async def sessions_resource(self) -> str:
        listed = await self.list_sessions()
        return listed.model_dump_json()

    async def session_resource(self, session_id: str) -> str:
        caller = current_caller()
        snap = await self.backend.session(session_id)
        if snap is None or (snap.user is not None and snap.user != await self._user_of(caller)):
            raise ResourceNotFoundError(f"unknown session {session_id!r}")
        return orjson.dumps(session_view(snap, self.backend.engine)).decode()

    @staticmethod
    def checkpoint_check() -> str:
        return (
            "Call the contextd tool context_status. If its recommendation is to checkpoint, "
            "write a short handover of the current work (goal, decisions made, open items, "
            "files touched), tell me to run /compact with it, and call record_checkpoint. "
            "Otherwise say how full the context is in one line."
        )


def build_mcp(
    backend: Backend,
    *,
    process: Callable[[], Resolution | None] | None = None,
    session_dirs: Sequence[Path] = (),
) -> MCPServer[Any]:
    """The contextd MCP server over ``backend`` (``process`` and ``session_dirs``: see
    :class:`CallerResolution`)."""
    server: MCPServer[Any] = MCPServer(
        "contextd",
        title="contextd",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        middleware=[CallerResolution(backend, process=process, session_dirs=session_dirs)],
    )
    tools = Tools(backend)
    server.add_tool(tools.context_status, name="context_status", title="Context status",
                    annotations=_READ)  # fmt: skip
    server.add_tool(tools.list_sessions, name="list_sessions", title="Live sessions",
                    annotations=_READ)  # fmt: skip
    server.add_tool(tools.session_stats, name="session_stats", title="Session usage",
                    annotations=_READ)  # fmt: skip
    server.add_tool(tools.session_events, name="session_events", title="Session events",
                    annotations=_READ)  # fmt: skip
    server.add_tool(
        tools.record_checkpoint, name="record_checkpoint", title="Record a checkpoint",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=False),
    )  # fmt: skip
    server.add_tool(tools.usage_summary, name="usage_summary", title="Usage across sessions",
                    annotations=_READ)  # fmt: skip
    server.resource(
        "contextd://sessions", name="sessions", mime_type="application/json",
        description="The live sessions of the caller's user (as list_sessions returns them)",
    )(tools.sessions_resource)  # fmt: skip
    server.resource(
        "contextd://sessions/{session_id}", name="session", mime_type="application/json",
        description="One session with every field contextd keeps about it",
    )(tools.session_resource)  # fmt: skip
    server.prompt(
        name="checkpoint_check", title="Checkpoint check",
        description="Check the context window and checkpoint if it is getting full",
    )(tools.checkpoint_check)  # fmt: skip
    return server


def http_app(server: MCPServer[Any], *, hosts: set[str], origins: set[str]) -> Starlette:
    """``server`` as a streamable HTTP app answering at ``/mcp`` (run the server's
    ``session_manager.run()`` in the enclosing app's lifespan).

    Stateless, with JSON responses: Claude Code sends one POST per message and no session id,
    and no tool needs to call back. The SDK's own Host/Origin check is configured with the
    same lists as the daemon's guard, which runs first and is stricter (a bare ``localhost``
    only over the unix socket); the SDK's defaults would refuse that bare name.
    """
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(hosts),
        allowed_origins=sorted(origins),
    )
    return server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True,
        transport_security=security,
    )  # fmt: skip
