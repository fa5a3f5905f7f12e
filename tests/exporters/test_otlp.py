"""The OTLP exporter: the same contract as /metrics, pushed over OTLP/HTTP without ever
blocking the daemon, in memory and into a real loopback receiver."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as OtelMetric
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from contextd.errors import ConfigError
from contextd.exporters import names
from contextd.exporters.otlp import ExportStats, OtlpExporter, from_env, otel_name, otel_unit
from contextd.exporters.prometheus import SessionCollector, render
from contextd.models import ZERO_TOKENS, SessionSnapshot, SessionStatus, TokenCounts
from tests.otlp_receiver import Attrs, Points, Receiver, decoded, serve

NOW = 1_700_000_000.0
A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
WAIT = 10.0  # bound of every wait on another thread

# Without a usage snapshot: no costs, and of the block gauges only contextd_block_active (0).
# tests/usage/test_metrics.py covers them with one.
WITHOUT_POINTS = (names.HTTP_DURATION, names.COST,
                  *(m for m in names.USAGE if m is not names.BLOCK_ACTIVE))  # fmt: skip


def snap(
    session_id: str,
    *,
    status: SessionStatus = SessionStatus.ACTIVE,
    context: int = 0,
    window: int = 200_000,
    project: str | None = "spotter",
    model: str | None = "claude-opus-4-6",
    user: str | None = "0123456789abcdef",
    warn: int = 0,
    checkpoints: int = 0,
    saved: int = 0,
    tokens: TokenCounts = ZERO_TOKENS,
) -> SessionSnapshot:
    return SessionSnapshot(
        session_id=session_id,
        status=status,
        started_at=NOW - 120,
        last_activity=NOW,
        project=project,
        model=model,
        user=user,
        context_tokens=context,
        window_tokens=window,
        warn_crossings=warn,
        checkpoints=checkpoints,
        tokens_saved=saved,
        tokens=tokens,
    )


def attrs(session_id: str, **extra: str) -> Attrs:
    base = {"session_id": session_id, "project": "spotter", "model": "claude-opus-4-6",
            "user": "0123456789abcdef", "session_type": "unknown"}  # fmt: skip
    return frozenset({**base, **extra}.items())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        pause.wait(0.005)


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OTLP exporter reads OTEL_* itself: no setting from outside may leak in."""
    for key in list(os.environ):
        if key.startswith("OTEL_") or key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)


@dataclass
class InMemory:
    exporter: OtlpExporter
    reader: InMemoryMetricReader
    sessions: list[SessionSnapshot]
    counters: dict[str, int]

    def points(self) -> tuple[Points, dict[str, OtelMetric]]:
        """Data points by (name, attributes), and each exported metric by name."""
        data = self.reader.get_metrics_data()
        assert data is not None
        points: Points = {}
        exported: dict[str, OtelMetric] = {}
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    exported[metric.name] = metric
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        key = frozenset((k, str(v)) for k, v in (point.attributes or {}).items())
                        points[(metric.name, key)] = point.value
        return points, exported


@pytest.fixture
def in_memory() -> Iterator[InMemory]:
    sessions: list[SessionSnapshot] = []
    counters: dict[str, int] = {}
    reader = InMemoryMetricReader()
    exporter = OtlpExporter(lambda: sessions, lambda: counters, reader=reader, max_series=2)
    exporter.start()
    yield InMemory(exporter, reader, sessions, counters)
    exporter.shutdown(1.0)


# --- a loopback OTLP/HTTP receiver ---------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve(200)


@pytest.fixture
def unavailable() -> Iterator[Receiver]:
    yield from serve(503)


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/metrics"


# --- in memory ------------------------------------------------------------------------------


