"""5-hour billing blocks, burn rate, projections and limits (no I/O; ``now`` is an argument).

Blocks (the rules ccusage uses for ``blocks``):

* Entries are taken in timestamp order (files may interleave, clocks may disagree; every
  timestamp is converted to UTC first).
* A block starts at its first entry's time **floored to the hour** and lasts the session
  duration (5 h by default). An entry starts a new block when it falls more than one
  duration after the block's start, or more than one duration after the previous entry.
* When the idle time between two entries exceeds the duration, a **gap** block (no entries,
  no tokens) runs from the earlier entry plus one duration to the later entry, as ccusage
  reports it (it overlaps the next block, which starts at the later entry's hour).
* A block is **active** at ``now`` when ``now`` is before its end and its last entry is less
  than one duration before ``now``.
* Any number of sessions and projects may contribute to one block: blocks are per machine
  (per account), which is how the 5-hour limits are applied.

Burn rate (:func:`burn_rate`): tokens of the entries after ``max(now - window, block's first
entry)`` divided by that span in minutes (at least one minute, so the first response of a block
does not read as an infinite rate). Entries stamped in the future (a skewed clock) count as
happening ``now``. Severity uses the **non-cache** rate (input + output tokens per minute), as
ccusage's indicator does: ``HIGH`` from 1,000/min, ``MODERATE`` from 500/min, else ``NORMAL``
(:class:`BurnThresholds`).

Projection: the block's tokens and cost so far plus the current rates times the minutes left
in the block. Limit (:func:`limit_status`): used/limit, when it was exceeded (the entry that
crossed it), or else when the current rate would reach it (only if before the block ends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from contextd.usage.pricing import ZERO
from contextd.usage.totals import Priced, Totals

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DEFAULT_DURATION_MS = 5 * HOUR_MS
DEFAULT_WINDOW_MS = 10 * MINUTE_MS


class Severity(StrEnum):
    NORMAL = "NORMAL"
    MODERATE = "MODERATE"
    HIGH = "HIGH"


@dataclass(frozen=True, slots=True)
class BurnThresholds:
    """Non-cache tokens per minute at which the burn rate is MODERATE and HIGH."""

    moderate: float = 500.0
    high: float = 1000.0

    def severity(self, non_cache_per_minute: float) -> Severity:
        if non_cache_per_minute >= self.high:
            return Severity.HIGH
        if non_cache_per_minute >= self.moderate:
            return Severity.MODERATE
        return Severity.NORMAL


DEFAULT_THRESHOLDS = BurnThresholds()


@dataclass(frozen=True, slots=True)
class Block:
    start_ms: int
    end_ms: int
    entries: tuple[Priced, ...]
    """In timestamp order; empty for a gap."""
    gap: bool = False

    @property
    def first_ms(self) -> int | None:
        return self.entries[0].entry.at_ms if self.entries else None

    @property
    def last_ms(self) -> int | None:
        return self.entries[-1].entry.at_ms if self.entries else None

    def active(self, now_ms: int, duration_ms: int = DEFAULT_DURATION_MS) -> bool:
        last = self.last_ms
        return last is not None and now_ms < self.end_ms and now_ms - last < duration_ms

    def totals(self) -> Totals:
        return Totals.of(self.entries)


def floor_hour(at_ms: int) -> int:
    return at_ms - at_ms % HOUR_MS


@dataclass(frozen=True, slots=True)
class Span:
    """A block or gap as a range ``[lo, hi)`` of time-ordered entries."""

    start_ms: int
    end_ms: int
    lo: int
    hi: int
    gap: bool = False


def spans(ordered_ms: Sequence[int], duration_ms: int = DEFAULT_DURATION_MS) -> list[Span]:
    """Blocks and gaps of sorted timestamps (the rules of the module docstring)."""
    if duration_ms <= 0:
        raise ValueError("the session duration must be positive")
    out: list[Span] = []
    start = lo = 0
    last = None
    for i, at in enumerate(ordered_ms):
        if last is not None:
            if at - start <= duration_ms and at - last <= duration_ms:
                last = at
                continue
            out.append(Span(start, start + duration_ms, lo, i))
            if at - last > duration_ms:
                out.append(Span(last + duration_ms, at, i, i, gap=True))
        start, lo, last = floor_hour(at), i, at
    if last is not None:
        out.append(Span(start, start + duration_ms, lo, len(ordered_ms)))
    return out


def identify_blocks(items: Sequence[Priced], duration_ms: int = DEFAULT_DURATION_MS) -> list[Block]:
    """Blocks and gaps of ``items`` (any order), oldest first."""
    ordered = sorted(items, key=lambda p: p.entry.at_ms)
    found = spans([p.entry.at_ms for p in ordered], duration_ms)
    return [Block(s.start_ms, s.end_ms, tuple(ordered[s.lo : s.hi]), s.gap) for s in found]


def active_block(
    blocks: Sequence[Block], now_ms: int, duration_ms: int = DEFAULT_DURATION_MS
) -> Block | None:
    for block in reversed(blocks):
        if not block.gap:
            return block if block.active(now_ms, duration_ms) else None
    return None


@dataclass(frozen=True, slots=True)
class BurnRate:
    tokens_per_minute: float
    """All token types (cache included)."""
    non_cache_per_minute: float
    """Input + output tokens per minute (what the severity is judged on)."""
    cost_per_hour: Decimal
    severity: Severity
    window_start_ms: int
    minutes: float


def burn_rate(
    items: Sequence[Priced],
    now_ms: int,
    *,
    window_ms: int = DEFAULT_WINDOW_MS,
    thresholds: BurnThresholds = DEFAULT_THRESHOLDS,
) -> BurnRate:
    """The rate of ``items`` (a block's, a project's or a session's) over the recent window."""
    first = min((p.entry.at_ms for p in items), default=now_ms)
    window_start = max(now_ms - window_ms, min(first, now_ms))
    tokens = non_cache = 0
    cost = ZERO
    for item in items:
        e = item.entry
        if e.at_ms >= window_start:  # the future (clock skew) counts as now
            tokens += e.total
            non_cache += e.input + e.output
            if item.cost is not None:
                cost += item.cost
    minutes = max((now_ms - window_start) / MINUTE_MS, 1.0)
    per_minute = non_cache / minutes
    return BurnRate(
        tokens_per_minute=tokens / minutes,
        non_cache_per_minute=per_minute,
        cost_per_hour=cost * 60 / Decimal(repr(minutes)),
        severity=thresholds.severity(per_minute),
        window_start_ms=window_start,
        minutes=minutes,
    )


@dataclass(frozen=True, slots=True)
class Projection:
    tokens: int
    cost: Decimal
    remaining_minutes: float


def project(block: Block, totals: Totals, rate: BurnRate, now_ms: int) -> Projection:
    """Tokens and cost at the block's end if the current rates hold."""
    remaining = max(block.end_ms - now_ms, 0) / MINUTE_MS
    return Projection(
        tokens=totals.total + round(rate.tokens_per_minute * remaining),
        cost=totals.cost + rate.cost_per_hour * Decimal(repr(remaining)) / 60,
        remaining_minutes=remaining,
    )


@dataclass(frozen=True, slots=True)
class LimitStatus:
    limit: int
    used: int
    percent: float
    projected_percent: float
    exceeded_at_ms: int | None
    """When the entry that crossed the limit was written; None if not exceeded."""
    eta_ms: int | None
    """When the current rate reaches the limit, if before the block ends."""

    @property
    def exceeded(self) -> bool:
        return self.exceeded_at_ms is not None


def limit_status(
    block: Block, rate: BurnRate, projection: Projection, limit: int, now_ms: int
) -> LimitStatus:
    used = 0
    crossed: int | None = None
    for item in block.entries:
        used += item.entry.total
        if crossed is None and used >= limit:
            crossed = item.entry.at_ms
    eta = None
    if crossed is None and rate.tokens_per_minute > 0:
        eta = now_ms + round((limit - used) / rate.tokens_per_minute * MINUTE_MS)
        if eta > block.end_ms:
            eta = None
    return LimitStatus(
        limit=limit,
        used=used,
        percent=100.0 * used / limit if limit > 0 else 0.0,
        projected_percent=100.0 * projection.tokens / limit if limit > 0 else 0.0,
        exceeded_at_ms=crossed,
        eta_ms=eta,
    )
