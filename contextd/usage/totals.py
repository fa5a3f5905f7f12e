"""Token and cost sums over priced entries (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from contextd.models import TokenCounts
from contextd.usage.entries import UsageEntry
from contextd.usage.pricing import ZERO, CostMode, PriceTable, entry_cost


class Priced(NamedTuple):
    """An entry with its cost in the chosen mode (None: unknown)."""

    entry: UsageEntry
    cost: Decimal | None


def price_all(entries: Iterable[UsageEntry], table: PriceTable, mode: CostMode) -> list[Priced]:
    return [Priced(e, entry_cost(e, table, mode)) for e in entries]


@dataclass(slots=True)
class Totals:
    """Sums of a group of entries. ``cost`` covers the priced ones; ``unpriced`` counts the
    entries whose cost is unknown and ``unpriced_models`` names their models, so an unknown
    price is visible, never a silent 0."""

    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0
    cost: Decimal = ZERO
    entries: int = 0
    unpriced: int = 0
    unpriced_models: set[str] = field(default_factory=set)

    def add(self, item: Priced) -> None:
        e = item.entry
        self.input += e.input
        self.output += e.output
        self.cache_creation += e.cache_write_5m + e.cache_write_1h
        self.cache_read += e.cache_read
        self.entries += 1
        if item.cost is None:
            self.unpriced += 1
            self.unpriced_models.add(e.model_name or "(no model)")
        else:
            self.cost += item.cost

    @classmethod
    def of(cls, items: Iterable[Priced]) -> Totals:
        totals = cls()
        for item in items:
            totals.add(item)
        return totals

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    @property
    def non_cache(self) -> int:
        return self.input + self.output

    @property
    def cost_complete(self) -> bool:
        return self.unpriced == 0

    def tokens_json(self) -> dict[str, int]:
        counts = TokenCounts(self.input, self.output, self.cache_creation, self.cache_read)
        return {**counts.as_dict(), "total": counts.total}

    def cost_json(self) -> dict[str, object]:
        """``cost_usd`` (None when nothing in the group has a known price), whether it is
        complete, and the models without a price."""
        known = self.entries > self.unpriced or self.entries == 0
        return {
            "cost_usd": float(self.cost) if known else None,
            "cost_complete": self.cost_complete,
            "unpriced_models": sorted(self.unpriced_models),
        }
