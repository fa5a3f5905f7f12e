"""The contract PromQL (``names.CONTRACT_QUERIES``) on real VictoriaMetrics and Prometheus.

Six live sessions (and one ended one, which must not be exported) are rendered by the real
``SessionCollector`` at two instants 60 s apart, T1 and T2. VictoriaMetrics gets the two
scrapes through its import API; Prometheus gets the same two scrapes backfilled by promtool.
Every query runs as an instant query at T2, and its answer is compared with values worked out
here from the sessions, per backend where the backends differ.

Only ``rate()`` differs, and only because the two backends define it differently:

* VictoriaMetrics: the slope from the sample just before the window (none here) or else the
  first sample in the window, to the last one: ``(v2 - v1) / (T2 - T1)``. No extrapolation.
* Prometheus (2.x ``extrapolatedRate``): the increase between the first and last samples in
  ``[T2 - 5m, T2]``, extrapolated towards the window's edges (by the gap to the edge when it is
  under 1.1 sample intervals, else by half an interval; never below a counter's zero), divided
  by the full 300 s window. See :func:`prometheus_rate`.

So the same data gives different rates, and a ratio of two rates can differ too when the two
counters are extrapolated by different amounts (session ``s-30`` below). Two more edges show up
in the ratio query: a session whose counters did not move gives 0/0, which Prometheus answers
as NaN and VictoriaMetrics leaves out; tokens saved that were measured after the checkpoint
they belong to (``s-10``) give x/0 = +Inf on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from contextd.exporters import names
from contextd.exporters.prometheus import SessionCollector, render
from contextd.models import SessionSnapshot, SessionStatus
from tests.promql_servers import (
    ACTIVE,
    AVG_PERCENT,
    CHECKED,
    OVER_70,
    RATE_70,
    SAVED_PER_CHECKPOINT,
    SUM_TOKENS,
    TOPK,
    PromQLServer,
    Sample,
    assert_values,
    by_session,
    openmetrics_from_scrapes,
    running_prometheus,
    running_victoria_metrics,
)

pytestmark = pytest.mark.slow

T1 = 1_767_225_600  # 2026-01-01T00:00:00Z; a fixed past instant: no wall clock in the test
T2 = T1 + 60
INTERVAL = float(T2 - T1)
WINDOW = 300.0  # the [5m] of the contract's rate() queries


@dataclass(frozen=True)
class Plan:
    """One session at T1 and at T2: (value at T1, value at T2) for each changing figure."""

    session_id: str
    window: int
    percent: tuple[int, int]
    threshold_70: tuple[int, int]
    checkpoints: tuple[int, int]
    tokens_saved: tuple[int, int]
    status: SessionStatus = SessionStatus.ACTIVE

    def labels(self) -> dict[str, str]:
        return {
            "session_id": self.session_id,
            "project": f"proj-{self.session_id}",
            "model": "claude-opus-4-6[1m]" if self.window == 1_000_000 else "claude-sonnet-4-5",
            "user": "0123456789abcdef",
            "session_type": "unknown",
        }

    def snapshot(self, at: int) -> SessionSnapshot:
        i = 0 if at == T1 else 1
        labels = self.labels()
        return SessionSnapshot(
            session_id=self.session_id,
            status=self.status,
            started_at=T1 - 3600,
            last_activity=at,
            project=labels["project"],
            model=labels["model"],
            user=labels["user"],
            context_tokens=self.percent[i] * self.window // 100,
            window_tokens=self.window,
            warn_crossings=self.threshold_70[i],
            critical_crossings=1 if self.percent[i] >= 90 else 0,
            checkpoints=self.checkpoints[i],
            tokens_saved=self.tokens_saved[i],
        )


PLANS = (
    # Crossed 70 % a second time after a checkpoint, then went on past 90 %.
    Plan("s-95", 200_000, (88, 95), (1, 2), (3, 4), (300_000, 420_000)),
    # First crossing; its first two checkpoints; counters start at zero (Prometheus does not
    # extrapolate a counter below zero, so these rates extend over 60 s, not 90 s).
    Plan("s-85", 200_000, (60, 85), (0, 1), (0, 2), (0, 150_000)),
    # The 1M-window session; no checkpoint between T1 and T2: saved/checkpoint is 0/0.
    Plan("s-72", 1_000_000, (65, 72), (0, 1), (1, 1), (500_000, 500_000)),
    # A checkpoint brought it from 80 % down to 50 %.
    Plan("s-50", 200_000, (80, 50), (1, 1), (2, 3), (180_000, 240_000)),
    # Checkpoint counter extrapolated by 60 s, tokens saved by 30 s on Prometheus.
    Plan("s-30", 200_000, (30, 30), (0, 0), (1, 2), (90_000, 100_000)),
    # Tokens saved measured (next response) after the checkpoint counted before T1: x/0.
    Plan("s-10", 200_000, (12, 10), (0, 0), (1, 1), (0, 40_000)),
    # Ended: not live, so not exported and not counted as active.
    Plan("s-ended", 200_000, (99, 99), (1, 1), (0, 0), (0, 0), SessionStatus.ENDED),
)
LIVE = tuple(plan for plan in PLANS if plan.status.live)


def scrape(at: int) -> bytes:
    """What contextd's /metrics would have served at ``at``."""
    registry = CollectorRegistry()
    snapshots = tuple(plan.snapshot(at) for plan in PLANS)
    registry.register(SessionCollector(lambda: snapshots, lambda: {"transcript_lines": at - T1}))
    return render(registry)


