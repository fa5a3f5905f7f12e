"""The contract PromQL on a live ``contextd serve``, scraped by real Prometheus and VictoriaMetrics.

Five sessions are made through the daemon's own API (SessionStart hooks, status lines, a
PostCompact hook), and their state is checked in ``/api/sessions/{id}`` before any PromQL is
asserted. Then one Prometheus and one VictoriaMetrics scrape the daemon's ``/metrics`` every
second. Once both hold a scrape, two sessions change while they are scraped: ``s-85`` crosses
70 % and ``s-50`` is compacted (its tokens saved measured by the next status line), so the
``rate()`` queries have a known increase to see.

Every query is evaluated at one instant ``at`` per backend, whole seconds at least
``SETTLE_LAG`` in the past, so no scrape can still land before it: two queries at ``at`` see
the same samples. The gauges and aggregates are exact. A ``rate()`` is compared with the
value each backend's definition gives for the raw samples it holds at ``at`` (read with a
range selector), to float precision:

* Prometheus 2.x extrapolates the increase between the first and last samples towards the
  window's edges (the gap to an edge when it is under 1.1 sample intervals, else half an
  interval; never to before the counter was zero) and divides by the whole 300 s window.
* VictoriaMetrics does not extrapolate: the increase from the first sample in the window (no
  sample precedes it here) to the last, over the time between those two samples.

The ratio ``rate(saved) / rate(checkpoints)`` is the tokens one compaction saved (80,000) on
both: the two counters of ``s-50`` come from the same scrapes and both start at 0, so both
rates are extrapolated alike. Sessions whose counters did not move give 0/0: NaN on
Prometheus, left out by VictoriaMetrics.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from contextd.exporters import names
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
    running_prometheus,
    running_victoria_metrics,
)
from tests.served import Served

pytestmark = pytest.mark.slow


WINDOW_MS = 300_000  # the [5m] of the contract's rate() queries
FIRST_SCRAPE_TIMEOUT = 30.0  # Prometheus 2.42 takes ~5.5 s to its first scrape
SETTLE_TIMEOUT = 30.0  # for the increase to be scraped and queryable
SETTLE_LAG = 2.0  # s: scrape timeout (1 s) + VictoriaMetrics' hidden last second
POLL = 0.1
JOB = "contextd"

OPUS = "claude-opus-4-6"
OPUS_1M = "claude-opus-4-6[1m]"
COMPACT = "PostCompact"
Step = int | str  # a status line with this many context tokens, or COMPACT (a hook)
MOVING = (names.THRESHOLD_70, names.CHECKPOINTS, names.TOKENS_SAVED)


@dataclass(frozen=True)
class Plan:
    """A session: what is sent before the backends scrape and while they do, and the counters
    ``/api/sessions/{id}`` must show after each of the two stages."""

    session_id: str
    window: int
    model: str
    before: tuple[Step, ...]
    during: tuple[Step, ...]
    warn: tuple[int, int]
    critical: tuple[int, int]
    checkpoints: tuple[int, int] = (0, 0)
    saved: tuple[int, int] = (0, 0)

    @property
    def cwd(self) -> str:
        return f"/home/dev/proj-{self.session_id}"

    def context(self, stage: int) -> int:
        steps = self.before + (self.during if stage else ())
        return [step for step in steps if isinstance(step, int)][-1]

    def percent(self, stage: int = 1) -> float:
        return 100 * self.context(stage) / self.window

    def counter(self, metric: names.Metric, stage: int) -> int:
        by_metric = {
            names.THRESHOLD_70: self.warn,
            names.THRESHOLD_90: self.critical,
            names.CHECKPOINTS: self.checkpoints,
            names.TOKENS_SAVED: self.saved,
        }
        return by_metric[metric][stage]


PLANS = (
    # 75 % then 95 %: the first line crosses 70 %, the second 90 % (70 % is not counted again).
    Plan("s-95", 200_000, OPUS, (150_000, 190_000), (), warn=(1, 1), critical=(1, 1)),
    # Crosses 70 % while the backends scrape.
    Plan("s-85", 200_000, OPUS, (120_000,), (170_000,), warn=(0, 1), critical=(0, 0)),
    # Two status lines above 70 %: one crossing.
    Plan("s-75", 200_000, OPUS, (150_000, 150_000), (), warn=(1, 1), critical=(0, 0)),
    # At 90 %, then compacted while scraped: the next status line measures 180k - 100k saved.
    Plan(
        "s-50",
        200_000,
        OPUS,
        (180_000,),
        (COMPACT, 100_000),
        warn=(1, 1),
        critical=(1, 1),
        checkpoints=(0, 1),
        saved=(0, 80_000),
    ),
    # The 1M window, known from the status line.
    Plan("s-30", 1_000_000, OPUS_1M, (300_000,), (), warn=(0, 0), critical=(0, 0)),
)
SAVED_PER_COMPACTION = 80_000


# -- driving the daemon -----------------------------------------------------------------------


def hook(served: Served, plan: Plan, event: str, **fields: object) -> None:
    body = {"session_id": plan.session_id, "hook_event_name": event, "cwd": plan.cwd, **fields}
    status, answer = served.post("/hooks", body)
    assert status == 200, answer


def status_line(served: Served, plan: Plan, context: int) -> None:
    usage = {"input_tokens": 3, "cache_creation_input_tokens": 1_000,
             "cache_read_input_tokens": context - 1_003, "output_tokens": 50}  # fmt: skip
    window = {"context_window_size": plan.window, "current_usage": usage}
    body = {"session_id": plan.session_id, "cwd": plan.cwd, "model": {"id": plan.model},
            "context_window": window}  # fmt: skip
    status, answer = served.post("/api/statusline", body)
    assert status == 200, answer


def send(served: Served, plan: Plan, steps: Sequence[Step]) -> None:
    for step in steps:
        if isinstance(step, int):
            status_line(served, plan, step)
        else:
            hook(served, plan, step, trigger="auto")


def check_daemon(served: Served, stage: int) -> str:
    """The daemon's own view of every session after ``stage``; returns their user id."""
    users = set()
    for plan in PLANS:
        status, view = served.get(f"/api/sessions/{plan.session_id}")
        assert status == 200, view
        fields = ("status", "project", "model", "context_tokens", "context_window",
                  "context_percent", "threshold_warn_crossings", "threshold_critical_crossings",
                  "checkpoints", "tokens_saved", "checkpoint_pending_pre_tokens")  # fmt: skip
        assert {key: view[key] for key in fields} == {
            "status": "active",
            "project": f"proj-{plan.session_id}",
            "model": plan.model,
            "context_tokens": plan.context(stage),
            "context_window": plan.window,
            "context_percent": plan.percent(stage),
            "threshold_warn_crossings": plan.warn[stage],
            "threshold_critical_crossings": plan.critical[stage],
            "checkpoints": plan.checkpoints[stage],
            "tokens_saved": plan.saved[stage],
            "checkpoint_pending_pre_tokens": None,
        }, plan.session_id
        users.add(str(view["user"]))
    status, listing = served.get("/api/sessions")
    assert (status, listing["active_count"]) == (200, len(PLANS))
    assert len(users) == 1
    return users.pop()


