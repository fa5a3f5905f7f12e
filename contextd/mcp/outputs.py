"""Structured outputs of the MCP tools: pydantic models, built from engine values.

Field names are those of :mod:`contextd.views` (``context_tokens``, ``context_window``,
``context_percent``, ``threshold_state``, ``checkpoints``, ``tokens_saved``…), so a field means
the same in the CLI's ``--json``, the HTTP API and MCP. Every output also says who the caller
was taken to be: ``resolved_session_id`` and ``resolved_by`` (see :mod:`contextd.mcp.resolve`).
Outputs stay compact: what a tool returns lands in Claude's context window.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from contextd.models import SessionEvent, SessionSnapshot, TokenCounts
from contextd.sessions import EngineConfig
from contextd.views import iso, threshold_state

ThresholdState = Literal["ok", "warning", "critical"]
COST_NOTE = "cost is not computed yet: contextd has no pricing table"


class Caller(BaseModel):
    """Who is calling, and how that was worked out."""

    resolved_session_id: str = Field(
        description="The calling Claude Code session (conn_… when it could not be identified)"
    )
    resolved_by: str = Field(
        description="header | meta_session_id | tool_use_id | sessions_file | env | connection"
    )


class Tokens(BaseModel):
    input: int
    output: int
    cache_creation: int
    cache_read: int
    total: int


def tokens_of(counts: TokenCounts) -> Tokens:
    return Tokens(**counts.as_dict(), total=counts.total)


def recommendation(snap: SessionSnapshot, engine: EngineConfig) -> str:
    """A plain next step for the session's context usage."""
    if snap.percent >= engine.critical_percent:
        return "checkpoint now (/compact)"
    if snap.percent >= engine.warn_percent:
        return "consider a checkpoint soon"
    return "ok"


def _state(snap: SessionSnapshot, engine: EngineConfig) -> ThresholdState:
    state = threshold_state(snap, engine)
    return "critical" if state == "critical" else "warning" if state == "warning" else "ok"


class ContextStatus(Caller):
    session_id: str
    status: str
    project: str | None
    model: str | None
    context_tokens: int
    context_window: int
    context_window_source: str
    context_percent: float
    threshold_state: ThresholdState
    warn_percent: float
    critical_percent: float
    checkpoints: int
    tokens_saved: int
    last_checkpoint_at: str | None
    checkpoint_pending_pre_tokens: int | None = Field(
        description="Context before the last checkpoint, while what it saved is not yet measured"
    )
    recommendation: str = Field(
        description='"checkpoint now (/compact)", "consider a checkpoint soon" or "ok"'
    )


def context_status(snap: SessionSnapshot, engine: EngineConfig, caller: Caller) -> ContextStatus:
    return ContextStatus(
        **caller.model_dump(),
        session_id=snap.session_id,
        status=snap.status.value,
        project=snap.project,
        model=snap.model,
        context_tokens=snap.context_tokens,
        context_window=snap.window_tokens,
        context_window_source=snap.window_source.value,
        context_percent=round(snap.percent, 2),
        threshold_state=_state(snap, engine),
        warn_percent=engine.warn_percent,
        critical_percent=engine.critical_percent,
        checkpoints=snap.checkpoints,
        tokens_saved=snap.tokens_saved,
        last_checkpoint_at=iso(snap.last_checkpoint_at),
        checkpoint_pending_pre_tokens=snap.pending_checkpoint,
        recommendation=recommendation(snap, engine),
    )


class SessionRow(BaseModel):
    session_id: str
    is_me: bool = Field(description="True for the calling session")
    status: str
    project: str | None
    model: str | None
    user: str | None
    context_tokens: int
    context_window: int
    context_percent: float
    threshold_state: ThresholdState
    checkpoints: int
    tokens_saved: int
    last_activity: str | None


def session_row(snap: SessionSnapshot, engine: EngineConfig, caller: Caller) -> SessionRow:
    return SessionRow(
        session_id=snap.session_id,
        is_me=snap.session_id == caller.resolved_session_id,
        status=snap.status.value,
        project=snap.project,
        model=snap.model,
        user=snap.user,
        context_tokens=snap.context_tokens,
        context_window=snap.window_tokens,
        context_percent=round(snap.percent, 2),
        threshold_state=_state(snap, engine),
        checkpoints=snap.checkpoints,
        tokens_saved=snap.tokens_saved,
        last_activity=iso(snap.last_activity),
    )


class SessionList(Caller):
    user: str | None = Field(description="The user the list is scoped to (null: every user)")
    project: str | None
    sessions: list[SessionRow] = Field(description="Live sessions, most recently active first")


