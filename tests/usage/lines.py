"""Builders of transcript lines and usage entries for the usage tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from contextd.usage.entries import UsageEntry
from contextd.usage.totals import Priced

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
MIN = 60_000
HOUR = 3_600_000


def assistant(
    mid: str | None = "msg_1",
    req: str | None = "req_1",
    *,
    out: int = 10,
    inp: int = 3,
    cc: int = 100,
    cr: int = 1000,
    session: str = "S1",
    ts: str = "2026-03-01T10:00:00.000Z",
    model: str = "claude-opus-4-6",
    cwd: str = "/home/u/proj",
    sidechain: bool = False,
    nested: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An assistant line as Claude Code writes it (compact JSON when dumped)."""
    usage: dict[str, Any] = {
        "input_tokens": inp,
        "cache_creation_input_tokens": cc,
        "cache_read_input_tokens": cr,
        "output_tokens": out,
        "service_tier": "standard",
    }
    if nested is not None:
        usage["cache_creation"] = nested
    message: dict[str, Any] = {
        "model": model,
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "hi"}],
        "usage": usage,
    }
    if mid is not None:
        message["id"] = mid
    line: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.1.39",
        "type": "assistant",
        "message": message,
        "uuid": f"u-{mid}-{out}",
        "timestamp": ts,
    }
    if req is not None:
        line["requestId"] = req
    line.update(extra)
    return line


def dump(line: dict[str, Any]) -> bytes:
    return orjson.dumps(line)


def write(path: Path, *lines: dict[str, Any] | bytes, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab" if append else "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else dump(line)) + b"\n")


def entry(
    at_ms: int,
    *,
    out: int = 0,
    inp: int = 0,
    cc: int = 0,
    cr: int = 0,
    session: str = "S1",
    project_dir: str = "-home-u-proj",
    cwd: str | None = "/home/u/proj",
    model: str | None = "claude-opus-4-6",
) -> UsageEntry:
    return UsageEntry(
        session_id=session,
        project_dir=project_dir,
        cwd=cwd,
        at_ms=at_ms,
        model=model,
        input=inp,
        output=out,
        cache_write_5m=cc,
        cache_write_1h=0,
        cache_read=cr,
        cost_usd=None,
        fast=False,
        sidechain=False,
        message_id=None,
        request_id=None,
        line_session=session,
    )


def priced(*entries: UsageEntry) -> list[Priced]:
    return [Priced(e, None) for e in entries]