# -- reading the backends -----------------------------------------------------------------------

Points = list[tuple[int, float]]  # (unix milliseconds, value), as the backend stores them


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback URLs built here)
        body: bytes = response.read()
        return body


def raw_counters(server: PromQLServer, at: int) -> dict[tuple[str, str], Points]:
    """The raw samples of the moving counters in ``[at - 5m, at]``, by (metric, session)."""
    selector = "|".join(metric.name for metric in MOVING)
    params = {"query": f'{{__name__=~"{selector}"}}[5m]', "time": str(at)}
    answer = json.loads(_get(f"{server.url}/api/v1/query?{urllib.parse.urlencode(params)}"))
    assert answer["status"] == "success", answer
    assert answer["data"]["resultType"] == "matrix", answer
    out: dict[tuple[str, str], Points] = {}
    for item in answer["data"]["result"]:
        key = (str(item["metric"]["__name__"]), str(item["metric"]["session_id"]))
        assert key not in out, f"two series for {key}"
        out[key] = [(round(float(t) * 1000), float(v)) for t, v in item["values"]]
    return out


def settled(
    server: PromQLServer, flush: Callable[[], None]
) -> tuple[int, dict[tuple[str, str], Points]]:
    """The first whole second, ``SETTLE_LAG`` in the past, by which the backend holds a scrape
    from before the changes and one from after them, for every session; and its raw counters.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        at = int(time.time() - SETTLE_LAG)
        flush()
        counters = raw_counters(server, at)
        if all(
            (points := counters.get((metric.name, plan.session_id)))
            and points[0][1] == plan.counter(metric, 0)
            and points[-1][1] == plan.counter(metric, 1)
            for plan in PLANS
            for metric in MOVING
        ):
            return at, counters
        assert time.monotonic() < deadline, f"{server.name} at {at}: {counters}"
        time.sleep(POLL)


def prometheus_rate(points: Points, at: int) -> float:
    """``rate(counter[5m])`` at ``at`` as Prometheus 2.x's ``extrapolatedRate`` computes it."""
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(points)), "a reset"
    (first_ms, first), (last_ms, last) = points[0], points[-1]
    increase = last - first
    sampled = (last_ms - first_ms) / 1000
    average = sampled / (len(points) - 1)
    to_start = (first_ms - (at * 1000 - WINDOW_MS)) / 1000
    to_end = (at * 1000 - last_ms) / 1000
    if increase > 0 and first >= 0:
        to_start = min(to_start, sampled * (first / increase))  # not before it was zero
    threshold = average * 1.1
    extended = sampled
    extended += to_start if to_start < threshold else average / 2
    extended += to_end if to_end < threshold else average / 2
    return increase * (extended / sampled) / (WINDOW_MS / 1000)


