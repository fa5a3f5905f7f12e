"""Claude Code hook, status-line and session payloads → observations.

Payloads are validated strictly (a string where a number belongs is an error, never coerced)
with pydantic; unknown fields are allowed, since Claude Code adds fields between versions.
Prompts, tool inputs and tool outputs in payloads are never kept: only the fields modelled
here are read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contextd.environment import SESSION_TYPES
from contextd.events import (
    Activity,
    Compaction,
    Observation,
    Origin,
    SessionEnd,
    SessionStart,
    StatusLine,
)

SessionId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]
Path = Annotated[str, StringConstraints(max_length=4096)]
Word = Annotated[str, StringConstraints(max_length=64)]
UserId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


SessionType = Literal[SESSION_TYPES]  # type: ignore[valid-type]


class ContextdEnv(_Payload):
    """What ``contextd hook`` and ``contextd statusline`` add to a payload they forward: the
    session's environment (:mod:`contextd.environment`) and its user's id (never a key)."""

    session_type: SessionType | None = None
    entrypoint: Word | None = None
    user_id: UserId | None = None


class HookPayload(_Payload):
    """What every Claude Code hook POSTs (``type: "http"`` hooks send the same JSON)."""

    session_id: SessionId
    hook_event_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    transcript_path: Path | None = None
    cwd: Path | None = None
    source: Word | None = None  # SessionStart
    reason: Word | None = None  # SessionEnd
    trigger: Word | None = None  # PreCompact / PostCompact
    model: Annotated[str, StringConstraints(max_length=128)] | None = None  # SessionStart
    tool_use_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    contextd_env: ContextdEnv | None = None


class SessionStartPayload(_Payload):
    """``POST /api/session/start`` (anthropic-spy compatible)."""

    session_id: SessionId
    user_id: UserId | None = None
    source: Word | None = None
    cwd: Path | None = None
    model: Annotated[str, StringConstraints(max_length=128)] | None = None


class SessionEndPayload(_Payload):
    """``POST /api/session/end`` (anthropic-spy compatible)."""

    session_id: SessionId
    user_id: UserId | None = None
    reason: Word | None = None


class _Usage(_Payload):
    input_tokens: Annotated[int, Field(ge=0)] = 0
    output_tokens: Annotated[int, Field(ge=0)] = 0
    cache_creation_input_tokens: Annotated[int, Field(ge=0)] = 0
    cache_read_input_tokens: Annotated[int, Field(ge=0)] = 0


class _ContextWindow(_Payload):
    context_window_size: Annotated[int, Field(gt=0, le=100_000_000)] | None = None
    current_usage: _Usage | None = None


class _Model(_Payload):
    id: Annotated[str, StringConstraints(max_length=128)] | None = None


class _Workspace(_Payload):
    current_dir: Path | None = None
    project_dir: Path | None = None


class StatusLinePayload(_Payload):
    """The JSON Claude Code pipes to its status line command (forwarded by ``contextd
    statusline``). Its ``context_window`` block is authoritative for window and usage."""

    session_id: SessionId
    transcript_path: Path | None = None
    cwd: Path | None = None
    model: _Model | None = None
    workspace: _Workspace | None = None
    context_window: _ContextWindow | None = None
    contextd_env: ContextdEnv | None = None


def _origin(cwd: str | None, env: ContextdEnv | None) -> Origin | None:
    if env is None:
        return Origin(cwd=cwd) if cwd else None
    return Origin(cwd=cwd, entrypoint=env.entrypoint, session_type=env.session_type,
                  user=env.user_id)  # fmt: skip


def hook_observations(payload: HookPayload, now: float) -> list[Observation]:
    """What one hook says about its session."""
    sid = payload.session_id
    origin = _origin(payload.cwd, payload.contextd_env)
    event = payload.hook_event_name
    if event == "SessionStart":
        return [SessionStart(sid, now, payload.source or "startup", payload.model, origin)]
    if event == "SessionEnd":
        return [SessionEnd(sid, now, payload.reason or "other", origin)]
    if event == "PostCompact":
        trigger = payload.trigger or "unknown"
        return [Compaction(sid, now, trigger, pre_tokens=None, source="hook", origin=origin)]
    return [Activity(sid, now, origin)]


def start_observations(payload: SessionStartPayload, now: float) -> list[Observation]:
    origin = Origin(cwd=payload.cwd) if payload.cwd else None
    return [SessionStart(payload.session_id, now, payload.source or "startup", payload.model,
                         origin)]  # fmt: skip


def end_observations(payload: SessionEndPayload, now: float) -> list[Observation]:
    return [SessionEnd(payload.session_id, now, payload.reason or "other")]


def status_line_observations(payload: StatusLinePayload, now: float) -> list[Observation]:
    cwd = payload.cwd or (payload.workspace.current_dir if payload.workspace else None)
    window = payload.context_window
    context: int | None = None
    size: int | None = None
    if window is not None:
        size = window.context_window_size
        usage = window.current_usage
        if usage is not None:
            context = (
                usage.input_tokens + usage.cache_creation_input_tokens
                + usage.cache_read_input_tokens
            )  # fmt: skip
    model = payload.model.id if payload.model else None
    origin = _origin(cwd, payload.contextd_env)
    return [StatusLine(payload.session_id, now, model, size, context, origin)]
