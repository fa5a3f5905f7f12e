"""Snapshots from a real VictoriaMetrics, a live daemon, and the fallback between them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from contextd.daemon_client import DaemonClient
from contextd.monitor.data import (
    DAEMON_MISSING,
    DaemonSource,
    FallbackSource,
    PromQLSource,
    SourceKind,
    State,
)
from contextd.monitor.promql import PromQLClient
from tests.monitor import daemon, known
from tests.monitor.conftest import closed_url, promql_source
from tests.monitor.daemon import LiveDaemon
from tests.promql_servers import VictoriaMetrics

pytestmark = pytest.mark.slow


def test_promql_snapshot_lists_every_session_fullest_first(vm_source: FallbackSource) -> None:
    snap = vm_source.snapshot()

    assert (snap.source, snap.backend, snap.problems, snap.missing) == (
        SourceKind.PROMQL, "VictoriaMetrics", (), ())  # fmt: skip
    assert [r.session_id for r in snap.sessions] == [p.session_id for p in known.RANKED]
    assert [r.session_id for r in snap.top] == [p.session_id for p in known.TOP5]
    for row, plan in zip(snap.sessions, known.RANKED, strict=True):
        assert (row.project, row.model, row.context_tokens, row.window_tokens, row.percent,
                row.state, row.checkpoints, row.tokens_saved, row.duration_seconds) == (
            plan.project, plan.model, plan.tokens(), plan.window, plan.percent(), plan.state,
            plan.checkpoints, plan.saved, plan.duration)  # fmt: skip
    # Sparklines for the top five: their percent over the last 30 minutes, minute by minute.
    assert [list(r.history) for r in snap.top] == [p.history for p in known.TOP5]
    assert [r.history for r in snap.sessions[5:]] == [(), ()]
    assert snap.top[0].average_saved == 80_000
    assert snap.uptime_seconds is None  # no daemon at the socket


def test_promql_aggregate_totals_and_crossing_rates(vm_source: FallbackSource) -> None:
    agg = vm_source.snapshot().aggregate

    total = sum(p.tokens() for p in known.PLANS)
    assert (agg.active_sessions, agg.total_context_tokens) == (len(known.PLANS), total)
    assert agg.average_percent == pytest.approx(
        sum(p.percent() for p in known.PLANS) / len(known.PLANS)
    )
    assert agg.average_tokens == pytest.approx(total / len(known.PLANS))
    # "search" crossed 70 % in the last minute; nothing crossed 90 % in the last 5 minutes.
    assert agg.warn_rate_per_hour is not None
    assert agg.warn_rate_per_hour > 0
    assert agg.critical_rate_per_hour == 0
    assert (agg.warn_crossings, agg.critical_crossings, agg.checkpoints, agg.tokens_saved) == (
        3, 2, 3, 190_000)  # fmt: skip
    assert agg.history[-1] == total
    assert agg.history[0] == sum(p.tokens(0) for p in known.PLANS)


def test_a_backend_without_contextd_series_says_what_is_missing(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    snap = promql_source(victoria_metrics.url, tmp_path).snapshot()

    assert (snap.source, snap.sessions) == (SourceKind.PROMQL, ())
    assert snap.missing == (
        f"no contextd series in VictoriaMetrics at {victoria_metrics.url}: "
        "is it scraping the daemon's /metrics?",
    )


def test_promql_detail_has_the_hour_of_history_and_says_events_need_the_daemon(
    vm_source: FallbackSource,
) -> None:
    payments = known.PLANS[4]

    detail = vm_source.detail(payments.session_id)

    assert detail.session is not None
    assert detail.session.state is State.CRITICAL
    assert detail.history[0] == (known.STAMPS[0], payments.start)
    assert detail.history[-1] == (known.T0, payments.end)
    assert detail.events == ()
    assert detail.notes[0].startswith("recent events come from the daemon: cannot reach")


@pytest.mark.parametrize("over", ["socket", "http"])
def test_daemon_source_reads_the_live_daemon(live_daemon: LiveDaemon, over: str) -> None:
    address = str(live_daemon.socket) if over == "socket" else live_daemon.url
    source = DaemonSource(DaemonClient(address), clock=lambda: known.T0)

    snap = source.snapshot()

    assert (snap.source, snap.address, snap.missing) == (SourceKind.DAEMON, address,
                                                         DAEMON_MISSING)  # fmt: skip
    assert [(r.project, r.percent, r.state) for r in snap.sessions] == [
        ("proj-d-92", 92.0, State.CRITICAL), ("proj-d-75", 75.0, State.WARNING),
        ("proj-d-60", 60.0, State.OK)]  # fmt: skip
    # The daemon's history is its recent events with a percent: d-92 crossed 70 % then 90 %.
    assert snap.sessions[0].history == (75.0, 92.0)
    assert snap.aggregate.active_sessions == 3
    assert snap.aggregate.total_context_tokens == 184_000 + 150_000 + 120_000
    assert snap.aggregate.warn_rate_per_hour is None
    assert snap.uptime_seconds is not None
    assert snap.uptime_seconds > 0


def test_daemon_detail_has_the_sessions_recent_events(live_daemon: LiveDaemon) -> None:
    source = DaemonSource(DaemonClient(live_daemon.socket))

    detail = source.detail(daemon.FULLEST.session_id)

    assert detail.session is not None
    assert detail.session.percent == 92.0
    assert [value for _, value in detail.history] == [75.0, 92.0]
    kinds = [event.kind for event in detail.events]
    assert kinds[0] == "threshold_crossed"  # newest first
    assert "session_started" in kinds
    assert any(e.summary == "crossed 90.0 % at 92.0 %" for e in detail.events)


def test_fallback_uses_the_daemon_when_no_promql_backend_answers(
    live_daemon: LiveDaemon,
) -> None:
    url = closed_url()
    client = DaemonClient(live_daemon.socket)
    source = FallbackSource(PromQLSource(PromQLClient(url), daemon=client), DaemonSource(client))

    snap = source.snapshot()

    assert snap.source is SourceKind.DAEMON
    assert snap.problems[0].startswith(f"PromQL: cannot reach {url}:")
    assert [r.session_id for r in snap.top] == ["d-92", "d-75", "d-60"]
    assert source.detail("d-92").session is not None


def test_neither_source_gives_a_snapshot_saying_why(tmp_path: Path) -> None:
    snap = promql_source(closed_url(), tmp_path).snapshot()

    assert (snap.source, snap.sessions) == (SourceKind.NONE, ())
    assert [p.split(":")[0] for p in snap.problems] == ["PromQL", "daemon"]
    assert "no-daemon.sock" in snap.problems[1]
    assert (
        promql_source(closed_url(), tmp_path)
        .detail("x")
        .notes[0]
        .startswith("no data source answered")
    )


def test_snapshot_json_is_plain_json_with_the_top_ids(vm_source: FallbackSource) -> None:
    data = orjson.loads(orjson.dumps(vm_source.snapshot().as_json()))

    assert data["source"] == "promql"
    assert data["top"] == [p.session_id for p in known.TOP5]
    assert data["sessions"][0]["state"] == "critical"
    assert data["sessions"][0]["average_saved"] == 80_000
    assert data["aggregate"]["total_context_tokens"] == sum(p.tokens() for p in known.PLANS)


def test_another_program_at_the_daemon_address_is_a_query_error_not_a_crash(
    vm_loaded: VictoriaMetrics, tmp_path: Path
) -> None:
    source = promql_source(closed_url(), tmp_path, daemon=vm_loaded.url)

    snap = source.snapshot()

    assert snap.source is SourceKind.NONE
    assert snap.problems[1] == "daemon: the daemon answered 400 for /api/sessions"