def victoria_metrics_rate(points: Points, at: int) -> float:
    """``rate(counter[5m])`` as VictoriaMetrics computes it when no sample precedes the
    window: first to last sample in it, no extrapolation."""
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(points)), "a reset"
    assert at * 1000 - WINDOW_MS < points[0][0], "a sample before the window would be used"
    (first_ms, first), (last_ms, last) = points[0], points[-1]
    return (last - first) / ((last_ms - first_ms) / 1000)


@dataclass(frozen=True)
class Backend:
    name: str
    server: PromQLServer
    at: int  # unix seconds: every query is evaluated here
    counters: dict[tuple[str, str], Points]  # raw samples of the moving counters at ``at``
    rate_of: Callable[[Points, int], float]
    keeps_nan: bool  # whether a NaN result (0/0) is returned or the series left out

    def query(self, promql: str) -> list[Sample]:
        return self.server.query(promql, time=self.at)

    def rate(self, metric: names.Metric, plan: Plan) -> float:
        return self.rate_of(self.counters[(metric.name, plan.session_id)], self.at)


@dataclass(frozen=True)
class Live:
    served: Served
    user: str
    backends: dict[str, Backend]

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.served.port}"

    def labels(self, plan: Plan) -> dict[str, str]:
        """A session's series labels, with the ones every scrape adds."""
        return {"session_id": plan.session_id, "project": f"proj-{plan.session_id}",
                "model": plan.model, "user": self.user, "session_type": "unknown", "job": JOB,
                "instance": self.instance}  # fmt: skip

    def named(self, metric: names.Metric, plan: Plan) -> dict[str, str]:
        return {"__name__": metric.name, **self.labels(plan)}


def scrape_config(target: str) -> str:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
        ],
    }
    return json.dumps(config)  # JSON is YAML


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("live-scrape")
    served = Served(tmp / "daemon")
    served.start()
    try:
        for plan in PLANS:
            hook(served, plan, "SessionStart", source="startup", model=plan.model)
            send(served, plan, plan.before)
        check_daemon(served, 0)
        target = f"127.0.0.1:{served.port}"
        with (
            running_victoria_metrics(tmp / "vm", scrape_config=scrape_config(target)) as vm,
            running_prometheus(tmp / "prom", target_url=f"http://{target}/metrics") as prom,
        ):
            for server in (prom, vm):  # a scrape of the sessions as they were before
                server.wait_for(ACTIVE, lambda r: [v for _, v in r] == [len(PLANS)],
                                timeout=FIRST_SCRAPE_TIMEOUT)  # fmt: skip
            for plan in PLANS:
                send(served, plan, plan.during)
            user = check_daemon(served, 1)

            def flush_vm() -> None:
                _get(f"{vm.url}/internal/force_flush")

            backends = {}
            for server, name, rate, flush, keeps_nan in (
                (prom, "prometheus", prometheus_rate, lambda: None, True),
                (vm, "victoria-metrics", victoria_metrics_rate, flush_vm, False),
            ):
                at, counters = settled(server, flush)
                backends[name] = Backend(name, server, at, counters, rate, keeps_nan)
            yield Live(served, user, backends)
    finally:
        served.stop()


