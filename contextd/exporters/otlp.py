"""OTLP push of the engine's snapshot: the metric contract over OTLP/HTTP (protobuf).

:class:`OtlpExporter` owns a ``MeterProvider`` of its own (the global one is never read or
set) with one observable instrument per contract metric. Each collection calls the
instruments' callbacks, which read the current snapshot and counters and report them
through :mod:`contextd.exporters.selection`, exactly as the Prometheus collector does: only
live sessions, the same series cap and overflow series, the same values. A session that
ends or expires is simply not observed any more, and the SDK stops exporting it.

Naming. Instrument names are the names of :mod:`contextd.exporters.names` with the
``_total`` suffix removed from counters (``contextd_session_threshold_70``), which are
cumulative monotonic sums; gauges keep their names (``contextd_active_sessions_total`` is a
gauge and keeps its suffix). A Prometheus-style translation of OTLP (the collector's
``prometheus`` and ``prometheusremotewrite`` exporters, Prometheus' OTLP receiver,
VictoriaMetrics with ``-opentelemetry.usePrometheusNaming``) appends ``_total`` to monotonic
sums again, so the PromQL of the contract works unchanged on either path.

Units are written in UCUM, as OTel expects: ``s``, ``%``, and annotations for counted things
(``{token}``, ``{USD}``). Translators map ``s``/``%`` to the ``seconds``/``percent`` suffixes
the names already carry and drop annotations, so no unit suffix is appended twice.

``names.COST`` and the block gauges (``names.USAGE``) come from the ``usage`` snapshot
(:class:`~contextd.usage.gauges.UsageMetrics`); without one nothing is observed for the
costs and ``contextd_block_active`` is 0.

Transport: ``opentelemetry-exporter-otlp-proto-http``, which honours the standard
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, compression, certificates) unless an
argument overrides them. ``endpoint`` is the full signal URL (``http://host:4318/v1/metrics``).

Failure policy (an exporter never takes the daemon down):

* Exports run on the SDK reader's own thread; nothing the daemon does waits for them.
* A failed export is logged by the SDK and dropped (cumulative values: the next export
  carries the totals again); nothing is queued, so an outage does not grow memory. Failures
  are counted in :attr:`OtlpExporter.stats`.
* One export, retries included, is bounded by ``timeout``; :meth:`OtlpExporter.shutdown`
  makes one last bounded export and returns within its ``timeout`` even when the collector
  is down or hangs (a still-running request is abandoned to its daemon thread).
* The SDK keeps aggregation state for every attribute set an asynchronous instrument ever
  reported, and folds attribute sets beyond its cardinality limit into
  ``otel.metric.overflow``: with session churn that would grow memory without bound and
  eventually hide every new session. So the built-in pipeline is rebuilt (a new
  ``MeterProvider``, reader and exporter; the old one makes its last export and shuts down)
  once it has seen ``2 * (max_series + 1)`` distinct session label sets. Values are totals
  read from the snapshot, so nothing is lost; only the streams' start times move. An
  injected ``reader`` (tests) cannot be rebuilt and is left as it is.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    MeterProvider,
    MetricsTimeoutError,
    ObservableCounter,
    ObservableGauge,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from contextd import __version__
from contextd.errors import ConfigError
from contextd.exporters import names
from contextd.exporters.selection import (
    COUNTER_METRICS,
    REPORTED,
    USAGE_METRICS,
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

_log = logging.getLogger(__name__)

SCOPE = "contextd"
"""Instrumentation scope name of every contextd instrument."""

_UCUM: Mapping[str, str] = {
    "": "",
    "seconds": "s",
    "percent": "%",
    "tokens": "{token}",
    "USD": "{USD}",
}
_COUNTER_METRICS = frozenset(COUNTER_METRICS)
_HTTP_PROTOBUF = "http/protobuf"


def otel_name(metric: names.Metric) -> str:
    """The instrument name of a contract metric: counters without ``_total``."""
    return metric.family


def otel_unit(metric: names.Metric) -> str:
    """The UCUM unit of a contract metric (``names.py`` units are Prometheus suffixes)."""
    return _UCUM.get(metric.unit, metric.unit)


@dataclass(frozen=True, slots=True)
class ExportStats:
    """Export attempts and failures since the exporter was created (all pipelines)."""

    attempts: int = 0
    failures: int = 0


class _Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats = ExportStats()

    def record(self, *, failed: bool) -> None:
        with self._lock:
            self.stats = ExportStats(self.stats.attempts + 1, self.stats.failures + int(failed))


class _CountingExporter(MetricExporter):
    """Delegates to the OTLP exporter and counts the outcomes."""

    def __init__(self, inner: MetricExporter, tally: _Tally) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._tally = tally
        self.after_export: Callable[[], None] | None = None

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        self._tally.record(failed=result is not MetricExportResult.SUCCESS)
        if self.after_export is not None:
            self.after_export()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


Observer = Callable[[CallbackOptions], Iterable[Observation]]


class _Pipeline:
    """One MeterProvider with its reader and the contract's instruments."""

    def __init__(self, owner: OtlpExporter, reader: MetricReader, *, rebuildable: bool) -> None:
        self._owner = owner
        self._rebuildable = rebuildable
        self._seen: set[Labels] = set()
        self._rebuild_requested = False
        self._rebuild_started = False
        self._cache: tuple[object, object, Samples] | None = None
        self.reader = reader
        self.provider = MeterProvider(
            metric_readers=[reader], resource=owner.resource, shutdown_on_exit=False
        )
        meter = self.provider.get_meter(SCOPE, __version__)
        for metric in REPORTED:
            observe = [self._observer(metric)]
            if metric.kind is names.Kind.COUNTER:
                meter.create_observable_counter(
                    otel_name(metric), observe, unit=otel_unit(metric), description=metric.help
                )
            else:
                meter.create_observable_gauge(
                    otel_name(metric), observe, unit=otel_unit(metric), description=metric.help
                )

    def _observer(self, metric: names.Metric) -> Observer:
        keys = metric.labels
        from_counters = metric in _COUNTER_METRICS
        from_usage = metric in USAGE_METRICS

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if from_counters:
                samples = counter_samples(self._owner.counters())
            elif from_usage:
                samples = usage_samples(self._owner.usage())
            else:
                samples = self._session_samples()
            return [
                Observation(value, dict(zip(keys, labels, strict=True)))
                for labels, value in samples[metric]
            ]

        return observe

    def _session_samples(self) -> Samples:
        # Every session instrument's callback runs once per collection. The engine publishes
        # an immutable tuple of frozen snapshots and a new one on each change, so for a tuple
        # the selection is computed once; any other sequence may change in place.
        snapshot, usage = self._owner.sessions(), self._owner.usage()
        cache = self._cache
        if cache is not None and cache[0] is snapshot and cache[1] is usage:
            return cache[2]
        selection = select(snapshot, self._owner.max_series)
        samples = session_samples(selection, usage.session_costs)
        if isinstance(snapshot, tuple):
            self._cache = (snapshot, usage, samples)
        if self._rebuildable and not self._rebuild_requested:
            self._seen.update(series.labels for series in selection.series)
            self._rebuild_requested = len(self._seen) > self._owner.rebuild_after
        return samples

    def exported(self) -> None:
        """After each export: start the rebuild a collection asked for.

        Not from the collection itself: the old pipeline's shutdown would then race the
        export of that very collection.
        """
        if self._rebuild_requested and not self._rebuild_started:
            self._rebuild_started = True
            self._owner._rebuild_soon(self)

    def force_flush(self, timeout: float) -> bool:
        try:
            return self.reader.force_flush(timeout_millis=timeout * 1000)
        except MetricsTimeoutError:
            _log.warning("OTLP metrics collection timed out after %.1f s", timeout)
            return False

    def shutdown(self, timeout: float) -> None:
        try:
            # At least a millisecond: with none left the SDK skips the reader entirely and its
            # thread and HTTP session would outlive the pipeline.
            self.provider.shutdown(timeout_millis=max(timeout, 0.001) * 1000)
        except Exception:  # noqa: BLE001 - the SDK wraps reader failures in a bare Exception
            _log.warning("OTLP metrics pipeline did not shut down cleanly", exc_info=True)