class ModelTokens(BaseModel):
    model: str
    tokens: Tokens
    responses: int


class SessionStats(Caller):
    session_id: str
    status: str
    project: str | None
    started_at: str | None
    last_activity: str | None
    duration_seconds: float
    tokens: Tokens
    subagent_tokens: Tokens = Field(description="Part of tokens spent by sub-agents")
    models: list[ModelTokens]
    responses: int
    tool_calls: int
    cost_usd: float | None = Field(description="Always null for now: see cost_note")
    cost_note: str


def session_stats(snap: SessionSnapshot, caller: Caller) -> SessionStats:
    return SessionStats(
        **caller.model_dump(),
        session_id=snap.session_id,
        status=snap.status.value,
        project=snap.project,
        started_at=iso(snap.started_at),
        last_activity=iso(snap.last_activity),
        duration_seconds=round(snap.duration, 3),
        tokens=tokens_of(snap.tokens),
        subagent_tokens=tokens_of(snap.sidechain_tokens),
        models=[
            ModelTokens(model=m.model, tokens=tokens_of(m.tokens), responses=m.responses)
            for m in snap.by_model
        ],
        responses=snap.responses,
        tool_calls=snap.tool_calls,
        cost_usd=None,
        cost_note=COST_NOTE,
    )


class Event(BaseModel):
    seq: int
    at: str | None
    kind: str
    data: dict[str, Any]


def event_of(event: SessionEvent) -> Event:
    return Event(seq=event.seq, at=iso(event.at), kind=event.kind.value, data=dict(event.data))


class EventPage(Caller):
    session_id: str
    events: list[Event] = Field(description="Oldest first")
    next_after: int = Field(description="Pass as `after` to get the events that follow")
    more: bool = Field(description="Whether more events follow next_after right now")


class CheckpointRecord(Caller):
    session_id: str
    counted: bool = Field(
        description="False when merged into a checkpoint recorded moments before from the "
        "transcript or a hook (the same compaction counts once)"
    )
    checkpoints: int
    tokens_saved: int = Field(description="The session's total")
    checkpoint_tokens_saved: int | None = Field(
        description="What this checkpoint saved; null until the next response measures it"
    )
    note_stored: bool = Field(
        description="Notes are not stored: contextd keeps no conversation text"
    )


class ProjectUsage(BaseModel):
    project: str | None
    sessions: int
    context_tokens: int
    max_context_percent: float
    tokens: Tokens
    responses: int
    tool_calls: int


class UsageSummary(Caller):
    user: str | None
    sessions: int = Field(description="Live sessions counted")
    context_tokens: int = Field(description="Sum of the live sessions' current context")
    average_context_percent: float
    max_context_percent: float
    checkpoints: int
    tokens_saved: int
    tokens: Tokens
    responses: int
    tool_calls: int
    projects: list[ProjectUsage] = Field(description="Largest current context first")
    cost_usd: float | None = Field(description="Always null for now: see cost_note")
    cost_note: str


def _project_usage(project: str | None, snaps: list[SessionSnapshot]) -> ProjectUsage:
    tokens = sum((s.tokens for s in snaps), TokenCounts())
    return ProjectUsage(
        project=project,
        sessions=len(snaps),
        context_tokens=sum(s.context_tokens for s in snaps),
        max_context_percent=round(max(s.percent for s in snaps), 2),
        tokens=tokens_of(tokens),
        responses=sum(s.responses for s in snaps),
        tool_calls=sum(s.tool_calls for s in snaps),
    )


def usage_summary(live: list[SessionSnapshot], user: str | None, caller: Caller) -> UsageSummary:
    by_project: dict[str | None, list[SessionSnapshot]] = {}
    for snap in live:
        by_project.setdefault(snap.project, []).append(snap)
    projects = [_project_usage(p, snaps) for p, snaps in by_project.items()]
    projects.sort(key=lambda p: (-p.context_tokens, p.project or ""))
    percents = [s.percent for s in live]
    return UsageSummary(
        **caller.model_dump(),
        user=user,
        sessions=len(live),
        context_tokens=sum(s.context_tokens for s in live),
        average_context_percent=round(sum(percents) / len(percents), 2) if live else 0.0,
        max_context_percent=round(max(percents), 2) if live else 0.0,
        checkpoints=sum(s.checkpoints for s in live),
        tokens_saved=sum(s.tokens_saved for s in live),
        tokens=tokens_of(sum((s.tokens for s in live), TokenCounts())),
        responses=sum(s.responses for s in live),
        tool_calls=sum(s.tool_calls for s in live),
        projects=projects,
        cost_usd=None,
        cost_note=COST_NOTE,
    )