@pytest.fixture(params=["prometheus", "victoria-metrics"])
def backend(request: pytest.FixtureRequest, live: Live) -> Backend:
    name: str = request.param
    return live.backends[name]


# -- the contract queries -----------------------------------------------------------------------


def test_every_contract_query_is_checked_here() -> None:
    assert sorted(CHECKED) == sorted(names.CONTRACT_QUERIES)


def test_topk_returns_the_five_sessions_fullest_first(backend: Backend, live: Live) -> None:
    result = backend.query(TOPK)

    ranked = sorted(PLANS, key=lambda plan: -plan.percent())
    assert [labels for labels, _ in result] == [
        live.named(names.CONTEXT_PERCENT, p) for p in ranked
    ]
    assert_values([value for _, value in result], [95, 85, 75, 50, 30])


def test_usage_over_70_selects_the_sessions_above_it_now(backend: Backend, live: Live) -> None:
    result = by_session(backend.query(OVER_70))

    # s-50 was at 90 % before its compaction: only the latest sample counts.
    assert sorted(result) == ["s-75", "s-85", "s-95"]
    for plan in PLANS:
        if plan.session_id in result:
            labels, value = result[plan.session_id]
            assert labels == live.named(names.CONTEXT_PERCENT, plan)
            assert_values([value], [plan.percent()])


def test_sum_of_context_tokens_adds_every_session(backend: Backend) -> None:
    result = backend.query(SUM_TOKENS)

    assert [labels for labels, _ in result] == [{}]
    assert_values([value for _, value in result], [190_000 + 170_000 + 150_000 + 100_000 + 300_000])


def test_average_usage_is_over_every_session(backend: Backend) -> None:
    result = backend.query(AVG_PERCENT)

    assert [labels for labels, _ in result] == [{}]
    assert_values([value for _, value in result], [(95 + 85 + 75 + 50 + 30) / 5])


def test_threshold_70_rate_sees_the_crossing_made_while_scraped(
    backend: Backend, live: Live
) -> None:
    result = by_session(backend.query(RATE_70))

    assert sorted(result) == sorted(plan.session_id for plan in PLANS)
    for plan in PLANS:
        labels, value = result[plan.session_id]
        assert labels == live.labels(plan)  # rate() drops the metric name
        assert_values([value], [backend.rate(names.THRESHOLD_70, plan)])
        crossed = plan.warn[1] > plan.warn[0]
        assert (value > 0) is crossed, plan.session_id
    # One crossing over the scraped span: never less than 1 per the whole window.
    assert result["s-85"][1] * WINDOW_MS / 1000 >= 1


def test_tokens_saved_per_checkpoint_is_what_the_compaction_saved(
    backend: Backend, live: Live
) -> None:
    result = by_session(backend.query(SAVED_PER_CHECKPOINT))

    expected: dict[str, float] = {}
    for plan in PLANS:
        saved = backend.rate(names.TOKENS_SAVED, plan)
        checkpoints = backend.rate(names.CHECKPOINTS, plan)
        if saved == checkpoints == 0:
            if backend.keeps_nan:
                expected[plan.session_id] = math.nan
            continue
        expected[plan.session_id] = saved / checkpoints
    assert sorted(result) == sorted(expected)
    for session_id, value in expected.items():
        labels, actual = result[session_id]
        assert labels == live.labels(next(p for p in PLANS if p.session_id == session_id))
        assert_values([actual], [value])
    assert_values([result["s-50"][1]], [SAVED_PER_COMPACTION])
    assert sorted(result) == (
        sorted(p.session_id for p in PLANS) if backend.keeps_nan else ["s-50"]
    )


def test_active_sessions_counts_every_live_session(backend: Backend, live: Live) -> None:
    result = backend.query(ACTIVE)

    expected_labels = {"__name__": names.ACTIVE_SESSIONS.name, "job": JOB,
                       "instance": live.instance}  # fmt: skip
    assert [labels for labels, _ in result] == [expected_labels]
    assert_values([value for _, value in result], [len(PLANS)])
