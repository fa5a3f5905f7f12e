"""Usage reports from the transcripts: the price table's files, a reader, and the reports.

:class:`UsageService` is what the daemon (``GET /api/usage``, metrics) and ``contextd usage``
without a daemon share: one :class:`~contextd.usage.reader.UsageReader`, one price table and
the pure report functions, with the clock injected.

**The horizon** (``horizon_hours``; the daemon passes its ``usage_horizon_hours`` setting, 24 h
by default; the CLI passes none and reads the whole history). With a horizon the service keeps
only recent entries, so its memory follows recent activity, not years of history:

* The first :meth:`~UsageService.refresh` sets the reader's floor to ``now - horizon``: older
  lines are parsed and dropped, never kept (old copies in resumed sessions too).
* Every refresh then moves the floor forward, **at a block boundary**: to the first entry of the
  oldest 5-hour block that still ends after ``now - horizon``. Blocks are a fold over entries
  in time order that starts afresh at each block's first entry, so cutting history there
  leaves every later block exactly as the whole history has it. What is kept is at most the
  horizon plus one block.
* At start-up the fold begins at the first entry inside the horizon. If activity ran without a
  5-hour pause across ``now - horizon``, the daemon's blocks may start at other hours than
  ``contextd usage blocks`` (the whole history) shows, until the first 5-hour pause inside the
  horizon, after which they agree again; a 24 h horizon holds any day with a night's sleep.
  ``--token-limit max`` looks only at the blocks kept.
* Per-session costs (``contextd_session_cost_usd_total``) keep, per session still active, the
  sum of the entries the floor has passed (priced in ``auto`` mode), so the figure never drops
  while the daemon runs; it counts from ``now - horizon`` at the daemon's start.
* :meth:`~UsageService.coverage` says from when entries are kept; :meth:`~UsageService.report`
  refuses (:class:`~contextd.errors.NotKeptError` on ``since``) a report that would need older
  entries: ``daily``, ``session`` and ``blocks`` need a ``since`` day that starts inside the
  kept period, and ``live`` a recent ``since`` or none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from datetime import time as day_time
from decimal import Decimal
from importlib import resources
from pathlib import Path

from contextd.errors import ConfigError, NotKeptError
from contextd.usage.blocks import HOUR_MS
from contextd.usage.entries import DedupMode, iso_ms
from contextd.usage.gauges import UsageMetrics, usage_metrics
from contextd.usage.pricing import ZERO, CostMode, PriceTable, entry_cost
from contextd.usage.reader import UsageReader
from contextd.usage.report import (
    JsonDict,
    Timeline,
    UsageOptions,
    blocks_report,
    daily_report,
    live_view,
    session_report,
)


def bundled_prices() -> PriceTable:
    """The price table shipped with contextd (``contextd/usage/data/prices.json``)."""
    text = resources.files("contextd.usage").joinpath("data/prices.json").read_bytes()
    return PriceTable.from_litellm(text, "bundled")


def load_prices(path: Path | None = None) -> PriceTable:
    """The bundled table, with the models of a LiteLLM-format file (``--pricing``) on top."""
    table = bundled_prices()
    if path is None:
        return table
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--pricing: cannot read {path}: {exc.strerror or exc}") from None
    return table.merged(PriceTable.from_litellm(text, str(path)))


class UsageService:
    """Reads the transcripts under ``roots`` on :meth:`refresh`; answers reports.

    With ``horizon_hours`` it keeps only recent entries (see the module docstring)."""

    def __init__(
        self,
        roots: Sequence[Path],
        table: PriceTable | None = None,
        *,
        clock: Callable[[], float] = time.time,
        horizon_hours: float | None = None,
    ) -> None:
        self.reader = UsageReader(roots)
        self.table = table if table is not None else bundled_prices()
        self.clock = clock
        self.horizon_ms = round(horizon_hours * HOUR_MS) if horizon_hours is not None else None
        self._prune_lock = threading.Lock()
        self._retired: dict[str, Decimal] = {}
        """Session → cost of its entries below the floor (sessions still active only)."""

    def refresh(self) -> int:
        horizon = self.horizon_ms
        if horizon is not None and self.reader.floor_ms is None:
            self.reader.floor_ms = self.now_ms() - horizon
        read = self.reader.refresh()
        if horizon is not None:
            with self._prune_lock:
                self._prune(self.now_ms() - horizon)
        return read

    def _prune(self, cutoff_ms: int) -> None:
        """Move the floor to the first entry of the oldest block that ends after ``cutoff_ms``
        (or to the cutoff when none does), folding the costs of what it passes."""
        timeline = Timeline(self.reader.entries(), UsageOptions())
        floor = cutoff_ms
        for span in timeline.spans:
            if not span.gap and span.end_ms > cutoff_ms:
                floor = min(timeline.entries[span.lo].at_ms, cutoff_ms)
                break
        dropped = self.reader.prune(floor)
        if not dropped:
            return
        retired = self._retired
        for e in dropped:
            cost = entry_cost(e, self.table, CostMode.AUTO) or ZERO
            retired[e.session_id] = retired.get(e.session_id, ZERO) + cost
        active = {e.session_id for e in self.reader.entries()}
        self._retired = {k: v for k, v in retired.items() if k in active}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def coverage(self) -> JsonDict:
        """What period the answers cover: ``from`` (None: the whole history) and the horizon."""
        floor = self.reader.floor_ms if self.horizon_ms is not None else None
        return {
            "from": iso_ms(floor) if floor is not None else None,
            "horizon_hours": self.horizon_ms / HOUR_MS if self.horizon_ms is not None else None,
        }

    def _check_covered(self, kind: str, options: UsageOptions) -> None:
        floor = self.reader.floor_ms
        if self.horizon_ms is None or floor is None:
            return
        since = options.since
        if since is None and kind == "live":
            return
        if since is not None:
            start = datetime.combine(since, day_time(), options.tz).timestamp() * 1000
            if start >= floor:
                return
        first = datetime.fromtimestamp(floor / 1000 + 86_400, options.tz).date()
        raise NotKeptError(
            "since",
            f"the daemon keeps usage from {iso_ms(floor)} only (usage_horizon_hours="
            f"{self.horizon_ms / HOUR_MS:g}); ask with since >= {first}, or read the "
            "transcripts (contextd usage does when the daemon refuses)",
        )

    def report(self, kind: str, options: UsageOptions) -> JsonDict:
        """``live``, ``daily``, ``session`` or ``blocks`` (see :mod:`contextd.usage.report`).

        Raises :class:`NotKeptError` (``since``) when the period asked for starts before the
        kept entries (only with a horizon)."""
        self._check_covered(kind, options)
        if kind == "daily":
            return daily_report(self.reader.entries(DedupMode.DAILY), self.table, options)
        if kind == "session":
            return session_report(self.reader.entries(), self.table, options)
        if kind == "blocks":
            return blocks_report(self.reader.entries(), self.table, options, self.now_ms())
        return live_view(self.reader.entries(), self.table, options, self.now_ms())

    def metrics(self, live_sessions: Collection[str], options: UsageOptions) -> UsageMetrics:
        return usage_metrics(
            self.reader.entries(),
            self.table,
            live_sessions,
            options,
            self.now_ms(),
            earlier=self._retired,
        )
