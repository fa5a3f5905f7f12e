"""JSON views of engine values: the stable field names of every read surface.

The CLI's ``--json`` output, and later the HTTP API and MCP tools, use these functions, so a
field means the same thing everywhere. Times are ISO-8601 UTC strings; token counts integers;
percentages floats rounded to 0.01.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contextd.models import SessionEvent, SessionSnapshot, TokenCounts
from contextd.sessions import EngineConfig


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tokens_text(n: float) -> str:
    """A token count for people: ``1.2M``, ``190.0k``, ``950`` (tables, the monitor)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n:.0f}"


def threshold_state(snap: SessionSnapshot, config: EngineConfig) -> str:
    """``ok``, ``warning`` (at or above the first threshold) or ``critical`` (the second)."""
    if snap.percent >= config.critical_percent:
        return "critical"
    if snap.percent >= config.warn_percent:
        return "warning"
    return "ok"


def tokens_view(tokens: TokenCounts) -> dict[str, int]:
    return {**tokens.as_dict(), "total": tokens.total}


def session_view(snap: SessionSnapshot, config: EngineConfig) -> dict[str, object]:
    return {
        "session_id": snap.session_id,
        "status": snap.status.value,
        "project": snap.project,
        "cwd": snap.cwd,
        "model": snap.model,
        "user": snap.user,
        "git_branch": snap.git_branch,
        "claude_version": snap.version,
        "entrypoint": snap.entrypoint,
        "session_type": snap.session_type or "unknown",
        "started_at": iso(snap.started_at),
        "last_activity": iso(snap.last_activity),
        "ended_at": iso(snap.ended_at),
        "end_reason": snap.end_reason,
        "superseded_by": snap.superseded_by,
        "duration_seconds": round(snap.duration, 3),
        "context_tokens": snap.context_tokens,
        "context_window": snap.window_tokens,
        "context_window_source": snap.window_source.value,
        "context_percent": round(snap.percent, 2),
        "peak_context_percent": round(snap.peak_percent, 2),
        "threshold_state": threshold_state(snap, config),
        "threshold_warn_crossings": snap.warn_crossings,
        "threshold_critical_crossings": snap.critical_crossings,
        "checkpoints": snap.checkpoints,
        "tokens_saved": snap.tokens_saved,
        "checkpoint_pending_pre_tokens": snap.pending_checkpoint,
        "last_checkpoint_at": iso(snap.last_checkpoint_at),
        "tokens": tokens_view(snap.tokens),
        "subagent_tokens": tokens_view(snap.sidechain_tokens),
        "models": [
            {"model": m.model, "tokens": tokens_view(m.tokens), "responses": m.responses}
            for m in snap.by_model
        ],
        "responses": snap.responses,
        "tool_calls": snap.tool_calls,
    }


def event_view(event: SessionEvent) -> dict[str, object]:
    return {
        "seq": event.seq,
        "session_id": event.session_id,
        "at": iso(event.at),
        "kind": event.kind.value,
        "data": dict(event.data),
    }
