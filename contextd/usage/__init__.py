"""Usage accounting across all sessions: tokens, cost, 5-hour blocks, burn rate, projections.

Pure modules (no I/O; the import-linter core contract holds them to it):

* :mod:`~contextd.usage.entries`: transcript line bytes → :class:`UsageEntry`, and the
  de-duplication rules (ccusage 20.0.24 compatible);
* :mod:`~contextd.usage.pricing`: per-model prices, exact (Decimal) costs, cost modes;
* :mod:`~contextd.usage.blocks`: 5-hour blocks, gaps, burn rate, projections, limits;
* :mod:`~contextd.usage.report`: session and daily reports, the live view (per project and per
  session breakdown, warnings) as JSON-ready dicts.

Adapters: :mod:`~contextd.usage.reader` reads transcripts incrementally into entries,
:mod:`~contextd.usage.service` serves views to the daemon (which keeps only the entries of its
usage horizon, so its memory is bounded by recent activity) and the CLI (the whole history), and
:mod:`~contextd.usage.live` draws the live view with Rich.
"""
