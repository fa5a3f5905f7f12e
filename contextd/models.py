"""Domain values: frozen, slotted, free of I/O.

Everything the session engine publishes is one of these. They are safe to share between the
event loop, exporter threads and the CLI because nothing mutates them after construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class SessionStatus(StrEnum):
    """Where a session is in its life.

    ``active`` and ``idle`` are live (exported, listed by default); the others are history.
    """

    ACTIVE = "active"
    IDLE = "idle"
    ENDED = "ended"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"

    @property
    def live(self) -> bool:
        return self in _LIVE


_LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.IDLE})


class WindowSource(StrEnum):
    """Where a session's context-window size comes from, weakest first."""

    CONFIG = "config"
    MODEL = "model"
    OBSERVED = "observed"
    STATUSLINE = "statusline"


class EventKind(StrEnum):
    """Kinds of entries in the per-session and global event buffers."""

    SESSION_STARTED = "session_started"
    RESPONSE = "response"
    THRESHOLD_CROSSED = "threshold_crossed"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_MEASURED = "checkpoint_measured"
    MODEL_CHANGED = "model_changed"
    WINDOW_CHANGED = "window_changed"
    STATUS_CHANGED = "status_changed"
    API_ERROR = "api_error"


@dataclass(frozen=True, slots=True)
class TokenCounts:
    """Token counts by type, as the Anthropic API reports them."""

    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(
            self.input + other.input,
            self.output + other.output,
            self.cache_creation + other.cache_creation,
            self.cache_read + other.cache_read,
        )

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    @property
    def context(self) -> int:
        """The prompt size these counts describe: input plus both cache kinds."""
        return self.input + self.cache_creation + self.cache_read

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_creation": self.cache_creation,
            "cache_read": self.cache_read,
        }


ZERO_TOKENS = TokenCounts()


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """Tokens one session spent on one model."""

    model: str
    tokens: TokenCounts
    responses: int


_NO_DATA: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One entry of a session's history: what happened, when, with its figures.

    ``data`` is typed read-only; the engine builds a fresh dict per event and never keeps a
    reference to it, so no copy is made here (events are created on the ingest hot path).
    """

    seq: int
    session_id: str
    at: float
    kind: EventKind
    data: Mapping[str, object] = field(default_factory=lambda: _NO_DATA)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """Everything known about one session at one moment.

    This is also the persisted form of a session: the engine can be rebuilt from snapshots.
    """

    session_id: str
    status: SessionStatus
    started_at: float
    last_activity: float
    project: str | None = None
    cwd: str | None = None
    model: str | None = None
    user: str | None = None
    git_branch: str | None = None
    version: str | None = None
    entrypoint: str | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    context_tokens: int = 0
    context_at: float | None = None
    window_tokens: int = 200_000
    window_source: WindowSource = WindowSource.CONFIG
    session_type: str | None = None  # see contextd.environment; None: not reported (yet)
    tokens: TokenCounts = ZERO_TOKENS
    sidechain_tokens: TokenCounts = ZERO_TOKENS
    by_model: tuple[ModelUsage, ...] = ()
    responses: int = 0
    tool_calls: int = 0
    warn_crossings: int = 0
    critical_crossings: int = 0
    warn_armed: bool = True
    critical_armed: bool = True
    peak_percent: float = 0.0
    checkpoints: int = 0
    tokens_saved: int = 0
    pending_checkpoint: int | None = None
    last_checkpoint_at: float | None = None
    last_checkpoint_source: str | None = None
    last_checkpoint_saved: int | None = None
    superseded_by: str | None = None

    @property
    def percent(self) -> float:
        """Context usage in percent of the window (0-100, may exceed 100 briefly)."""
        if self.window_tokens <= 0:
            return 0.0
        return 100.0 * self.context_tokens / self.window_tokens

    @property
    def live(self) -> bool:
        return self.status.live

    @property
    def duration(self) -> float:
        end = self.ended_at if self.ended_at is not None else self.last_activity
        return max(0.0, end - self.started_at)
