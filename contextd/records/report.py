"""``contextd report`` and ``contextd history``: session records as reports (pure functions,
plus :func:`write_report`, which writes the files).

A report is three documents:

* the **main report** (``FILE.json``): the filters, totals over the selected sessions, and the
  same totals grouped by user, project, day (UTC, of the end), model and session type;
* the **sessions** (``FILE.sessions.json``): one row per session — the record, ISO times, its
  duration and ``is_me``;
* the **analytics** (``FILE.analytics.json``): per session, usage (tokens, cost, tokens per
  response, cost per million tokens, cache-read share), efficiency (tokens saved per checkpoint,
  share of the context the checkpoints removed) and threshold history (peak, crossings, the
  highest level reached).

With ``--format csv`` the same three are ``FILE.csv`` (one row per group, ``group`` = ``total``,
``user``, ``project``, ``day``, ``model`` or ``session_type``), ``FILE.sessions.csv`` and
``FILE.analytics.csv`` (nested fields flattened with dots: ``tokens.input``).

Costs add up only over sessions whose cost is known; ``cost_complete`` says whether that was all
of them (an unknown cost is never counted as 0).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from contextd.errors import ConfigError
from contextd.identity import USER_ID
from contextd.records.model import SessionRecord

JsonDict = dict[str, Any]
TOKEN_TYPES = ("input", "output", "cache_creation", "cache_read")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _totals(records: Sequence[SessionRecord]) -> JsonDict:
    tokens = dict.fromkeys(TOKEN_TYPES, 0)
    for r in records:
        for kind in TOKEN_TYPES:
            tokens[kind] += getattr(r.tokens, kind)
    costs = [r.cost_usd for r in records]
    known = [c for c in costs if c is not None]
    checkpoints = sum(r.checkpoints for r in records)
    saved = sum(r.tokens_saved for r in records)
    return {
        "sessions": len(records),
        "duration_seconds": round(sum(r.ended_at - r.started_at for r in records), 3),
        "tokens": {**tokens, "total": sum(tokens.values())},
        "cost_usd": round(sum(known), 6) if known or not costs else None,
        "cost_complete": len(known) == len(costs),
        "tool_calls": sum(r.tool_calls for r in records),
        "responses": sum(r.responses for r in records),
        "checkpoints": checkpoints,
        "tokens_saved": saved,
        "tokens_saved_per_checkpoint": round(saved / checkpoints, 1) if checkpoints else None,
        "warn_crossings": sum(r.warn_crossings for r in records),
        "critical_crossings": sum(r.critical_crossings for r in records),
        "peak_percent": max((r.peak_percent for r in records), default=0.0),
    }


_GROUPS: dict[str, Callable[[SessionRecord], Iterable[str]]] = {
    "user": lambda r: [r.identity_hash],
    "project": lambda r: [r.project or "(none)"],
    "day": lambda r: [iso(r.ended_at)[:10]],
    "model": lambda r: r.models or ["(none)"],
    "session_type": lambda r: [r.session_type or "unknown"],
}


def summary(records: Sequence[SessionRecord], *, me: str | None, filters: Mapping[str, object],
            now: float) -> JsonDict:  # fmt: skip
    """The main report."""
    groups: JsonDict = {}
    for name, keys in _GROUPS.items():
        members: dict[str, list[SessionRecord]] = {}
        for record in records:
            for key in keys(record):
                members.setdefault(key, []).append(record)
        rows = [{"key": k, **_totals(v)} for k, v in sorted(members.items())]
        if name == "user":
            for row in rows:
                row["is_me"] = row["key"] == me
        groups[name] = rows
    return {
        "report": "contextd session history",
        "schema_version": 1,
        "generated_at": iso(now),
        "filters": dict(filters),
        "first_end": iso(records[0].ended_at) if records else None,
        "last_end": iso(records[-1].ended_at) if records else None,
        "totals": _totals(records),
        "by": groups,
    }


def session_row(record: SessionRecord, me: str | None) -> JsonDict:
    return {
        **record.as_json(),
        "started": iso(record.started_at),
        "ended": iso(record.ended_at),
        "duration_seconds": round(record.ended_at - record.started_at, 3),
        "is_me": record.identity_hash == me,
    }


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def analytics_row(record: SessionRecord) -> JsonDict:
    """Per-session analytics (see the module docstring)."""
    tokens = record.tokens
    total = tokens.total
    context_in = tokens.input + tokens.cache_creation + tokens.cache_read
    level = ("critical" if record.critical_crossings else
             "warning" if record.warn_crossings else "normal")  # fmt: skip
    cost = record.cost_usd
    return {
        "session_id_hash": record.session_id_hash,
        "identity_hash": record.identity_hash,
        "project": record.project,
        "ended": iso(record.ended_at),
        "usage": {
            "tokens_total": total,
            "cost_usd": cost,
            "tokens_per_response": _ratio(total, record.responses, 1),
            "cost_per_million_tokens": (
                round(cost * 1e6 / total, 4) if cost is not None and total else None
            ),
            "cache_read_share": _ratio(tokens.cache_read, context_in),
            "tool_calls_per_response": _ratio(record.tool_calls, record.responses, 3),
        },
        "efficiency": {
            "checkpoints": record.checkpoints,
            "tokens_saved": record.tokens_saved,
            "tokens_saved_per_checkpoint": _ratio(record.tokens_saved, record.checkpoints, 1),
            "tokens_saved_per_hour": _ratio(
                record.tokens_saved * 3600, record.ended_at - record.started_at, 1
            ),
        },
        "thresholds": {
            "peak_percent": record.peak_percent,
            "warn_crossings": record.warn_crossings,
            "critical_crossings": record.critical_crossings,
            "highest_level": level,
        },
    }


def _flat(row: Mapping[str, Any], prefix: str = "") -> JsonDict:
    out: JsonDict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = ";".join(str(v) for v in value)
        else:
            out[name] = "" if value is None else value
    return out


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    flat = [_flat(r) for r in rows]
    columns: list[str] = []
    for row in flat:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def summary_rows(report: Mapping[str, Any]) -> list[JsonDict]:
    """The main report as rows: the totals, then each group's."""
    rows: list[JsonDict] = [{"group": "total", "key": "", **report["totals"]}]
    for group, members in report["by"].items():
        rows += [{"group": group, **m} for m in members]
    return rows


