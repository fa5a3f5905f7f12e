"""What the exporters report from one snapshot: plain values, no I/O, no metrics library.

The Prometheus collector and the OTLP exporter both turn the engine's published snapshot
into samples here, so the two outputs cannot disagree: the same live sessions, the same cap,
the same overflow series, the same values. A sample is ``(label values, value)`` with the
label values in the order of the metric's ``labels`` in :mod:`contextd.exporters.names`.

The cap (DESIGN.md, cardinality): of the live sessions, the ``max_series`` with the highest
context percentage keep their own series (ties: the most recent activity first, then the
session id); the rest are summed into one series labelled
``session_id=names.OVERFLOW_SESSION`` with empty project, model, user and session_type. Its context
percentage is recomputed from the sums (``100 * sum(context) / sum(window)``), its duration
is the longest one, and ``names.SESSION_SERIES_DROPPED`` says how many sessions it holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from contextd.errors import ConfigError
from contextd.exporters import names
from contextd.models import ZERO_TOKENS, SessionSnapshot, TokenCounts
from contextd.usage.gauges import UsageMetrics

Labels = tuple[str, ...]
Sample = tuple[Labels, float]
Samples = dict[names.Metric, list[Sample]]

SESSION_METRICS: tuple[names.Metric, ...] = (
    *names.PER_SESSION,
    names.ACTIVE_SESSIONS,
    names.SESSION_SERIES_DROPPED,
)
"""Metrics computed from the session snapshot."""

COUNTER_METRICS: tuple[names.Metric, ...] = (
    names.TRANSCRIPT_LINES,
    names.TRANSCRIPT_REJECTED,
    names.HOOK_EVENTS,
)
"""Metrics computed from the store's counters."""

USAGE_METRICS: tuple[names.Metric, ...] = names.USAGE
"""Metrics computed from the usage snapshot (:class:`~contextd.usage.gauges.UsageMetrics`)."""

REPORTED: tuple[names.Metric, ...] = SESSION_METRICS + COUNTER_METRICS + USAGE_METRICS
"""Everything the exporters render. The HTTP latency histogram is the daemon's own."""

# Store counter names (``Store.counters()``), as the scanner and the daemon write them. The
# scanner also keeps ``transcript_oversize``, ``transcript_malformed`` and
# ``transcript_blank``: the first two are already split by reason under
# ``transcript_rejected_*`` (an oversize line is ``transcript_rejected_oversize``) and blank
# lines are not rejected, so adding any of them would count lines twice.
LINES_COUNTER = "transcript_lines"
REJECTED_PREFIX = "transcript_rejected_"
HOOK_EVENTS_PREFIX = "hook_events_"

# Reasons and hook event names become label values; only identifier-shaped ones are used as
# they are, anything else (a path, a key, a long or odd string a client made up) is summed
# into ``names.OVERFLOW_SESSION`` so no label value can carry it.
_LABEL_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Series:
    """One exported per-session series: a live session, or the overflow sum."""

    labels: Labels
    """session_id, project, model, user, session_type (``names.SESSION_LABELS`` order); None
    is ``""``, an unreported session type ``names.UNKNOWN_SESSION_TYPE``."""
    context_tokens: int
    window_tokens: int
    percent: float
    threshold_70: int
    threshold_90: int
    checkpoints: int
    tokens_saved: int
    duration: float
    tokens: TokenCounts


@dataclass(frozen=True, slots=True)
class Selection:
    """The series to export for one snapshot."""

    series: tuple[Series, ...]
    live: int
    """Live sessions in the snapshot (exported as ``names.ACTIVE_SESSIONS``)."""
    dropped: int
    """Live sessions summed into the overflow series (``names.SESSION_SERIES_DROPPED``)."""
    overflow_ids: tuple[str, ...] = ()
    """The session ids summed into the overflow series."""


EMPTY = Selection((), 0, 0)


def check_max_series(max_series: int) -> int:
    """Validate a per-session series cap (a setting): a non-negative int."""
    if type(max_series) is not int or max_series < 0:
        raise ConfigError(f"max_series must be an integer >= 0, got {max_series!r}")
    return max_series


def _series(snap: SessionSnapshot) -> Series:
    return Series(
        (
            snap.session_id,
            snap.project or "",
            snap.model or "",
            snap.user or "",
            snap.session_type or names.UNKNOWN_SESSION_TYPE,
        ),
        snap.context_tokens,
        snap.window_tokens,
        snap.percent,
        snap.warn_crossings,
        snap.critical_crossings,
        snap.checkpoints,
        snap.tokens_saved,
        snap.duration,
        snap.tokens,
    )


def _overflow(rest: Sequence[SessionSnapshot]) -> Series:
    context = window = t70 = t90 = checkpoints = saved = 0
    duration = 0.0
    tokens = ZERO_TOKENS
    for snap in rest:
        context += snap.context_tokens
        window += snap.window_tokens
        t70 += snap.warn_crossings
        t90 += snap.critical_crossings
        checkpoints += snap.checkpoints
        saved += snap.tokens_saved
        duration = max(duration, snap.duration)
        tokens += snap.tokens
    percent = 100.0 * context / window if window > 0 else 0.0
    return Series(
        (names.OVERFLOW_SESSION, "", "", "", ""),
        context,
        window,
        percent,
        t70,
        t90,
        checkpoints,
        saved,
        duration,
        tokens,
    )


