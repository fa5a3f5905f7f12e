"""The usage figures the metric exporters publish (no I/O, no metrics library).

:class:`UsageMetrics` is an immutable snapshot: the cost of each live session (all of its
entries, sub-agents included) and the gauges of the active 5-hour block. The daemon recomputes
it after reading new lines; the Prometheus collector and the OTLP exporter read it as is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from contextd.usage.blocks import burn_rate, limit_status, project
from contextd.usage.entries import UsageEntry
from contextd.usage.pricing import ZERO, PriceTable, entry_cost
from contextd.usage.report import Timeline, UsageOptions, select


@dataclass(frozen=True, slots=True)
class BlockGauges:
    tokens: int
    cost_usd: float
    burn_rate_tokens_per_minute: float
    non_cache_burn_rate_tokens_per_minute: float
    """Input + output tokens per minute: what the severity is judged on."""
    projected_tokens: int
    projected_cost_usd: float
    remaining_seconds: float
    limit_percent: float | None
    """Tokens used as a percentage of the token limit (None without a limit)."""


@dataclass(frozen=True, slots=True)
class UsageMetrics:
    session_costs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Session id → US dollars (known prices only), for the live sessions asked about."""
    block: BlockGauges | None = None
    """The active block; None when no block is active."""


EMPTY_USAGE = UsageMetrics()


def usage_metrics(
    entries: Sequence[UsageEntry],
    table: PriceTable,
    live_sessions: Collection[str],
    options: UsageOptions,
    now_ms: int,
    *,
    earlier: Mapping[str, Decimal] = MappingProxyType({}),
) -> UsageMetrics:
    """The snapshot at ``now_ms``; ``earlier`` adds, per session, the cost of entries no
    longer in ``entries`` (the daemon's horizon passed them)."""
    live = set(live_sessions)
    costs: dict[str, Decimal] = {s: earlier[s] for s in live if s in earlier}
    for e in entries:
        if e.session_id in live:
            cost = entry_cost(e, table, options.mode)
            costs[e.session_id] = costs.get(e.session_id, ZERO) + (cost or ZERO)
    timeline = Timeline(select(entries, options), options)
    span = timeline.active(now_ms)
    block = timeline.block(span, table, options.mode) if span is not None else None
    gauges = None
    if block is not None:
        totals = block.totals()
        rate = burn_rate(
            block.entries, now_ms, window_ms=options.burn_window_ms, thresholds=options.thresholds
        )
        proj = project(block, totals, rate, now_ms)
        limit = options.token_limit
        gauges = BlockGauges(
            tokens=totals.total,
            cost_usd=float(totals.cost),
            burn_rate_tokens_per_minute=rate.tokens_per_minute,
            non_cache_burn_rate_tokens_per_minute=rate.non_cache_per_minute,
            projected_tokens=proj.tokens,
            projected_cost_usd=float(proj.cost),
            remaining_seconds=max(block.end_ms - now_ms, 0) / 1000,
            limit_percent=(
                limit_status(block, rate, proj, limit, now_ms).percent if limit else None
            ),
        )
    return UsageMetrics(MappingProxyType({k: float(v) for k, v in costs.items()}), gauges)
