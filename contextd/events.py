"""Observations fed to the session engine.

Sources (transcripts today; hooks, the status line and MCP later) translate what they see
into these values and hand them to :meth:`contextd.sessions.SessionManager.apply`. They carry
facts only; the engine decides what they change.
"""

from __future__ import annotations

from dataclasses import dataclass

from contextd.models import TokenCounts


@dataclass(frozen=True, slots=True)
class Origin:
    """Where and in what a session runs, as a line or payload reports it."""

    cwd: str | None = None
    git_branch: str | None = None
    version: str | None = None
    entrypoint: str | None = None


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
    context of the next main-chain response.
    """

    session_id: str
    at: float
    trigger: str
    pre_tokens: int
    post_tokens: int | None = None
    source: str = "transcript"
    origin: Origin | None = None


Observation = Activity | Response | Compaction
