"""Known session records for the history tests."""

from __future__ import annotations

from typing import Any

from contextd.records.model import SessionRecord

ME = "0123456789abcdef"
OTHER = "fedcba9876543210"
T0 = 1_780_000_000.0  # 2026-05-28


def record_json(n: int = 0, identity: str = ME, **overrides: Any) -> dict[str, Any]:
    """A complete, valid record (as JSON), the n-th of a history: one hour apart."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "identity_hash": identity,
        "session_id_hash": f"{n:032x}",
        "project": "spotter" if n % 2 == 0 else "atlas",
        "project_hashed": False,
        "started_at": T0 + n * 3600,
        "ended_at": T0 + n * 3600 + 1800,
        "status": "ended",
        "end_reason": "logout",
        "models": ["claude-opus-4-6"],
        "model": "claude-opus-4-6",
        "tool_calls": 12 + n,
        "responses": 30 + n,
        "tokens": {"input": 100, "output": 2000 + n, "cache_creation": 5000, "cache_read": 90000},
        "cost_usd": 1.25,
        "window_tokens": 200000,
        "peak_percent": 72.5,
        "warn_crossings": 1,
        "critical_crossings": 0,
        "checkpoints": 2,
        "tokens_saved": 80000,
        "branch_sha": "a" * 40,
        "session_type": "interactive",
    }
    body.update(overrides)
    return body


def record(n: int = 0, identity: str = ME, **overrides: Any) -> SessionRecord:
    return SessionRecord.model_validate(record_json(n, identity, **overrides))