def victoria_metrics_rate(first: float, last: float) -> float:
    """VictoriaMetrics' rate() over two samples T1, T2 inside the window, nothing before it."""
    return (last - first) / INTERVAL


def prometheus_rate(first: float, last: float) -> float:
    """Prometheus 2.x rate() over two counter samples at T1 and T2, queried at T2 over [5m].

    Worked out from Prometheus' documented extrapolation, for this layout only: one sample
    interval of 60 s, the first sample 240 s after the window's start, the last one at its end.
    """
    increase = last - first
    sampled = INTERVAL
    average_interval = sampled / 1  # two samples, one interval
    to_start = WINDOW - INTERVAL
    to_end = 0.0
    if increase > 0 and first >= 0:
        # A counter is not extrapolated to before the time it would have been zero.
        to_start = min(to_start, sampled * first / increase)
    threshold = 1.1 * average_interval
    extended = sampled
    extended += to_start if to_start < threshold else average_interval / 2
    extended += to_end if to_end < threshold else average_interval / 2
    return increase * (extended / sampled) / WINDOW


@dataclass(frozen=True)
class Backend:
    name: str
    server: PromQLServer
    rate: Callable[[float, float], float]
    keeps_nan: bool  # whether a NaN result (0/0) is returned or the series left out

    def query(self, promql: str) -> list[Sample]:
        return self.server.query(promql, time=T2)


