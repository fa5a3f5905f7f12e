"""Which Claude Code session is calling: resolution of an MCP request's caller.

Claude Code does not name the session in an MCP request (reference/claude-code-verified.md
§7-9), so the caller is worked out from what the request and its transport carry. Sources,
in order (DESIGN.md, "Session identity"):

1. a header, ``X-Claude-Session-ID`` (the seed convention) or ``X-Claude-Code-Session-Id``
   (the name Claude Code uses towards the API), when the transport has headers;
2. ``_meta["claudecode/sessionId"]``, when a client sends it;
3. ``_meta["claudecode/toolUseId"]`` joined through the index ``PreToolUse`` hooks fill (the
   hook announces the same id just before the call);
4. for a stdio server, the parent ``claude`` process: ``<config>/sessions/<ppid>.json`` names
   the session it runs now (right after ``/clear`` and ``--continue``); its environment's
   ``CLAUDE_CODE_SESSION_ID`` (stale after ``/clear``) only when there is no such file;
5. over the daemon's unix socket, the peer process (its pid from ``SO_PEERCRED``) and its
   ancestors: the nearest one with a ``sessions/<pid>.json`` file is the ``claude`` process
   the peer runs under; failing that, the nearest ``CLAUDE_CODE_SESSION_ID`` in their
   environments (``/proc/<pid>/environ``, readable for the same user only);
6. last resort, the connection: ``conn_<hash of the peer>``.

The first candidate that names a session the backend knows wins. When none is known, the first
candidate is kept (so an error can say what the caller claimed); with no candidate at all, the
connection. A value that cannot be a session id (empty, too long, odd characters) is no
candidate. Nothing here does I/O of its own except :func:`process_session`, which reads the
files it is pointed at; lookups are passed in.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import orjson

SESSION_HEADERS = ("x-claude-session-id", "x-claude-code-session-id")
META_SESSION_ID = "claudecode/sessionId"
META_TOOL_USE_ID = "claudecode/toolUseId"
ENV_SESSION_ID = "CLAUDE_CODE_SESSION_ID"
# The same shape the hooks accept for a session id (contextd.ingest.hooks.SessionId).
_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_SESSIONS_FILE = 64 * 1024
_MAX_ENVIRON = 1024 * 1024
# How far up the process tree a socket peer is followed: claude → shell → tool → client.
PEER_ANCESTORS = 8


class Source(StrEnum):
    """How a caller was resolved (the ``resolved_by`` of every tool's output)."""

    HEADER = "header"
    META_SESSION_ID = "meta_session_id"
    TOOL_USE_ID = "tool_use_id"
    SESSIONS_FILE = "sessions_file"
    ENV = "env"
    PEER_PID = "peer_pid"
    CONNECTION = "connection"


@dataclass(frozen=True, slots=True)
class Resolution:
    """A session id and where it came from."""

    session_id: str
    source: Source

    @property
    def identified(self) -> bool:
        """False for the connection fallback, which names no Claude Code session."""
        return self.source is not Source.CONNECTION


def session_id(value: object) -> str | None:
    """``value`` if it can be a session id, else None."""
    if isinstance(value, str) and _SESSION_ID.fullmatch(value):
        return value
    return None


def claimed(
    headers: Mapping[str, str] | None, meta: Mapping[str, object] | None
) -> list[Resolution]:
    """Candidates the request states itself: headers first, then ``_meta``.

    ``headers`` may use any letter case (HTTP names are case-insensitive).
    """
    found: list[Resolution] = []
    if headers:
        lowered = {name.lower(): value for name, value in headers.items()}
        for name in SESSION_HEADERS:
            sid = session_id(lowered.get(name))
            if sid is not None:
                found.append(Resolution(sid, Source.HEADER))
    if meta:
        sid = session_id(meta.get(META_SESSION_ID))
        if sid is not None:
            found.append(Resolution(sid, Source.META_SESSION_ID))
    return found


def tool_use_id(meta: Mapping[str, object] | None) -> str | None:
    """The ``claudecode/toolUseId`` of a request, if it carries a plausible one."""
    if not meta:
        return None
    return session_id(meta.get(META_TOOL_USE_ID))  # tool_use ids have the same shape


def _sessions_file(pid: int, session_dirs: Iterable[Path]) -> str | None:
    """The session ``<dir>/<pid>.json`` names, from the first of ``session_dirs`` that has a
    usable file (one naming another pid, unreadable, oversized or not JSON is ignored)."""
    for directory in session_dirs:
        try:
            with (directory / f"{pid}.json").open("rb") as fh:
                raw = fh.read(_MAX_SESSIONS_FILE + 1)
        except OSError:
            continue
        if len(raw) > _MAX_SESSIONS_FILE:
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict) or data.get("pid", pid) != pid:
            continue
        sid = session_id(data.get("sessionId"))
        if sid is not None:
            return sid
    return None