def report_paths(out: Path, fmt: str) -> tuple[Path, Path, Path]:
    """``FILE.json`` → (``FILE.json``, ``FILE.sessions.json``, ``FILE.analytics.json``)."""
    base = out.with_suffix("") if out.suffix in (".json", ".csv") else out
    ext = f".{fmt}"
    return (base.with_name(base.name + ext), base.with_name(base.name + ".sessions" + ext),
            base.with_name(base.name + ".analytics" + ext))  # fmt: skip


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(
    out: Path,
    fmt: str,
    records: Sequence[SessionRecord],
    *,
    me: str | None,
    filters: Mapping[str, object],
    now: float,
) -> tuple[Path, Path, Path]:
    """Write the three documents next to each other; their paths."""
    main = summary(records, me=me, filters=filters, now=now)
    sessions = [session_row(r, me) for r in records]
    analytics = [analytics_row(r) for r in records]
    paths = report_paths(out, fmt)
    if fmt == "csv":
        blobs = [to_csv(summary_rows(main)).encode(), to_csv(sessions).encode(),
                 to_csv(analytics).encode()]  # fmt: skip
    else:
        dump: Callable[[object], bytes] = lambda d: orjson.dumps(d, option=orjson.OPT_INDENT_2)  # noqa: E731
        blobs = [dump(main), dump(sessions), dump(analytics)]
    for path, blob in zip(paths, blobs, strict=True):
        _write_atomic(path, blob)
    return paths


def parse_when(option: str, value: str, *, end: bool = False) -> float:
    """``--since``/``--until``: a day (``YYYY-MM-DD``, UTC; as an end, the whole day counts) or
    an ISO date-time (UTC unless it says otherwise); seconds since the epoch."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option}: expected YYYY-MM-DD or an ISO date-time, got {value!r}"
                          ) from None  # fmt: skip
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    at = when.timestamp()
    if end and len(value) == 10:  # a bare day: up to its end
        at += 86_400
    return at


def user_filter(value: str | None, me: Callable[[], str]) -> str | None:
    """``--user``: a 16-hex user id, or ``me`` (this install's id of the OS user)."""
    if value is None:
        return None
    if value == "me":
        return me()
    if not USER_ID.match(value):
        raise ConfigError(f"--user: expected a 16-hex user id or 'me', got {value!r}")
    return value


def history_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``contextd history``: one line per session (rows of :func:`session_row`)."""
    header = ("ENDED", "SESSION", "USER", "PROJECT", "TYPE", "MODEL", "DURATION", "TOKENS",
              "COST", "PEAK%", "CKPT", "SAVED", "STATUS")  # fmt: skip
    lines = [header]
    for r in rows:
        cost = r["cost_usd"]
        minutes = r["duration_seconds"] / 60
        lines.append((
            r["ended"][:16].replace("T", " "), r["session_id_hash"][:8],
            "me" if r["is_me"] else r["identity_hash"][:8], (r["project"] or "-")[:24],
            r["session_type"] or "unknown", (r["model"] or "-")[:24],
            f"{minutes:.0f}m" if minutes < 120 else f"{minutes / 60:.1f}h",
            str(r["tokens"]["input"] + r["tokens"]["output"] + r["tokens"]["cache_creation"]
                + r["tokens"]["cache_read"]),
            "?" if cost is None else f"${cost:.2f}", f"{r['peak_percent']:.1f}",
            str(r["checkpoints"]), str(r["tokens_saved"]), r["status"],
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in lines)  # fmt: skip
