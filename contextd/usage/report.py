"""Usage reports as JSON-ready dicts: per session, per day, and the live view (no I/O).

* :func:`session_report` and :func:`daily_report` are ccusage's ``session`` and ``daily``:
  one row per (project directory, session) or per calendar day in ``options.tz``, with tokens
  by type, cost and a per-model breakdown. Rows with no tokens are left out.
* :func:`live_view` is the multi-session tracker: the active 5-hour block combined (tokens,
  cost, burn rate, projection, limit), then per project and per session within that block,
  recent blocks, and warnings. It is what ``GET /api/usage``, ``contextd usage --json``, the
  live screen and the ``monitor`` view all read; its shape is documented in README.md.

Projects are named from the sessions' ``cwd`` (last path component; the parent is added when
two directories share a last component), not from the encoded folder name, which is used only
for sessions that never recorded a ``cwd``. ``options.projects``/``options.exclude`` match a
project's name or its full directory. ``since``/``until`` keep entries whose calendar day
(in ``options.tz``) lies in the range, both ends included.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from operator import attrgetter
from typing import Any, TypeVar

from contextd.sessions import project_name
from contextd.usage.blocks import (
    DEFAULT_DURATION_MS,
    DEFAULT_THRESHOLDS,
    DEFAULT_WINDOW_MS,
    MINUTE_MS,
    Block,
    BurnRate,
    BurnThresholds,
    Severity,
    Span,
    burn_rate,
    identify_blocks,
    limit_status,
    project,
    spans,
)
from contextd.usage.entries import UsageEntry, iso_ms
from contextd.usage.pricing import CostMode, PriceTable, entry_cost
from contextd.usage.totals import Priced, Totals, price_all

K = TypeVar("K")
JsonDict = dict[str, Any]
"""A JSON-ready object (what ``orjson.dumps`` takes)."""
SessionKey = tuple[str, str]
"""(project directory, session id)."""
RECENT_BLOCKS = 6
LIMIT_WARN_PERCENT = 80.0


@dataclass(frozen=True, slots=True)
class UsageOptions:
    """What to count and how: the options of ``contextd usage`` and ``GET /api/usage``."""

    mode: CostMode = CostMode.AUTO
    session_duration_ms: int = DEFAULT_DURATION_MS
    burn_window_ms: int = DEFAULT_WINDOW_MS
    token_limit: int | None = None
    token_limit_max: bool = False
    """``--token-limit max``: the most tokens any earlier block used."""
    cost_threshold: Decimal | None = None
    projects: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    tz: tzinfo = UTC
    new_session_ms: int = 5 * MINUTE_MS
    thresholds: BurnThresholds = DEFAULT_THRESHOLDS


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    cwd: str | None


def _session_cwds(entries: Iterable[UsageEntry]) -> dict[SessionKey, tuple[int, str]]:
    """Each session's earliest recorded ``cwd``."""
    found: dict[SessionKey, tuple[int, str]] = {}
    for e in entries:
        if e.cwd is not None:
            key = (e.project_dir, e.session_id)
            known = found.get(key)
            if known is None or e.at_ms < known[0]:
                found[key] = (e.at_ms, e.cwd)
    return found


class Projects:
    """Session → project, named from ``cwd`` (see the module docstring)."""

    def __init__(self, entries: Sequence[UsageEntry]) -> None:
        cwds = {key: cwd for key, (_, cwd) in _session_cwds(entries).items()}
        by_name: dict[str, set[str]] = defaultdict(set)
        for cwd in cwds.values():
            by_name[project_name(cwd) or cwd].add(cwd)
        names: dict[str, str] = {}
        for name, dirs in by_name.items():
            for cwd in dirs:
                names[cwd] = name if len(dirs) == 1 else _with_parent(cwd)
        self._of: dict[SessionKey, Project] = {
            key: Project(names[cwd], cwd) for key, cwd in cwds.items()
        }

    def of(self, entry: UsageEntry) -> Project:
        key = (entry.project_dir, entry.session_id)
        found = self._of.get(key)
        return found if found is not None else Project(entry.project_dir, None)

    def selected(self, entry: UsageEntry, options: UsageOptions) -> bool:
        if not (options.projects or options.exclude):
            return True
        proj = self.of(entry)
        names = {proj.name.casefold(), (proj.cwd or "").casefold(), entry.project_dir.casefold()}
        if options.projects and not names & {p.casefold() for p in options.projects}:
            return False
        return not names & {p.casefold() for p in options.exclude}


