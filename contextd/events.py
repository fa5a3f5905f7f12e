"""Observations fed to the session engine.

Sources (transcripts, hooks, the status line, MCP and the API proxy) translate what they see
into these values and hand them to :meth:`contextd.sessions.SessionManager.apply`. They carry
facts only; the engine decides what they change.
"""

from __future__ import annotations

from dataclasses import dataclass

from contextd.models import TokenCounts


@dataclass(frozen=True, slots=True)
class Origin:
    """Where and in what a session runs, as a line or payload reports it.

    ``session_type`` and ``user`` come only from contextd's own commands (``contextd hook``,
    ``contextd statusline``), which see the session's environment: the first ones seen stick.
    """

    cwd: str | None = None
    git_branch: str | None = None
    version: str | None = None
    entrypoint: str | None = None
    session_type: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """The session did something (a prompt, a tool result, a hook) at ``at``."""

    session_id: str
    at: float
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """Counted usage of one API response, already de-duplicated by the source.

    ``usage`` is what this observation adds to the session's totals (for a repeated line of a
    streamed response: only the extra output tokens). ``context_tokens`` is the prompt size the
    response reports; ``main_chain`` says whether it describes the session's own context (not a
    sub-agent's, not a summariser's). ``new_response`` is false for the later lines of a response
    that was already seen.
    """

    session_id: str
    at: float
    model: str
    usage: TokenCounts
    context_tokens: int
    main_chain: bool
    new_response: bool = True
    tool_calls: int = 0
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Compaction:
    """A checkpoint: the conversation was compacted (or explicitly checkpointed).

    ``post_tokens`` is None when the source does not know it yet; the engine then takes the
    context of the next main-chain response. ``pre_tokens`` is None when the source does not
    know it either (a hook): the session's current context is used. A transcript boundary and
    a hook describing the same compaction (within a few minutes) count once.
    """

    session_id: str
    at: float
    trigger: str
    pre_tokens: int | None
    post_tokens: int | None = None
    source: str = "transcript"
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class SessionStart:
    """Claude Code started, resumed, cleared into, compacted or forked a session (a hook).

    ``source`` is ``startup``, ``resume``, ``clear``, ``compact`` or ``fork``. A ``clear`` start
    follows the end of the session it replaces, which the engine then marks as superseded.
    """

    session_id: str
    at: float
    source: str
    model: str | None = None
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Claude Code ended a session (a hook); ``reason`` ``clear`` means it was replaced."""

    session_id: str
    at: float
    reason: str
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class StatusLine:
    """What Claude Code's status line reports: authoritative for the window and the context.

    ``context_tokens`` is None when the status line has no current usage (before the first
    response, right after a compaction).
    """

    session_id: str
    at: float
    model: str | None = None
    window_tokens: int | None = None
    context_tokens: int | None = None
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class ApiError:
    """The API answered a request of the session with an error (the API proxy saw it).

    ``status`` is the HTTP status (None for an error event inside a stream, or when no answer
    came: ``error_type`` is then ``timeout`` or ``unreachable``); ``retry_after`` and
    ``rate_limits`` (``anthropic-ratelimit-*`` headers) are copied as sent. Never a body.
    """

    session_id: str
    at: float
    status: int | None
    error_type: str | None = None
    retry_after: str | None = None
    rate_limits: tuple[tuple[str, str], ...] = ()
    origin: Origin | None = None


Observation = Activity | Response | Compaction | SessionStart | SessionEnd | StatusLine | ApiError
