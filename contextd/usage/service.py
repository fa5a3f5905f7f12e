"""Usage reports from the transcripts: the price table's files, a reader, and the reports.

:class:`UsageService` is what the daemon (``GET /api/usage``, metrics) and ``contextd usage``
without a daemon share: one :class:`~contextd.usage.reader.UsageReader`, one price table and
the pure report functions, with the clock injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from importlib import resources
from pathlib import Path

from contextd.errors import ConfigError
from contextd.usage.entries import DedupMode
from contextd.usage.gauges import UsageMetrics, usage_metrics
from contextd.usage.pricing import PriceTable
from contextd.usage.reader import UsageReader
from contextd.usage.report import (
    JsonDict,
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
    """Reads the transcripts under ``roots`` on :meth:`refresh`; answers reports."""

    def __init__(
        self,
        roots: Sequence[Path],
        table: PriceTable | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = UsageReader(roots)
        self.table = table if table is not None else bundled_prices()
        self.clock = clock

    def refresh(self) -> int:
        return self.reader.refresh()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def report(self, kind: str, options: UsageOptions) -> JsonDict:
        """``live``, ``daily``, ``session`` or ``blocks`` (see :mod:`contextd.usage.report`)."""
        if kind == "daily":
            return daily_report(self.reader.entries(DedupMode.DAILY), self.table, options)
        if kind == "session":
            return session_report(self.reader.entries(), self.table, options)
        if kind == "blocks":
            return blocks_report(self.reader.entries(), self.table, options, self.now_ms())
        return live_view(self.reader.entries(), self.table, options, self.now_ms())

    def metrics(self, live_sessions: Collection[str], options: UsageOptions) -> UsageMetrics:
        return usage_metrics(
            self.reader.entries(), self.table, live_sessions, options, self.now_ms()
        )