def _with_parent(cwd: str) -> str:
    parts = [p for p in cwd.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if parts else cwd


def day_of(at_ms: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(at_ms / 1000, tz).date()


def select(
    entries: Sequence[UsageEntry], options: UsageOptions, projects: Projects | None = None
) -> list[UsageEntry]:
    """The entries the options' project and date filters keep."""
    by_project = bool(options.projects or options.exclude)
    by_day = options.since is not None or options.until is not None
    if not (by_project or by_day):
        return list(entries)
    if by_project and projects is None:
        projects = Projects(entries)
    since, until = options.since or date.min, options.until or date.max
    out = []
    for e in entries:
        if by_day and not since <= day_of(e.at_ms, options.tz) <= until:
            continue
        if projects is None or projects.selected(e, options):
            out.append(e)
    return out


def _money(value: Decimal) -> float:
    return float(value)


def _group_json(totals: Totals) -> JsonDict:
    return {"tokens": totals.tokens_json(), **totals.cost_json()}


def _models(items: Iterable[Priced]) -> list[JsonDict]:
    """Per-model breakdown (``<synthetic>``/model-less entries are left out, like ccusage)."""
    by_model: dict[str, Totals] = defaultdict(Totals)
    for item in items:
        name = item.entry.model_name
        if name is not None:
            by_model[name].add(item)
    return [{"model": name, **_group_json(t)} for name, t in sorted(by_model.items())]


def _grouped(items: Iterable[Priced], key: Callable[[UsageEntry], K]) -> dict[K, list[Priced]]:
    groups: dict[K, list[Priced]] = defaultdict(list)
    for item in items:
        groups[key(item.entry)].append(item)
    return groups


def session_report(
    entries: Sequence[UsageEntry], table: PriceTable, options: UsageOptions
) -> JsonDict:
    """One row per (project directory, session), oldest last activity first."""
    projects = Projects(entries)
    items = price_all(select(entries, options, projects), table, options.mode)
    rows = []
    grand = Totals()
    for group in _grouped(items, lambda e: (e.project_dir, e.session_id)).values():
        totals = Totals.of(group)
        if totals.total == 0:
            continue
        for item in group:
            grand.add(item)
        first = group[0].entry
        proj = projects.of(first)
        rows.append(
            {
                "session_id": first.session_id,
                "project_dir": first.project_dir,
                "project": proj.name,
                "cwd": proj.cwd,
                "first_activity": iso_ms(min(i.entry.at_ms for i in group)),
                "last_activity": iso_ms(max(i.entry.at_ms for i in group)),
                **_group_json(totals),
                "models": _models(group),
            }
        )
    rows.sort(key=lambda r: (str(r["last_activity"]), str(r["session_id"])))
    return {"sessions": rows, "totals": _group_json(grand)}


def daily_report(
    entries: Sequence[UsageEntry], table: PriceTable, options: UsageOptions
) -> JsonDict:
    """One row per calendar day in ``options.tz``, oldest first."""
    items = price_all(select(entries, options), table, options.mode)
    rows = []
    grand = Totals()
    groups = _grouped(items, lambda e: day_of(e.at_ms, options.tz))
    for day in sorted(groups, key=str):
        group = groups[day]
        totals = Totals.of(group)
        if totals.total == 0:
            continue
        for item in group:
            grand.add(item)
        sessions = {(i.entry.project_dir, i.entry.session_id) for i in group}
        rows.append(
            {
                "date": str(day),
                **_group_json(totals),
                "sessions": len(sessions),
                "models": _models(group),
            }
        )
    return {"daily": rows, "totals": _group_json(grand)}


def blocks_report(
    entries: Sequence[UsageEntry], table: PriceTable, options: UsageOptions, now_ms: int
) -> JsonDict:
    """Every 5-hour block and gap (ccusage's ``blocks``), oldest first."""
    items = price_all(select(entries, options), table, options.mode)
    duration = options.session_duration_ms
    blocks = identify_blocks(items, duration)
    return {
        "blocks": [_block_summary(b, now_ms, duration) for b in blocks],
        "totals": _group_json(Totals.of(items)),
    }


# -- the live view ----------------------------------------------------------------------------


def _rate_json(rate: BurnRate) -> JsonDict:
    return {
        "tokens_per_minute": round(rate.tokens_per_minute, 3),
        "non_cache_tokens_per_minute": round(rate.non_cache_per_minute, 3),
        "cost_per_hour_usd": _money(rate.cost_per_hour),
        "severity": rate.severity.value,
        "window_start": iso_ms(rate.window_start_ms),
    }


def _breakdown_row(
    group: Sequence[Priced], block_total: int, now_ms: int, options: UsageOptions
) -> JsonDict:
    totals = Totals.of(group)
    start = min(i.entry.at_ms for i in group)
    rate = burn_rate(group, now_ms, window_ms=options.burn_window_ms, thresholds=options.thresholds)
    return {
        **_group_json(totals),
        "share_percent": round(100.0 * totals.total / block_total, 3) if block_total else 0.0,
        "started_at": iso_ms(start),
        "last_activity": iso_ms(max(i.entry.at_ms for i in group)),
        "elapsed_seconds": max(now_ms - start, 0) // 1000,
        "burn_rate": _rate_json(rate),
    }


def _block_summary(block: Block, now_ms: int, duration_ms: int) -> JsonDict:
    totals = block.totals()
    return {
        "start": iso_ms(block.start_ms),
        "end": iso_ms(block.end_ms),
        "gap": block.gap,
        "active": block.active(now_ms, duration_ms),
        "first_activity": iso_ms(block.first_ms) if block.first_ms is not None else None,
        "last_activity": iso_ms(block.last_ms) if block.last_ms is not None else None,
        "entries": totals.entries,
        **_group_json(totals),
        "models": sorted({n for i in block.entries if (n := i.entry.model_name) is not None}),
    }


class Timeline:
    """Entries in time order cut into blocks and gaps; only the blocks asked for are built
    (and priced), so a long history costs a sort, not a block object per entry."""

    def __init__(self, entries: Sequence[UsageEntry], options: UsageOptions) -> None:
        self.entries = sorted(entries, key=attrgetter("at_ms"))
        self.duration = options.session_duration_ms
        self.spans = spans([e.at_ms for e in self.entries], self.duration)

    def block(self, span: Span, table: PriceTable, mode: CostMode) -> Block:
        items = tuple(
            Priced(e, entry_cost(e, table, mode)) for e in self.entries[span.lo : span.hi]
        )
        return Block(span.start_ms, span.end_ms, items, span.gap)

    def active(self, now_ms: int) -> Span | None:
        for span in reversed(self.spans):
            if not span.gap:
                last = self.entries[span.hi - 1].at_ms
                return span if now_ms < span.end_ms and now_ms - last < self.duration else None
        return None

    def max_tokens(self, exclude: Span | None) -> int:
        """The most tokens any block but ``exclude`` used (``--token-limit max``)."""
        entries = self.entries
        return max(
            (
                sum(e.total for e in entries[s.lo : s.hi])
                for s in self.spans
                if not s.gap and s is not exclude
            ),
            default=0,
        )


def _warning(kind: str, level: str, message: str, **extra: object) -> JsonDict:
    return {"kind": kind, "level": level, "message": message, **extra}


def live_view(
    entries: Sequence[UsageEntry], table: PriceTable, options: UsageOptions, now_ms: int
) -> JsonDict:
    """The combined, per-project and per-session usage of the active block at ``now_ms``."""
    filtered = bool(options.projects or options.exclude)
    projects = Projects(entries) if filtered else None
    chosen = select(entries, options, projects)
    duration = options.session_duration_ms
    timeline = Timeline(chosen, options)
    span = timeline.active(now_ms)
    recent = [timeline.block(s, table, options.mode) for s in timeline.spans[-RECENT_BLOCKS:]]
    active = timeline.block(span, table, options.mode) if span is not None else None
    limit = options.token_limit
    if options.token_limit_max:
        limit = timeline.max_tokens(span) or None
    view: JsonDict = {
        "generated_at": iso_ms(now_ms),
        "options": {
            "mode": options.mode.value,
            "session_duration_hours": duration / 3_600_000,
            "burn_window_minutes": options.burn_window_ms / MINUTE_MS,
            "token_limit": limit,
            "cost_threshold_usd": (
                float(options.cost_threshold) if options.cost_threshold is not None else None
            ),
            "projects": list(options.projects),
            "exclude": list(options.exclude),
            "severity_thresholds": {
                "moderate": options.thresholds.moderate,
                "high": options.thresholds.high,
            },
        },
        "block": None,
        "projects": [],
        "sessions": [],
        "recent_blocks": [_block_summary(b, now_ms, duration) for b in recent],
        "warnings": [],
    }
    if active is not None:
        if projects is None:  # named from the sessions on show only
            projects = Projects([i.entry for i in active.entries])
        _fill_active(
            view,
            active,
            projects=projects,
            entries=entries,
            options=options,
            now_ms=now_ms,
            limit=limit,
        )
    return view


def _fill_active(
    view: JsonDict,
    block: Block,
    *,
    projects: Projects,
    entries: Sequence[UsageEntry],
    options: UsageOptions,
    now_ms: int,
    limit: int | None,
) -> None:
    totals = block.totals()
    rate = burn_rate(
        block.entries, now_ms, window_ms=options.burn_window_ms, thresholds=options.thresholds
    )
    proj = project(block, totals, rate, now_ms)
    summary = _block_summary(block, now_ms, options.session_duration_ms)
    summary.update(
        {
            "elapsed_seconds": max(now_ms - block.start_ms, 0) // 1000,
            "remaining_seconds": max(block.end_ms - now_ms, 0) // 1000,
            "burn_rate": _rate_json(rate),
            "projection": {"tokens": proj.tokens, "cost_usd": _money(proj.cost)},
            "limit": None,
        }
    )
    warnings: list[JsonDict] = []
    if limit is not None:
        status = limit_status(block, rate, proj, limit, now_ms)
        summary["limit"] = {
            "tokens": limit,
            "used": status.used,
            "percent": round(status.percent, 3),
            "projected_percent": round(status.projected_percent, 3),
            "exceeded": status.exceeded,
            "exceeded_at": iso_ms(status.exceeded_at_ms) if status.exceeded_at_ms else None,
            "reached_at_projected": iso_ms(status.eta_ms) if status.eta_ms else None,
        }
        if status.exceeded:
            warnings.append(
                _warning(
                    "token_limit_exceeded",
                    "critical",
                    f"token limit exceeded: {status.used:,} of {limit:,}",
                )
            )
        elif status.percent >= LIMIT_WARN_PERCENT or proj.tokens >= limit:
            warnings.append(
                _warning(
                    "token_limit_approaching",
                    "warning",
                    f"token limit approaching: {status.percent:.0f}% used, "
                    f"{status.projected_percent:.0f}% projected at block end",
                )
            )
    threshold = options.cost_threshold
    if threshold is not None:
        if totals.cost >= threshold:
            warnings.append(
                _warning(
                    "cost_threshold_exceeded",
                    "critical",
                    f"cost ${totals.cost:.2f} reached the ${threshold} threshold",
                )
            )
        elif proj.cost >= threshold:
            warnings.append(
                _warning(
                    "cost_threshold_approaching",
                    "warning",
                    f"cost projected at ${proj.cost:.2f}, threshold ${threshold}",
                )
            )
    if totals.unpriced:
        warnings.append(
            _warning(
                "unknown_price",
                "warning",
                "no price for " + ", ".join(sorted(totals.unpriced_models)),
                models=sorted(totals.unpriced_models),
            )
        )
    view["block"] = summary
    _fill_breakdown(
        view,
        block,
        block_total=totals.total,
        projects=projects,
        entries=entries,
        options=options,
        now_ms=now_ms,
        warnings=warnings,
    )
    view["warnings"] = warnings


def _fill_breakdown(
    view: JsonDict,
    block: Block,
    *,
    block_total: int,
    projects: Projects,
    entries: Sequence[UsageEntry],
    options: UsageOptions,
    now_ms: int,
    warnings: list[JsonDict],
) -> None:
    by_session = _grouped(block.entries, lambda e: (e.project_dir, e.session_id))
    first_seen: dict[SessionKey, int] = {}
    for e in entries:
        key = (e.project_dir, e.session_id)
        if key in by_session and (key not in first_seen or e.at_ms < first_seen[key]):
            first_seen[key] = e.at_ms
    sessions = []
    for key, group in by_session.items():
        entry = group[0].entry
        proj = projects.of(entry)
        row = {
            "session_id": entry.session_id,
            "project": proj.name,
            "cwd": proj.cwd,
            "first_activity": iso_ms(first_seen[key]),
            **_breakdown_row(group, block_total, now_ms, options),
            "models": sorted({n for i in group if (n := i.entry.model_name) is not None}),
        }
        sessions.append(row)
        if now_ms - first_seen[key] < options.new_session_ms:  # a skewed clock: < 0
            warnings.append(
                _warning(
                    "new_session",
                    "info",
                    f"new session {entry.session_id[:8]} in {proj.name}",
                    project=proj.name,
                    session_id=entry.session_id,
                )
            )
    by_project = _grouped(block.entries, projects.of)
    rows = []
    for proj, group in by_project.items():
        row = {
            "project": proj.name,
            "cwd": proj.cwd,
            "sessions": len({(i.entry.project_dir, i.entry.session_id) for i in group}),
            **_breakdown_row(group, block_total, now_ms, options),
        }
        rows.append(row)
        rate = row["burn_rate"]
        assert isinstance(rate, dict)
        if rate["severity"] == Severity.HIGH.value:
            warnings.append(
                _warning(
                    "high_burn_rate",
                    "warning",
                    f"high burn rate in {proj.name}: "
                    f"{rate['non_cache_tokens_per_minute']:,.0f} non-cache tokens/min",
                    project=proj.name,
                )
            )
    rows.sort(key=_by_tokens)
    sessions.sort(key=_by_tokens)
    view["projects"] = rows
    view["sessions"] = sessions


def _by_tokens(row: JsonDict) -> tuple[int, str]:
    tokens = row["tokens"]
    assert isinstance(tokens, dict)
    return (-int(tokens["total"]), str(row.get("session_id") or row["project"]))