@pytest.fixture(scope="module", params=["victoria-metrics", "prometheus"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """Each backend, started once for this module and loaded with the two scrapes."""
    scrapes = [(T1, scrape(T1)), (T2, scrape(T2))]
    if request.param == "victoria-metrics":
        with running_victoria_metrics(tmp_path_factory.mktemp("contract-vm")) as vm:
            for at, text in scrapes:
                vm.push(text, timestamp_ms=at * 1000)
            yield Backend("victoria-metrics", vm, victoria_metrics_rate, keeps_nan=False)
    else:
        openmetrics = openmetrics_from_scrapes(scrapes)
        with running_prometheus(
            tmp_path_factory.mktemp("contract-prom"), openmetrics_text=openmetrics
        ) as prom:
            yield Backend("prometheus", prom, prometheus_rate, keeps_nan=True)


def named(name: str, plan: Plan) -> dict[str, str]:
    return {"__name__": name, **plan.labels()}


def test_every_contract_query_is_checked_here() -> None:
    assert sorted(CHECKED) == sorted(names.CONTRACT_QUERIES)


def test_topk_returns_the_five_fullest_sessions_fullest_first(backend: Backend) -> None:
    result = backend.query(TOPK)

    top = sorted(LIVE, key=lambda plan: -plan.percent[1])[:5]
    assert [labels for labels, _ in result] == [named(names.CONTEXT_PERCENT.name, p) for p in top]
    assert_values([value for _, value in result], [95, 85, 72, 50, 30])


def test_usage_over_70_selects_only_sessions_above_it_now(backend: Backend) -> None:
    result = by_session(backend.query(OVER_70))

    # s-50 was at 80 % at T1: only the latest sample counts.
    assert sorted(result) == ["s-72", "s-85", "s-95"]
    for plan in LIVE:
        if plan.session_id in result:
            labels, value = result[plan.session_id]
            assert labels == named(names.CONTEXT_PERCENT.name, plan)
            assert_values([value], [plan.percent[1]])


def test_sum_of_context_tokens_adds_live_sessions_only(backend: Backend) -> None:
    result = backend.query(SUM_TOKENS)

    expected = 190_000 + 170_000 + 720_000 + 100_000 + 60_000 + 20_000
    assert [labels for labels, _ in result] == [{}]
    assert_values([value for _, value in result], [expected])


def test_average_usage_is_over_live_sessions(backend: Backend) -> None:
    result = backend.query(AVG_PERCENT)

    assert [labels for labels, _ in result] == [{}]
    assert_values([value for _, value in result], [(95 + 85 + 72 + 50 + 30 + 10) / 6])


def test_threshold_70_rate_follows_each_backends_rate_definition(backend: Backend) -> None:
    result = by_session(backend.query(RATE_70))

    assert sorted(result) == sorted(plan.session_id for plan in LIVE)
    for plan in LIVE:
        labels, value = result[plan.session_id]
        assert labels == plan.labels()  # rate() drops the metric name
        assert_values([value], [backend.rate(*plan.threshold_70)])
    if backend.name == "victoria-metrics":
        assert_values([result["s-95"][1], result["s-85"][1]], [1 / 60, 1 / 60])
    else:
        # s-95 (1 -> 2) extends back 60 s to its zero; s-85 (0 -> 1) not at all.
        assert_values([result["s-95"][1], result["s-85"][1]], [2 / 300, 1 / 300])


def test_tokens_saved_per_checkpoint_ratio_of_rates(backend: Backend) -> None:
    result = by_session(backend.query(SAVED_PER_CHECKPOINT))

    expected: dict[str, float] = {}
    for plan in LIVE:
        saved, checkpoints = backend.rate(*plan.tokens_saved), backend.rate(*plan.checkpoints)
        if checkpoints == 0 and saved == 0:
            if backend.keeps_nan:
                expected[plan.session_id] = math.nan
            continue
        expected[plan.session_id] = saved / checkpoints if checkpoints else math.inf
    assert sorted(result) == sorted(expected)
    for session_id, value in expected.items():
        labels, actual = result[session_id]
        assert labels == next(p for p in LIVE if p.session_id == session_id).labels()
        assert_values([actual], [value])
    # The true tokens saved per checkpoint: equal to the ratio of the deltas on both backends
    # when both counters extrapolate alike ...
    assert_values([result[s][1] for s in ("s-95", "s-85", "s-50")], [120_000.0, 75_000.0, 60_000.0])
    assert result["s-10"][1] == math.inf
    # ... but not on Prometheus when they extrapolate differently (10000 * 1.5 / (1 * 2)).
    s_30 = 10_000.0 if backend.name == "victoria-metrics" else 7_500.0
    assert_values([result["s-30"][1]], [s_30])
    assert ("s-72" in result) is backend.keeps_nan


def test_active_sessions_counts_live_sessions(backend: Backend) -> None:
    result = backend.query(ACTIVE)

    assert [labels for labels, _ in result] == [{"__name__": names.ACTIVE_SESSIONS.name}]
    assert_values([value for _, value in result], [len(LIVE)])