def test_in_memory_reader_sees_every_contract_metric_with_values_and_attributes(
    in_memory: InMemory,
) -> None:
    in_memory.sessions.append(
        snap(
            A,
            context=150_000,
            window=200_000,
            warn=1,
            checkpoints=2,
            saved=30_000,
            tokens=TokenCounts(1, 2, 3, 4),
        )
    )
    in_memory.counters.update(
        {"transcript_lines": 9, "transcript_rejected_invalid_json": 2, "hook_events_Stop": 1}
    )
    points, _ = in_memory.points()
    a = attrs(A)

    assert points[(otel_name(names.CONTEXT_TOKENS), a)] == 150_000
    assert points[(otel_name(names.CONTEXT_PERCENT), a)] == 75.0
    assert points[(otel_name(names.CONTEXT_WINDOW), a)] == 200_000
    assert points[(otel_name(names.THRESHOLD_70), a)] == 1
    assert points[(otel_name(names.THRESHOLD_90), a)] == 0
    assert points[(otel_name(names.CHECKPOINTS), a)] == 2
    assert points[(otel_name(names.TOKENS_SAVED), a)] == 30_000
    assert points[(otel_name(names.DURATION), a)] == 120.0
    for kind, count in zip(names.TOKEN_TYPES, (1, 2, 4, 3), strict=True):
        assert points[(otel_name(names.TOKENS), attrs(A, type=kind))] == count
    assert points[(otel_name(names.ACTIVE_SESSIONS), frozenset())] == 1
    assert points[(otel_name(names.SESSION_SERIES_DROPPED), frozenset())] == 0
    assert points[(otel_name(names.TRANSCRIPT_LINES), frozenset())] == 9
    assert (
        points[(otel_name(names.TRANSCRIPT_REJECTED), frozenset({("reason", "invalid_json")}))] == 2
    )
    assert points[(otel_name(names.HOOK_EVENTS), frozenset({("event", "Stop")}))] == 1
    assert not any(name == otel_name(names.COST) for name, _ in points)


def test_counters_are_cumulative_monotonic_sums_named_without_total(in_memory: InMemory) -> None:
    in_memory.sessions.append(snap(A, context=1))
    in_memory.counters.update({"transcript_rejected_oversize": 1, "hook_events_Stop": 1})
    _, metrics = in_memory.points()

    for metric in names.ALL:
        if metric in WITHOUT_POINTS:
            continue
        exported = metrics[otel_name(metric)]
        assert exported.unit == otel_unit(metric)
        assert exported.description == metric.help
        data = exported.data
        if metric.kind is names.Kind.COUNTER:
            assert otel_name(metric) == metric.name.removesuffix("_total")
            assert isinstance(data, Sum)
            assert data.is_monotonic
            assert data.aggregation_temporality is AggregationTemporality.CUMULATIVE
        else:
            assert otel_name(metric) == metric.name
            assert isinstance(data, Gauge)


def test_units_are_ucum_and_never_repeat_a_name_suffix() -> None:
    assert otel_unit(names.DURATION) == "s"
    assert otel_unit(names.CONTEXT_PERCENT) == "%"
    assert otel_unit(names.CONTEXT_TOKENS) == "{token}"
    assert otel_unit(names.TOKENS_SAVED) == "{token}"
    assert otel_unit(names.THRESHOLD_70) == ""
    assert otel_unit(names.COST) == "{USD}"


def test_only_live_sessions_are_observed_and_an_expired_one_stops(in_memory: InMemory) -> None:
    in_memory.sessions.extend([snap(A, context=1), snap(B, context=2)])
    first, _ = in_memory.points()
    assert (otel_name(names.CONTEXT_TOKENS), attrs(B)) in first

    in_memory.sessions[1] = snap(B, context=2, status=SessionStatus.EXPIRED)
    second, _ = in_memory.points()

    assert (otel_name(names.CONTEXT_TOKENS), attrs(A)) in second
    assert not any(("session_id", B) in key for _, key in second)
    assert second[(otel_name(names.ACTIVE_SESSIONS), frozenset())] == 1