def _resource(attributes: Mapping[str, str] | None) -> Resource:
    """SDK defaults, then ``OTEL_RESOURCE_ATTRIBUTES``/``OTEL_SERVICE_NAME``, then ours;
    ``service.name`` is ``contextd`` unless one of those names the service."""
    resource = Resource.create(dict(attributes or {}))
    name = resource.attributes.get(SERVICE_NAME)
    if not isinstance(name, str) or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SCOPE}))
    return resource


class OtlpExporter:
    """Pushes the metric contract to an OTLP/HTTP endpoint every ``interval`` seconds.

    Nothing happens until :meth:`start`; :meth:`shutdown` flushes once and stops. With
    ``reader`` given (an ``InMemoryMetricReader`` in tests) that reader is used instead of
    the periodic OTLP/HTTP one and ``endpoint``, ``interval`` and ``timeout`` do not apply
    to exports. ``interval`` may be ``math.inf``: then exports happen only on
    :meth:`force_flush` and :meth:`shutdown`.
    """

    def __init__(
        self,
        sessions: Callable[[], Sequence[SessionSnapshot]],
        counters: Callable[[], Mapping[str, int]],
        *,
        endpoint: str | None = None,
        interval: float = 10.0,
        timeout: float = 5.0,
        resource: Mapping[str, str] | None = None,
        reader: MetricReader | None = None,
        max_series: int = 500,
        usage: Callable[[], UsageMetrics] = lambda: EMPTY_USAGE,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"OTLP export interval must be > 0 seconds, got {interval!r}")
        if not 0 < timeout < math.inf:
            raise ConfigError(f"OTLP export timeout must be > 0 seconds, got {timeout!r}")
        self.sessions = sessions
        self.counters = counters
        self.usage = usage
        self.max_series = check_max_series(max_series)
        self.rebuild_after = 2 * (max_series + 1)
        """Distinct session label sets one pipeline may see before it is rebuilt."""
        self.resource = _resource(resource)
        self._endpoint = endpoint
        self._interval = interval
        self._timeout = timeout
        self._reader = reader
        self._tally = _Tally()
        self._lock = threading.Lock()
        self._pipeline: _Pipeline | None = None
        self._rebuilds: list[threading.Thread] = []
        self._closed = False
        self._generations = 0

    @property
    def stats(self) -> ExportStats:
        """Export attempts and failures so far (the built-in OTLP pipeline only)."""
        return self._tally.stats

    @property
    def generations(self) -> int:
        """How many pipelines have been built (1 after start, +1 per rebuild)."""
        return self._generations

    def _build(self) -> _Pipeline:
        if self._reader is not None:
            return _Pipeline(self, self._reader, rebuildable=False)
        otlp = OTLPMetricExporter(endpoint=self._endpoint, timeout=self._timeout)
        # Room for a full pipeline's label sets per instrument (tokens: one per type), plus
        # what the pipeline may still see between asking to be rebuilt and its last export.
        per_instrument = len(names.TOKEN_TYPES) * (self.rebuild_after + 2 * (self.max_series + 1))
        counting = _CountingExporter(otlp, self._tally)
        reader = PeriodicExportingMetricReader(
            counting,
            export_interval_millis=self._interval * 1000,
            export_timeout_millis=self._timeout * 1000,
            cardinality_limits={
                ObservableGauge: per_instrument + 1,
                ObservableCounter: per_instrument + 1,
            },
        )
        pipeline = _Pipeline(self, reader, rebuildable=True)
        counting.after_export = pipeline.exported
        return pipeline

    def start(self) -> None:
        """Build the pipeline and start periodic export (idempotent)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this OtlpExporter has been shut down")
            if self._pipeline is None:
                self._pipeline = self._build()
                self._generations += 1

    def force_flush(self, timeout: float | None = None) -> bool:
        """Collect and export now; False when not started or the collection timed out.

        Export failures are not errors here (they are logged and counted in :attr:`stats`).
        Bounded by ``timeout`` (default: the export timeout) plus any export in progress.
        """
        pipeline = self._pipeline
        if pipeline is None:
            return False
        return pipeline.force_flush(self._timeout if timeout is None else timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Export once more and stop; returns within ``timeout`` (default: export timeout)."""
        budget = self._timeout if timeout is None else max(timeout, 0.0)
        deadline = time.monotonic() + budget
        with self._lock:
            self._closed = True
            pipeline, self._pipeline = self._pipeline, None
            rebuilds, self._rebuilds = self._rebuilds, []
        if pipeline is not None:
            pipeline.shutdown(deadline - time.monotonic())
        for thread in rebuilds:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _rebuild_soon(self, old: _Pipeline) -> None:
        # Called after an export of the old pipeline, on its reader's thread (which the old
        # pipeline's shutdown joins) or a caller's: so the rebuild runs on a thread of its own.
        thread = threading.Thread(
            target=self._rebuild, args=(old,), name="contextd-otlp-rebuild", daemon=True
        )
        with self._lock:  # started under the lock: shutdown() never sees it unstarted
            if self._closed:
                return
            self._rebuilds = [t for t in self._rebuilds if t.is_alive()]
            self._rebuilds.append(thread)
            thread.start()

    def _rebuild(self, old: _Pipeline) -> None:
        with self._lock:
            if self._closed or self._pipeline is not old:
                return
            self._pipeline = self._build()
            self._generations += 1
        _log.debug("OTLP metrics pipeline rebuilt after %d session label sets", self.rebuild_after)
        old.shutdown(self._timeout)