def process_session(
    pid: int, env: Mapping[str, str], session_dirs: Iterable[Path]
) -> Resolution | None:
    """The session the ``claude`` process ``pid`` runs now (for a stdio server: its parent).

    ``<dir>/<pid>.json`` (``~/.claude/sessions/``) is rewritten by Claude Code on ``/clear``
    and ``--resume``, so it wins over ``env``'s ``CLAUDE_CODE_SESSION_ID``, which keeps the id
    the process was spawned with.
    """
    sid = _sessions_file(pid, session_dirs)
    if sid is not None:
        return Resolution(sid, Source.SESSIONS_FILE)
    sid = session_id(env.get(ENV_SESSION_ID))
    return Resolution(sid, Source.ENV) if sid is not None else None


def _parent(pid: int, proc: Path) -> int | None:
    """The parent pid of ``pid`` from ``<proc>/<pid>/stat``; None once gone or at the root."""
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the
    # last ")".
    fields = stat.rpartition(b")")[2].split()
    try:
        ppid = int(fields[1])
    except (IndexError, ValueError):
        return None
    return ppid if ppid > 1 else None


def _environ_session(pid: int, proc: Path) -> str | None:
    """``CLAUDE_CODE_SESSION_ID`` in the environment ``pid`` was started with, if readable."""
    try:
        with (proc / str(pid) / "environ").open("rb") as fh:
            raw = fh.read(_MAX_ENVIRON)
    except OSError:  # gone, or another user's process
        return None
    prefix = ENV_SESSION_ID.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return session_id(entry[len(prefix) :].decode("utf-8", "replace"))
    return None


def peer_session(
    pid: int,
    session_dirs: Iterable[Path],
    *,
    proc: Path = Path("/proc"),
    depth: int = PEER_ANCESTORS,
) -> Resolution | None:
    """The session a unix-socket peer runs under: the nearest of ``pid`` and its ancestors
    (at most ``depth`` processes) with a ``sessions/<pid>.json`` file, else the nearest
    ``CLAUDE_CODE_SESSION_ID`` in their environments. None when nothing names one (another
    user's processes cannot be read; the daemon's own process is never taken for a peer)."""
    dirs = list(session_dirs)
    nearest_env: str | None = None
    current: int | None = pid
    for _ in range(depth):
        if current is None or current == os.getpid():
            break
        sid = _sessions_file(current, dirs)
        if sid is not None:
            return Resolution(sid, Source.PEER_PID)
        if nearest_env is None:
            nearest_env = _environ_session(current, proc)
        current = _parent(current, proc)
    return Resolution(nearest_env, Source.PEER_PID) if nearest_env is not None else None


def connection(key: str) -> Resolution:
    """The last resort: an id for the connection (or peer) ``key`` describes."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return Resolution(f"conn_{digest}", Source.CONNECTION)


async def resolve(
    headers: Mapping[str, str] | None,
    meta: Mapping[str, object] | None,
    connection_key: str,
    *,
    known: Callable[[str], Awaitable[bool]],
    tool_use_session: Callable[[str], Awaitable[str | None]],
    process: Callable[[], Resolution | None] | None = None,
) -> Resolution:
    """The caller of one request (see the module docstring for the order).

    ``known`` says whether the backend holds a session; ``tool_use_session`` looks a
    ``tool_use_id`` up in the PreToolUse index; ``process`` resolves through the caller's
    process: the parent of a stdio server (:func:`process_session`), or the peer of a unix
    socket (:func:`peer_session`). Later sources are consulted only while no earlier one named
    a known session.
    """
    first: Resolution | None = None
    for candidate in claimed(headers, meta):
        if await known(candidate.session_id):
            return candidate
        first = first or candidate
    use_id = tool_use_id(meta)
    if use_id is not None:
        sid = await tool_use_session(use_id)
        if sid is not None:
            candidate = Resolution(sid, Source.TOOL_USE_ID)
            if await known(sid):
                return candidate
            first = first or candidate
    if process is not None:
        candidate_or_none = process()
        if candidate_or_none is not None:
            if await known(candidate_or_none.session_id):
                return candidate_or_none
            first = first or candidate_or_none
    return first or connection(connection_key)