def test_otlp_reports_exactly_what_the_prometheus_collector_renders(in_memory: InMemory) -> None:
    in_memory.sessions.extend(
        [
            snap(A, context=190_000, tokens=TokenCounts(5, 6, 7, 8)),
            snap(B, context=100_000, warn=1, project=None),
            snap("c", context=10_000, checkpoints=1, saved=9, tokens=TokenCounts(1, 1, 1, 1)),
            snap("d", context=20_000, window=1_000_000, model=None),
            snap("e", status=SessionStatus.ENDED, context=1),
        ]
    )
    in_memory.counters.update({"transcript_lines": 4, "transcript_rejected_oversize": 1})
    otlp, _ = in_memory.points()

    registry = CollectorRegistry()
    registry.register(
        SessionCollector(lambda: in_memory.sessions, lambda: in_memory.counters, max_series=2)
    )
    prom: Points = {}
    for family in text_string_to_metric_families(render(registry).decode()):
        for sample in family.samples:
            prom[(family.name, frozenset(sample.labels.items()))] = sample.value

    assert otlp == prom
    assert (names.CONTEXT_TOKENS.name, attrs(names.OVERFLOW_SESSION, project="", model="",
                                             user="", session_type="")) in otlp  # fmt: skip


def test_the_global_meter_provider_is_never_set(in_memory: InMemory) -> None:
    in_memory.sessions.append(snap(A, context=1))
    in_memory.points()

    assert in_memory.exporter.generations == 1
    assert not type(otel_metrics.get_meter_provider()).__module__.startswith("opentelemetry.sdk")


def test_force_flush_before_start_exports_nothing() -> None:
    exporter = OtlpExporter(list, dict, reader=InMemoryMetricReader())

    assert exporter.force_flush() is False
    exporter.shutdown(0.5)
    with pytest.raises(RuntimeError, match="shut down"):
        exporter.start()


@pytest.mark.parametrize(("interval", "timeout"), [(0.0, 1.0), (1.0, 0.0), (1.0, math.inf)])
def test_nonsense_interval_or_timeout_is_a_config_error(interval: float, timeout: float) -> None:
    with pytest.raises(ConfigError):
        OtlpExporter(list, dict, interval=interval, timeout=timeout)


# --- over real OTLP/HTTP ----------------------------------------------------------------------


def test_loopback_receiver_gets_the_contract_over_otlp_http(receiver: Receiver) -> None:
    sessions = [snap(A, context=50_000, tokens=TokenCounts(1, 2, 3, 4))]
    exporter = OtlpExporter(lambda: sessions, lambda: {"transcript_lines": 3},
                            endpoint=receiver.url, interval=math.inf, timeout=5.0,
                            resource={"deployment.environment": "test"})  # fmt: skip
    exporter.start()
    try:
        exporter.force_flush()
        points, resource = decoded(receiver.wait_for_requests(1))
    finally:
        exporter.shutdown(2.0)

    assert receiver.paths[0] == "/v1/metrics"
    assert resource["service.name"] == "contextd"
    assert resource["deployment.environment"] == "test"
    assert {name for name, _ in points} == {
        otel_name(m) for m in names.ALL if m not in WITHOUT_POINTS
    } - {otel_name(names.TRANSCRIPT_REJECTED), otel_name(names.HOOK_EVENTS)}  # no counters yet
    assert points[(otel_name(names.CONTEXT_TOKENS), attrs(A))] == 50_000
    assert points[(otel_name(names.CONTEXT_PERCENT), attrs(A))] == 25.0
    assert points[(otel_name(names.TOKENS), attrs(A, type="cache_read"))] == 4
    assert points[(otel_name(names.TRANSCRIPT_LINES), frozenset())] == 3
    assert exporter.stats.attempts == 1
    assert exporter.stats.failures == 0


def test_a_503_collector_fails_exports_without_raising(unavailable: Receiver) -> None:
    sessions = [snap(A, context=1)]
    exporter = OtlpExporter(lambda: sessions, dict, endpoint=unavailable.url,
                            interval=math.inf, timeout=0.5)  # fmt: skip
    exporter.start()
    try:
        exporter.force_flush()
        exporter.force_flush()
    finally:
        exporter.shutdown(1.0)

    assert len(unavailable.wait_for_requests(2)) >= 2
    assert exporter.stats.failures == 2


