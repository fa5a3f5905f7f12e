"""The Textual UI driven by Pilot against a real VictoriaMetrics (and a live daemon for the
fallback): every key binding, badge colours, the top-5 order, compact layout, the fallback
banner and the unreachable case."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.color import Color
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import Label, Sparkline, Static

from contextd.monitor.app import (
    AggregateScreen,
    DetailScreen,
    HelpScreen,
    MainScreen,
    MonitorApp,
    SessionsScreen,
)
from contextd.monitor.data import FallbackSource, Source, State
from contextd.monitor.widgets import (
    Banner,
    EventList,
    HistoryChart,
    SessionLine,
    SessionTable,
    UsageBar,
)
from tests.monitor import daemon, known
from tests.monitor.conftest import closed_url, promql_source
from tests.monitor.daemon import LiveDaemon, start_daemon
from tests.monitor.pilot import press, refreshed, until
from tests.promql_servers import VictoriaMetrics, free_port

pytestmark = pytest.mark.slow

Scenario = Callable[[Pilot[None]], Awaitable[None]]
BADGE_COLOURS = {State.OK: "green", State.WARNING: "yellow", State.CRITICAL: "red"}


def drive(source: Source, scenario: Scenario, *, size: tuple[int, int] = (120, 40),
          refresh: float = 3600.0) -> MonitorApp:  # fmt: skip
    """Run the app headless at ``size`` through ``scenario``; the app, after it stopped."""
    app = MonitorApp(source, refresh_seconds=refresh)

    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await refreshed(pilot)
            await scenario(pilot)

    asyncio.run(run())
    return app


def lines(pilot: Pilot[None]) -> list[SessionLine]:
    return [line for line in pilot.app.screen.query(SessionLine) if line.display]


def label(widget: SessionLine, name: str) -> str:
    return str(widget.query_one(f".{name}", Label).render())


def test_main_view_shows_the_top_five_fullest_first(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        shown = lines(pilot)
        assert [line.session_id for line in shown] == [p.session_id for p in known.TOP5]
        for line, plan in zip(shown, known.TOP5, strict=True):
            assert label(line, "project") == plan.project
            assert label(line, "model") == plan.model
            assert label(line, "percent") == f"{plan.percent():5.1f}%"
            assert line.query_one(UsageBar).percent == plan.percent()
            assert list(line.query_one(Sparkline).data or []) == plan.history
        assert label(shown[0], "context") == "190.0k/200.0k"
        assert label(shown[0], "checkpoints") == "ckpt 2 avg 80.0k"
        assert label(shown[0], "duration") == "1h30m"
        assert label(shown[3], "context") == "699.0k/1.0M"

    drive(vm_source, scenario)


def test_badges_and_bars_are_coloured_by_threshold(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        for line, plan in zip(lines(pilot), known.TOP5, strict=True):
            badge = line.query_one(".badge", Label)
            assert str(badge.render()) == plan.state.upper()
            assert [s for s in State if badge.has_class(s.value)] == [plan.state]
            assert badge.styles.background == Color.parse(BADGE_COLOURS[plan.state])
            bar = line.query_one(UsageBar)
            assert bar.styles.color == Color.parse(BADGE_COLOURS[plan.state])
        # The edges: exactly 90 % is CRITICAL, exactly 70 % WARNING, 69.9 % OK.
        assert [p.state for p in known.TOP5[1:4]] == [State.CRITICAL, State.WARNING, State.OK]

    drive(vm_source, scenario)


def test_health_line_and_aggregate_panel(vm_source: FallbackSource, vm_loaded: VictoriaMetrics
                                         ) -> None:  # fmt: skip
    async def scenario(pilot: Pilot[None]) -> None:
        health = str(pilot.app.screen.query_one("#health", Static).render())
        assert health == (f"VictoriaMetrics {vm_loaded.url} · 7 active sessions · "
                          "daemon uptime unknown")  # fmt: skip
        aggregate = str(pilot.app.screen.query_one("#aggregate", Static).render())
        assert "context tokens 1.4M" in aggregate
        assert "per session 198.4k (59.3 %)" in aggregate
        assert "90 % crossings 0.0/h" in aggregate
        # One 70 % crossing in the last 5 minutes ("search", in the last minute): 12 an hour.
        assert "70 % crossings 12.0/h" in aggregate
        assert not pilot.app.screen.query_one(Banner).display

    drive(vm_source, scenario)


def test_s_lists_every_session_and_enter_opens_its_detail(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "s")
        assert isinstance(pilot.app.screen, SessionsScreen)
        table = pilot.app.screen.query_one(SessionTable)
        assert [key.value for key in table.rows] == [p.session_id for p in known.RANKED]
        assert str(table.get_cell_at(Coordinate(0, 0))) == "CRITICAL"

        await press(pilot, "down", "down", "enter")
        detail = pilot.app.screen
        assert isinstance(detail, DetailScreen)
        search = known.RANKED[2]
        await until(pilot, lambda: detail.loaded is not None, "the detail")
        assert detail.session_id == search.session_id
        assert str(detail.query_one("#detail-badge", Label).render()) == "WARNING"
        assert detail.query_one("#detail-badge", Label).has_class("warning")
        chart = detail.query_one(HistoryChart)
        assert chart.values[0] == search.start
        assert chart.values[-1] == search.end
        assert "100%┤" in str(chart.render())
        notes = str(detail.query_one("#detail-notes", Static).render())
        assert notes.startswith("recent events come from the daemon: cannot reach")

        await press(pilot, "escape")
        assert isinstance(pilot.app.screen, SessionsScreen)
        assert pilot.app.screen.query_one(SessionTable).selected_session == search.session_id
        await press(pilot, "escape")
        assert isinstance(pilot.app.screen, MainScreen)

    drive(vm_source, scenario)


def test_a_opens_the_aggregate_view_and_s_replaces_it(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "a")
        screen = pilot.app.screen
        assert isinstance(screen, AggregateScreen)
        figures = str(screen.query_one("#aggregate-figures", Static).render())
        assert "active sessions 7" in " ".join(figures.split())
        assert "tokens saved    190.0k" in figures
        assert "CRITICAL 2" in figures
        assert "WARNING 1" in figures
        chart = screen.query_one("#aggregate-chart", Sparkline)
        assert list(chart.data or [])[-1] == sum(p.tokens() for p in known.PLANS)

        await press(pilot, "s")
        assert isinstance(pilot.app.screen, SessionsScreen)
        assert len(pilot.app.screen_stack) == 3  # default, main, sessions: views never pile up

    drive(vm_source, scenario)


def test_question_mark_opens_help_and_closes_it(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        help_text = str(pilot.app.screen.query_one("#help", Static).render())
        assert "WARNING from 70 %" in help_text
        await press(pilot, "question_mark")
        assert isinstance(pilot.app.screen, MainScreen)
        await press(pilot, "question_mark", "escape")
        assert isinstance(pilot.app.screen, MainScreen)

    drive(vm_source, scenario)


def test_q_quits(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("q")
        await until(pilot, lambda: not pilot.app.is_running, "the app to exit")

    app = drive(vm_source, scenario)
    assert app.return_code == 0


def test_r_refreshes_with_new_data(victoria_metrics: VictoriaMetrics, tmp_path: Path) -> None:
    victoria_metrics.push(known.exposition())
    clock = [float(known.T0)]
    source = promql_source(victoria_metrics.url, tmp_path, clock=lambda: clock[0])
    web = known.PLANS[3]  # 30 %: not in the top five

    async def scenario(pilot: Pilot[None]) -> None:
        app = await refreshed(pilot)
        assert web.session_id not in [line.session_id for line in lines(pilot)]
        later = known.Plan(web.session_id, web.project, web.model, web.window, 99, 99,
                           State.CRITICAL)  # fmt: skip
        victoria_metrics.push(known.exposition((later,), (known.T0 + 60,)))
        clock[0] = known.T0 + 60
        await press(pilot, "r")
        await refreshed(pilot, 2)
        assert lines(pilot)[0].session_id == web.session_id
        assert label(lines(pilot)[0], "percent") == " 99.0%"
        assert app.refreshes == 2

    drive(source, scenario)


def test_it_refreshes_by_itself(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await refreshed(pilot, 3)

    app = drive(vm_source, scenario, refresh=0.2)
    assert app.refreshes >= 3


def test_a_narrow_terminal_gets_the_compact_layout(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        screen = pilot.app.screen
        assert screen.has_class("-compact")
        for line in lines(pilot):
            assert not line.query_one(".model", Label).display
            assert not line.query_one(Sparkline).display
            visible = [w for w in line.children if w.display]
            assert [w.region.right for w in visible] == sorted(w.region.right for w in visible)
            assert max(w.region.right for w in visible) <= 70
        assert [line.session_id for line in lines(pilot)] == [p.session_id for p in known.TOP5]

    drive(vm_source, scenario, size=(70, 30))


def test_a_wide_terminal_shows_every_column(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        assert pilot.app.screen.has_class("-wide")
        line = lines(pilot)[0]
        assert all(w.display for w in line.children)
        assert max(w.region.right for w in line.children) <= 120

    drive(vm_source, scenario, size=(120, 40))


def test_fallback_banner_names_the_daemon_and_what_is_missing(
    live_daemon: LiveDaemon, tmp_path: Path
) -> None:
    url = closed_url()
    source = promql_source(url, tmp_path, daemon=live_daemon.socket)

    async def scenario(pilot: Pilot[None]) -> None:
        banner = pilot.app.screen.query_one(Banner)
        text = str(banner.render())
        assert banner.display
        assert banner.has_class("-fallback")
        assert f"Data source: the daemon's JSON API at {live_daemon.socket}" in text
        assert "history: only the daemon's recent events" in text
        assert f"PromQL: cannot reach {url}" in text
        assert [line.session_id for line in lines(pilot)] == ["d-92", "d-75", "d-60"]
        assert label(lines(pilot)[0], "project") == daemon.project(daemon.FULLEST)
        health = str(pilot.app.screen.query_one("#health", Static).render())
        assert health.startswith(f"contextd daemon {live_daemon.socket} · 3 active sessions")
        await press(pilot, "s", "enter")
        detail = pilot.app.screen
        assert isinstance(detail, DetailScreen)
        await until(pilot, lambda: detail.loaded is not None, "the detail")
        assert detail.query_one(EventList).row_count == 3
        assert str(detail.query_one("#detail-notes", Static).render()) == (
            "history: only the daemon's recent events"
        )

    drive(source, scenario)


def test_nothing_reachable_says_so_retries_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    url = closed_url()
    source = promql_source(url, tmp_path, daemon=f"http://127.0.0.1:{port}")
    started: list[LiveDaemon] = []

    async def scenario(pilot: Pilot[None]) -> None:
        app = await refreshed(pilot)
        banner = app.screen.query_one(Banner)
        text = str(banner.render())
        assert banner.has_class("-unreachable")
        assert text.startswith("No data source reachable:")
        assert f"PromQL: cannot reach {url}" in text
        assert f"daemon: cannot reach the daemon at http://127.0.0.1:{port}" in text
        assert "Retrying every 3600 s; press r to retry now." in text
        assert not app.screen.query_one("#top").display
        assert str(app.screen.query_one("#health", Static).render()) == "no data source reachable"
        await press(pilot, "r")
        await refreshed(pilot, 2)
        assert app.screen.query_one(Banner).has_class("-unreachable")
        await press(pilot, "s", "escape", "a", "escape")  # every view copes with no data

        started.append(start_daemon(tmp_path / "daemon", port=port))
        await press(pilot, "r")
        await refreshed(pilot, 3)
        assert app.screen.query_one(Banner).has_class("-fallback")
        assert [line.session_id for line in lines(pilot)] == ["d-92", "d-75", "d-60"]

    try:
        drive(source, scenario)
    finally:
        for live in started:
            live.served.stop()
