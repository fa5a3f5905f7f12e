"""Usage figures as metrics (session cost, block gauges) and through the daemon's API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from contextd.cli import main
from contextd.daemon import Daemon
from contextd.exporters import names
from contextd.exporters.otlp import OtlpExporter, otel_name
from contextd.exporters.prometheus import SessionCollector
from contextd.server import build_app
from contextd.usage.gauges import BlockGauges, UsageMetrics, usage_metrics
from contextd.usage.report import UsageOptions
from contextd.usage.service import bundled_prices
from tests.exporters.test_prometheus import snap
from tests.served import Served
from tests.test_server import BASE, make_settings, wait_for
from tests.usage.lines import MIN, T0_MS, assistant, entry, write

A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
USAGE = UsageMetrics(
    {A: 1.25, B: 0.5},
    BlockGauges(tokens=5000, cost_usd=1.75, burn_rate_tokens_per_minute=250.0,
                non_cache_burn_rate_tokens_per_minute=120.0,
                projected_tokens=80_000, projected_cost_usd=20.5, remaining_seconds=3600.0,
                limit_percent=None),
)  # fmt: skip


def test_usage_metrics_price_live_sessions_and_the_active_block() -> None:
    entries = [
        entry(T0_MS, out=1_000_000, session=A),  # $25
        entry(T0_MS + MIN, cr=1_000_000, session=A, project_dir="-other"),  # $0.50, same id
        entry(T0_MS + 2 * MIN, out=40, session=B),
        entry(T0_MS + 3 * MIN, out=40, session="gone"),
    ]
    metrics = usage_metrics(entries, bundled_prices(), [A, "idle-no-entries"],
                            UsageOptions(token_limit=2_000_000), T0_MS + 10 * MIN)  # fmt: skip
    assert dict(metrics.session_costs) == {A: 25.5}
    block = metrics.block
    assert block is not None
    assert block.tokens == 2_000_080
    assert block.cost_usd == pytest.approx(25.5 + 0.002)
    assert block.remaining_seconds == 4 * 3600 + 50 * 60
    # 1,000,080 input+output tokens since the block's first entry, 10 minutes ago.
    assert block.non_cache_burn_rate_tokens_per_minute == 100_008.0
    assert block.limit_percent == pytest.approx(100.004)
    # 10 h later nothing is active.
    later = usage_metrics(entries, bundled_prices(), [], UsageOptions(), T0_MS + 600 * MIN)
    assert later.block is None


def scrape(usage: UsageMetrics, max_series: int = 500) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SessionCollector(lambda: [snap(A), snap(B, project="web")], dict,
                                       max_series=max_series, usage=lambda: usage))  # fmt: skip
    return registry


def labels(sid: str, project: str = "spotter") -> dict[str, str]:
    return {"session_id": sid, "project": project, "model": "claude-opus-4-6",
            "user": "0123456789abcdef", "session_type": names.UNKNOWN_SESSION_TYPE}  # fmt: skip


def test_prometheus_exposes_session_costs_and_block_gauges() -> None:
    registry = scrape(USAGE)
    get = registry.get_sample_value
    assert get(names.COST.name, labels(A)) == 1.25
    assert get(names.COST.name, labels(B, "web")) == 0.5
    assert get(names.BLOCK_ACTIVE.name) == 1
    assert get(names.BLOCK_TOKENS.name) == 5000
    assert get(names.BLOCK_COST.name) == 1.75
    assert get(names.BLOCK_BURN_RATE.name) == 250.0
    assert get(names.BLOCK_NON_CACHE_BURN_RATE.name) == 120.0
    assert get(names.BLOCK_PROJECTED_TOKENS.name) == 80_000
    assert get(names.BLOCK_PROJECTED_COST.name) == 20.5
    assert get(names.BLOCK_REMAINING.name) == 3600.0
    # Over the series cap the overflow series carries the dropped sessions' cost.
    capped = scrape(USAGE, max_series=1)
    other = {"session_id": names.OVERFLOW_SESSION, "project": "", "model": "", "user": "",
             "session_type": ""}  # fmt: skip
    assert capped.get_sample_value(names.COST.name, other) in (1.25, 0.5)
    # Without an active block only contextd_block_active is there, at 0.
    idle = scrape(UsageMetrics(USAGE.session_costs, None))
    assert idle.get_sample_value(names.BLOCK_ACTIVE.name) == 0
    assert idle.get_sample_value(names.BLOCK_TOKENS.name) is None


def test_otlp_exports_the_same_usage_figures() -> None:
    reader = InMemoryMetricReader()
    exporter = OtlpExporter(lambda: [snap(A)], dict, reader=reader, usage=lambda: USAGE)
    exporter.start()
    try:
        data = reader.get_metrics_data()
    finally:
        exporter.shutdown(1.0)
    assert data is not None
    values: dict[str, float] = {}
    for rm in data.resource_metrics:
        for scope in rm.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    values[metric.name] = point.value
    assert values[otel_name(names.COST)] == 1.25
    assert values[otel_name(names.BLOCK_TOKENS)] == 5000
    assert values[otel_name(names.BLOCK_PROJECTED_COST)] == 20.5


# -- the daemon ----------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Daemon, TestClient, Path]]:
    daemon = Daemon(make_settings(tmp_path, usage_horizon_hours=48.0))
    root = tmp_path / "claude"
    with TestClient(build_app(daemon), base_url=BASE) as client:
        wait_for(lambda: daemon.ready)
        yield daemon, client, root


def stamp(seconds_ago: float) -> str:
    from datetime import UTC, datetime  # noqa: PLC0415

    when = datetime.fromtimestamp(time.time() - seconds_ago, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_api_usage_answers_with_lines_appended_since_the_last_call(
    served: tuple[Daemon, TestClient, Path],
) -> None:
    daemon, client, root = served
    path = root / "projects" / "-home-u-web" / f"{A}.jsonl"
    write(path, assistant("m1", "r1", out=1000, inp=0, cc=0, cr=0, ts=stamp(120), session=A,
                          cwd="/home/u/web"))  # fmt: skip
    first = client.get("/api/usage")
    assert first.status_code == 200
    body = first.json()
    assert body["source"] == "daemon"
    assert body["block"]["tokens"]["total"] == 1000
    assert [p["project"] for p in body["projects"]] == ["web"]
    write(path, assistant("m2", "r2", out=500, inp=0, cc=0, cr=0, ts=stamp(60), session=A,
                          cwd="/home/u/web"), append=True)  # fmt: skip
    live = client.get("/api/usage").json()
    assert live["block"]["tokens"]["total"] == 1500
    assert live["coverage"]["horizon_hours"] == 48
    # The whole history is the CLI's to read: asked for more, the daemon names the parameter.
    for query in ({"report": "session"}, {"report": "daily", "since": stamp(3 * 86_400)[:10]},
                  {"since": stamp(3 * 86_400)[:10]}):  # fmt: skip
        refused = client.get("/api/usage", params=query)
        assert refused.status_code == 422, query
        assert refused.json()["field"] == "since"
    recent = {"since": stamp(120)[:10], "timezone": "UTC"}  # the entries' day, inside 48 h
    sessions = client.get("/api/usage", params={"report": "session", **recent}).json()
    assert sessions["coverage"]["from"] >= live["coverage"]["from"]  # it moves with now
    assert [(s["session_id"], s["tokens"]["output"]) for s in sessions["sessions"]] == [(A, 1500)]
    daily = client.get("/api/usage", params={"report": "daily", **recent}).json()
    assert sum(d["tokens"]["output"] for d in daily["daily"]) == 1500
    # Costs and block gauges reach /metrics once the session is live and usage refreshed.
    wait_for(lambda: any(s.session_id == A and s.live for s in daemon.sessions))
    daemon.refresh_usage()
    metrics = client.get("/metrics").text
    assert f'{names.COST.name}{{model="claude-opus-4-6",project="web",session_id="{A}"' in metrics
    assert f"{names.BLOCK_TOKENS.name} 1500.0" in metrics
    assert daemon.usage_metrics.session_costs[A] == float(Decimal(1500) * Decimal("0.000025"))


@pytest.mark.parametrize(
    ("query", "field"),
    [("token_limit=abc", "token_limit"), ("since=2026-13-01", "since"),
     ("report=weekly", "report"), ("colour=red", "colour")],
)  # fmt: skip
def test_api_usage_refuses_bad_parameters_naming_them(
    served: tuple[Daemon, TestClient, Path], query: str, field: str
) -> None:
    _, client, _ = served
    response = client.get(f"/api/usage?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.slow
def test_contextd_usage_reads_a_running_daemon_over_its_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = Served(tmp_path)
    write(daemon.root / "projects" / "-home-u-web" / f"{A}.jsonl",
          assistant("m1", "r1", out=700, inp=0, cc=0, cr=0, ts=stamp(60), session=A,
                    cwd="/home/u/web"))  # fmt: skip
    daemon.start()
    try:
        # The transcripts given to the CLI are empty: figures can only come from the daemon.
        empty = tmp_path / "empty"
        (empty / "projects").mkdir(parents=True)
        code = main(["usage", "--json", "--socket", str(daemon.socket), "--config-dir",
                     str(empty)])  # fmt: skip
        out, _ = capsys.readouterr()
        # The whole history is not the daemon's (422): the CLI reads the transcripts itself.
        daily_code = main(["usage", "daily", "--json", "--socket", str(daemon.socket),
                           "--config-dir", str(empty)])  # fmt: skip
        daily, _ = capsys.readouterr()
    finally:
        assert daemon.stop() == 0
    assert code == 0
    view = orjson.loads(out)
    assert view["source"] == "daemon"
    assert view["block"]["tokens"]["output"] == 700
    assert daily_code == 0
    assert orjson.loads(daily)["daily"] == []