def test_a_closed_port_fails_exports_without_raising(closed_port_url: str) -> None:
    exporter = OtlpExporter(lambda: [snap(A)], dict, endpoint=closed_port_url,
                            interval=math.inf, timeout=0.5)  # fmt: skip
    exporter.start()
    try:
        exporter.force_flush()
    finally:
        exporter.shutdown(1.0)

    assert exporter.stats == ExportStats(attempts=1, failures=1)


@pytest.mark.parametrize("collector", ["closed port", "503 server"])
def test_shutdown_with_the_collector_down_returns_within_its_bound(
    collector: str, closed_port_url: str, unavailable: Receiver
) -> None:
    url = closed_port_url if collector == "closed port" else unavailable.url
    # One export may retry for 30 s; shutdown must still return within its own bound.
    exporter = OtlpExporter(lambda: [snap(A, context=1)], dict, endpoint=url,
                            interval=3600.0, timeout=30.0)  # fmt: skip
    exporter.start()
    bound = 1.0

    started = time.monotonic()
    exporter.shutdown(bound)  # makes its one last export, to a collector that is down
    elapsed = time.monotonic() - started

    assert elapsed <= bound + 1.0
    if collector == "503 server":
        unavailable.wait_for_requests(1)
    wait_for(lambda: exporter.stats.failures == 1, "the abandoned export to be counted")


def test_session_churn_rebuilds_the_pipeline_before_the_sdk_overflows(receiver: Receiver) -> None:
    sessions: list[SessionSnapshot] = []
    exporter = OtlpExporter(lambda: sessions, dict, endpoint=receiver.url, interval=math.inf,
                            timeout=5.0, max_series=2)  # fmt: skip
    exporter.start()
    rounds = 20  # 40 sessions: far beyond the SDK cardinality limit set for one pipeline
    try:
        for n in range(rounds):
            sessions[:] = [snap(f"s{n}-a", context=2), snap(f"s{n}-b", context=1)]
            exporter.force_flush()
            receiver.wait_for_requests(n + 1)
            # Each round shows the pipeline 2 new sessions; it is rebuilt once it has seen
            # more than ``rebuild_after``.
            expected = 1 + (n + 1) // (exporter.rebuild_after // 2 + 1)

            def rebuilt(expected: int = expected) -> bool:
                return exporter.generations >= expected

            wait_for(rebuilt, "a pipeline rebuild")
        points, _ = decoded(receiver.wait_for_requests(rounds))
    finally:
        exporter.shutdown(2.0)

    assert exporter.generations > 3
    assert not any(attr == "otel.metric.overflow" for _, key in points for attr, _ in key)
    last = f"s{rounds - 1}-a"
    assert points[(otel_name(names.CONTEXT_TOKENS), attrs(last))] == 2


# --- configuration from the environment ----------------------------------------------------


def test_from_env_is_none_without_an_otlp_endpoint() -> None:
    assert from_env(list, dict) is None


@pytest.mark.parametrize(
    "setting", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_METRICS_EXPORTER": "none"}]
)
def test_from_env_is_none_when_otel_is_switched_off(
    setting: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    for key, val in setting.items():
        monkeypatch.setenv(key, val)

    assert from_env(list, dict) is None


def test_from_env_rejects_otlp_over_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")

    with pytest.raises(ConfigError, match="http/protobuf"):
        from_env(list, dict)


def test_from_env_exports_to_the_standard_base_endpoint(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.removesuffix("/v1/metrics"))
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "contextd-test")
    exporter = from_env(lambda: [snap(A, context=7)], dict)
    assert exporter is not None
    exporter.start()
    try:
        exporter.force_flush()
        points, resource = decoded(receiver.wait_for_requests(1))
    finally:
        exporter.shutdown(2.0)

    assert set(receiver.paths) == {"/v1/metrics"}
    assert resource["service.name"] == "contextd-test"
    assert points[(otel_name(names.CONTEXT_TOKENS), attrs(A))] == 7
