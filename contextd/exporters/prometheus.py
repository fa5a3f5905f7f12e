"""Prometheus exposition of the engine's snapshot, rendered on every scrape.

:class:`SessionCollector` is a custom prometheus_client collector: each ``collect()`` reads
the current snapshot and the store's counters and builds fresh metric families from them,
so a session that ends or expires disappears from the next scrape by itself and no
per-session label children are ever cached. Register it on a registry the daemon owns
(never the global ``REGISTRY``)::

    registry = CollectorRegistry()
    registry.register(SessionCollector(manager.snapshot, store.counters, max_series=500))
    body = render(registry)  # serve with prometheus_client.CONTENT_TYPE_LATEST

Names, types, help texts and label names come from :mod:`contextd.exporters.names`; which
sessions and values are exported is decided in :mod:`contextd.exporters.selection`, shared
with the OTLP exporter. ``names.COST`` has samples for the live sessions whose cost the
``usage`` snapshot knows; the block gauges (``names.USAGE``) come from the same snapshot.

Units: prometheus_client appends ``_<unit>`` to a family name that does not already end with
it, so a unit is declared only where the name already carries it (``…_tokens``,
``…_percent``, ``…_seconds``); the exposed names are exactly those of ``names.py``. The
unit only shows in the OpenMetrics format (``# UNIT``), where it must be a name suffix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from contextd.exporters import names
from contextd.exporters.selection import (
    REPORTED,
    Labels,
    Samples,
    check_max_series,
    counter_samples,
    select,
    session_samples,
    usage_samples,
)
from contextd.models import SessionSnapshot
from contextd.usage.gauges import EMPTY_USAGE, UsageMetrics


def _unit(metric: names.Metric) -> str:
    """The unit to declare: only one the exposed family name already ends with."""
    if metric.unit and metric.family.endswith("_" + metric.unit):
        return metric.unit
    return ""


def _family(metric: names.Metric) -> Metric:
    """An empty prometheus_client family for a gauge or counter of the contract."""
    if metric.kind is names.Kind.GAUGE:
        return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels, unit=_unit(metric))
    if metric.kind is names.Kind.COUNTER:
        return CounterMetricFamily(
            metric.family, metric.help, labels=metric.labels, unit=_unit(metric)
        )
    raise ValueError(f"{metric.name} is a {metric.kind}; only gauges and counters are rendered")


def _families(samples: Samples) -> list[Metric]:
    # Samples are appended directly (what ``add_metric`` does) so that one labels dict per
    # series is shared by all of its families: a scrape of 1,000 sessions builds ~13k samples.
    out = []
    dicts: dict[tuple[str, ...], dict[Labels, dict[str, str]]] = {}
    for metric in REPORTED:
        fam = _family(metric)
        name = fam.name + "_total" if metric.kind is names.Kind.COUNTER else fam.name
        keys = metric.labels
        cache = dicts.setdefault(keys, {})
        append = fam.samples.append
        for labels, value in samples.get(metric, ()):
            label_dict = cache.get(labels)
            if label_dict is None:
                label_dict = cache[labels] = dict(zip(keys, labels, strict=True))
            append(Sample(name, label_dict, value))
        out.append(fam)
    return out


class SessionCollector(Collector):
    """Renders live sessions and ingest counters as metric families on each scrape.

    ``sessions`` returns the engine's current snapshot (all sessions; only live ones are
    exported), ``counters`` the store's counters (``Store.counters``), ``usage`` the usage
    snapshot (session costs, block gauges). Each is called once per scrape, from the scraping
    thread.
    """

    def __init__(
        self,
        sessions: Callable[[], Sequence[SessionSnapshot]],
        counters: Callable[[], Mapping[str, int]],
        *,
        max_series: int = 500,
        usage: Callable[[], UsageMetrics] = lambda: EMPTY_USAGE,
    ) -> None:
        self._sessions = sessions
        self._counters = counters
        self._usage = usage
        self._max_series = check_max_series(max_series)

    def describe(self) -> Iterable[Metric]:
        """The families this collector exposes, without samples (no source is read)."""
        return _families({})

    def collect(self) -> Iterable[Metric]:
        usage = self._usage()
        samples = session_samples(select(self._sessions(), self._max_series),
                                  usage.session_costs)  # fmt: skip
        samples.update(counter_samples(self._counters()))
        samples.update(usage_samples(usage))
        return _families(samples)


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_go_float: Callable[[float], str] = floatToGoString  # untyped in prometheus_client


class _One(Collector):
    """One family, for handing it to ``generate_latest`` on its own."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _Memo:
    """What one render has already written: label sets by dict identity, key orders, pairs."""

    __slots__ = ("orders", "pairs", "texts")

    def __init__(self) -> None:
        # The memo holds each labels dict it has seen, so their ids stay unique meanwhile.
        self.texts: dict[int, tuple[Mapping[str, str], str | None]] = {}
        self.orders: dict[tuple[str, ...], list[str] | None] = {}
        self.pairs: dict[tuple[str, str], str] = {}

    def label_text(self, labels: Mapping[str, str]) -> str | None:
        """``k="v",…`` as generate_latest writes it, or None for a name it would escape."""
        seen = self.texts.get(id(labels))
        if seen is not None and seen[0] is labels:
            return seen[1]
        keys = tuple(labels)
        if keys not in self.orders:  # generate_latest's order and rule for plain label names
            valid = all(_LABEL_NAME.fullmatch(key) and not key.startswith("__") for key in keys)
            self.orders[keys] = sorted(keys) if valid else None
        order = self.orders[keys]
        text = None
        if order is not None:
            parts = []
            for key in order:
                value = labels[key]
                pair = self.pairs.get((key, value))
                if pair is None:
                    pair = self.pairs[key, value] = f'{key}="{_escape(value)}"'
                parts.append(pair)
            text = ",".join(parts)
        self.texts[id(labels)] = (labels, text)
        return text


def _plain_text(metric: Metric, memo: _Memo) -> str | None:
    """A gauge or counter family in the text format, or None to leave it to prometheus_client.

    The same lines ``generate_latest`` writes, but each labels dict is rendered once: the
    collector shares one dict per session among that session's families.
    """
    if metric.type == "gauge":
        name = metric.name
    elif metric.type == "counter":
        name = metric.name + "_total"
    else:
        return None
    if not _METRIC_NAME.fullmatch(name):
        return None
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n"]
    label_text = memo.label_text
    for sample in metric.samples:
        if sample.name != name or sample.timestamp is not None:
            return None  # ``_created`` samples, timestamps: not this fast path's business
        if not sample.labels:
            lines.append(f"{name} {_go_float(sample.value)}\n")
            continue
        text = label_text(sample.labels)
        if text is None:
            return None
        lines.append(f"{name}{{{text}}} {_go_float(sample.value)}\n")
    return "".join(lines)


def render(registry: Collector) -> bytes:
    """The registry in the Prometheus text format 0.0.4 (``CONTENT_TYPE_LATEST``).

    Byte for byte what ``prometheus_client.generate_latest(registry)`` returns (a test holds
    it to that), but plain gauge and counter families are written here with each labels dict
    rendered once instead of once per sample: that is most of the cost of a scrape of many
    sessions. Every other family (the daemon's histogram) goes through ``generate_latest``.
    """
    out = []
    memo = _Memo()
    for metric in registry.collect():
        text = _plain_text(metric, memo)
        out.append(text if text is not None else generate_latest(_One(metric)).decode())
    return "".join(out).encode()