def _rank(snap: SessionSnapshot) -> tuple[float, float, str]:
    return (-snap.percent, -snap.last_activity, snap.session_id)


def select(snapshots: Iterable[SessionSnapshot], max_series: int) -> Selection:
    """The live sessions of ``snapshots`` to export, capped at ``max_series`` plus overflow."""
    live = [snap for snap in snapshots if snap.live]
    if len(live) <= max_series:
        return Selection(tuple(_series(snap) for snap in live), len(live), 0)
    ranked = sorted(live, key=_rank)
    kept, rest = ranked[:max_series], ranked[max_series:]
    series = (*(_series(snap) for snap in kept), _overflow(rest))
    return Selection(series, len(live), len(rest), tuple(snap.session_id for snap in rest))


_SCALAR: Mapping[names.Metric, Callable[[Series], float]] = {
    names.CONTEXT_TOKENS: lambda s: s.context_tokens,
    names.CONTEXT_PERCENT: lambda s: s.percent,
    names.CONTEXT_WINDOW: lambda s: s.window_tokens,
    names.THRESHOLD_70: lambda s: s.threshold_70,
    names.THRESHOLD_90: lambda s: s.threshold_90,
    names.CHECKPOINTS: lambda s: s.checkpoints,
    names.TOKENS_SAVED: lambda s: s.tokens_saved,
    names.DURATION: lambda s: s.duration,
}
"""How each single-valued per-session metric reads a series."""


def session_samples(selection: Selection, costs: Mapping[str, float] | None = None) -> Samples:
    """Samples of every metric in :data:`SESSION_METRICS` for one selection.

    ``names.COST`` comes from ``costs`` (session id → US dollars,
    :attr:`UsageMetrics.session_costs <contextd.usage.gauges.UsageMetrics.session_costs>`):
    sessions without a cost there have no sample; the overflow series sums its sessions'.
    """
    out: Samples = {metric: [] for metric in SESSION_METRICS}
    series = selection.series
    for metric, value in _SCALAR.items():
        out[metric] = [(s.labels, value(s)) for s in series]
    tokens = out[names.TOKENS]
    for s in series:
        counts = s.tokens.as_dict()
        tokens.extend(((*s.labels, kind), counts[kind]) for kind in names.TOKEN_TYPES)
    if costs:
        out[names.COST] = [
            (s.labels, _cost(s, selection, costs))
            for s in series
            if s.labels[0] in costs or s.labels[0] == names.OVERFLOW_SESSION
        ]
    out[names.ACTIVE_SESSIONS] = [((), selection.live)]
    out[names.SESSION_SERIES_DROPPED] = [((), selection.dropped)]
    return out


def _cost(series: Series, selection: Selection, costs: Mapping[str, float]) -> float:
    if series.labels[0] == names.OVERFLOW_SESSION:
        return sum(costs.get(sid, 0.0) for sid in selection.overflow_ids)
    return costs[series.labels[0]]


def usage_samples(usage: UsageMetrics) -> Samples:
    """Samples of every metric in :data:`USAGE_METRICS`: the active block's gauges, or only
    ``names.BLOCK_ACTIVE`` = 0 when no block is active."""
    block = usage.block
    if block is None:
        out: Samples = {metric: [] for metric in USAGE_METRICS}
        out[names.BLOCK_ACTIVE] = [((), 0)]
        return out
    return {
        names.BLOCK_ACTIVE: [((), 1)],
        names.BLOCK_TOKENS: [((), block.tokens)],
        names.BLOCK_COST: [((), block.cost_usd)],
        names.BLOCK_BURN_RATE: [((), block.burn_rate_tokens_per_minute)],
        names.BLOCK_NON_CACHE_BURN_RATE: [((), block.non_cache_burn_rate_tokens_per_minute)],
        names.BLOCK_PROJECTED_TOKENS: [((), block.projected_tokens)],
        names.BLOCK_PROJECTED_COST: [((), block.projected_cost_usd)],
        names.BLOCK_REMAINING: [((), block.remaining_seconds)],
    }


def _by_suffix(counters: Mapping[str, int], prefix: str) -> list[Sample]:
    sums: dict[str, int] = {}
    for name, value in counters.items():
        if name.startswith(prefix):
            label = name[len(prefix) :]
            if not _LABEL_VALUE.fullmatch(label):
                label = names.OVERFLOW_SESSION
            sums[label] = sums.get(label, 0) + value
    return [((label,), value) for label, value in sorted(sums.items())]


def counter_samples(counters: Mapping[str, int]) -> Samples:
    """Samples of every metric in :data:`COUNTER_METRICS` from the store's counters."""
    return {
        names.TRANSCRIPT_LINES: [((), counters.get(LINES_COUNTER, 0))],
        names.TRANSCRIPT_REJECTED: _by_suffix(counters, REJECTED_PREFIX),
        names.HOOK_EVENTS: _by_suffix(counters, HOOK_EVENTS_PREFIX),
    }