def _configured(env: Mapping[str, str], *keys: str) -> str:
    for key in keys:
        value = env.get(key, "").strip()
        if value:
            return value
    return ""


def from_env(
    sessions: Callable[[], Sequence[SessionSnapshot]],
    counters: Callable[[], Mapping[str, int]],
    *,
    max_series: int = 500,
    timeout: float = 5.0,
    resource: Mapping[str, str] | None = None,
    usage: Callable[[], UsageMetrics] = lambda: EMPTY_USAGE,
) -> OtlpExporter | None:
    """An exporter configured by the standard OTel environment, or None when OTLP is off.

    OTLP is on when ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
    is set, unless ``OTEL_SDK_DISABLED=true`` or ``OTEL_METRICS_EXPORTER=none``. The interval
    comes from ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds) when set, else 10 s. The
    exporter is returned unstarted.
    """
    env = os.environ
    if not _configured(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if "none" in env.get("OTEL_METRICS_EXPORTER", "").lower().replace(" ", "").split(","):
        return None
    protocol = _configured(
        env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol != _HTTP_PROTOBUF:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: contextd exports metrics over "
            f"{_HTTP_PROTOBUF} only"
        )
    interval = 10.0
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if raw:
        try:
            interval = float(raw) / 1000
        except ValueError:
            raise ConfigError(f"OTEL_METRIC_EXPORT_INTERVAL={raw!r} is not a number") from None
    return OtlpExporter(
        sessions,
        counters,
        interval=interval,
        timeout=timeout,
        resource=resource,
        max_series=max_series,
        usage=usage,
    )
