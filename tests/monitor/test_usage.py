"""The monitor's usage view: the block gauges and session costs from a real VictoriaMetrics,
the daemon's ``/api/usage`` as the fallback (a live daemon over its transcripts), and the
screen behind ``u`` driven with Pilot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Static

from contextd.monitor.app import HelpScreen, MainScreen, UsageScreen
from contextd.monitor.data import FallbackSource, SourceKind
from contextd.monitor.usage import (
    SCOPE_BLOCK,
    SCOPE_SESSION,
    BlockFigures,
    CostRow,
    read_usage,
)
from contextd.usage.blocks import Severity
from tests.monitor import known
from tests.monitor.conftest import closed_url, promql_source
from tests.monitor.pilot import press
from tests.monitor.test_app import drive
from tests.promql_servers import VictoriaMetrics
from tests.served import Served
from tests.usage.lines import assistant, write

pytestmark = pytest.mark.slow

KNOWN_BLOCK = BlockFigures(
    tokens=1_234_567, cost_usd=12.5, burn_rate=20_000.0, non_cache_rate=750.0,
    severity=Severity.MODERATE, projected_tokens=3_000_000, projected_cost_usd=30.25,
    remaining_seconds=5400.0,
)  # fmt: skip
OPUS_OUT = 25 / 1_000_000  # claude-opus-4-6, US dollars per output token
# The live daemon's transcripts: sessions (file, cwd, output tokens) in the last minutes.
WORK = (("a-web", "/home/u/web", 1_000_000), ("b-web", "/home/u/web", 40_000),
        ("c-api", "/home/u/api", 200_000))  # fmt: skip


def test_promql_usage_reads_the_block_gauges_and_the_session_costs(
    vm_source: FallbackSource, vm_loaded: VictoriaMetrics
) -> None:
    snap = read_usage(vm_source)

    assert (snap.source, snap.address, snap.scope) == (
        SourceKind.PROMQL, vm_loaded.url, SCOPE_SESSION)  # fmt: skip
    assert snap.block == KNOWN_BLOCK
    assert snap.sessions == tuple(
        CostRow(sid, sid.split("-", 1)[1], cost) for sid, cost in known.COSTS.items()
    )
    assert snap.projects == tuple(CostRow(p, p, c) for p, c in known.PROJECT_COSTS.items())
    assert (snap.missing, snap.problems) == ((), ())


def test_a_backend_without_usage_series_says_so(
    victoria_metrics: VictoriaMetrics, tmp_path: Path
) -> None:
    snap = read_usage(promql_source(victoria_metrics.url, tmp_path))

    assert (snap.source, snap.block, snap.sessions) == (SourceKind.PROMQL, None, ())
    assert snap.missing == (
        f"no contextd_block_active series in VictoriaMetrics at {victoria_metrics.url}: "
        "is it scraping a daemon with usage accounting?",
    )


def test_neither_source_gives_a_usage_snapshot_saying_why(tmp_path: Path) -> None:
    snap = read_usage(promql_source(closed_url(), tmp_path))

    assert (snap.source, snap.block, snap.taken_at) == (SourceKind.NONE, None, known.T0)
    assert [p.split(":")[0] for p in snap.problems] == ["PromQL", "daemon"]


def stamp(seconds_ago: float) -> str:
    when = datetime.fromtimestamp(time.time() - seconds_ago, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def usage_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A ``contextd serve`` over transcripts of three sessions in two projects."""
    served = Served(tmp_path_factory.mktemp("usage-daemon"))
    for n, (sid, cwd, out) in enumerate(WORK):
        project = cwd.replace("/", "-")
        write(served.root / "projects" / project / f"{sid}.jsonl",
              assistant(f"m{n}", f"r{n}", out=out, inp=0, cc=0, cr=0, ts=stamp(180 - n),
                        session=sid, cwd=cwd))  # fmt: skip
    served.start()
    try:
        yield served
    finally:
        served.stop()


def test_the_fallback_reads_the_active_block_from_the_daemons_api(
    usage_daemon: Served, tmp_path: Path
) -> None:
    snap = read_usage(promql_source(closed_url(), tmp_path, daemon=usage_daemon.socket))

    assert (snap.source, snap.scope) == (SourceKind.DAEMON, SCOPE_BLOCK)
    assert [p.split(":")[0] for p in snap.problems] == ["PromQL"]
    block = snap.block
    assert block is not None
    assert block.tokens == 1_240_000
    assert block.cost_usd == pytest.approx(1_240_000 * OPUS_OUT, abs=1e-9)
    # 1.24M input+output tokens within the last 10 minutes: far above 1,000 a minute.
    assert block.severity is Severity.HIGH
    assert [(r.name, r.project) for r in snap.sessions] == [
        ("a-web", "web"), ("c-api", "api"), ("b-web", "web")]  # fmt: skip
    assert [r.name for r in snap.projects] == ["web", "api"]
    assert [r.cost_usd for r in snap.projects] == pytest.approx(
        [1_040_000 * OPUS_OUT, 200_000 * OPUS_OUT], abs=1e-9
    )


def rendered(pilot: Pilot[None], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())


def rows(pilot: Pilot[None], selector: str) -> list[list[str]]:
    table = pilot.app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def test_u_opens_the_usage_view_with_the_block_and_costs(
    vm_source: FallbackSource, vm_loaded: VictoriaMetrics
) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "u")
        screen = pilot.app.screen
        assert isinstance(screen, UsageScreen)
        assert screen.loaded is not None
        source = f"VictoriaMetrics {vm_loaded.url} · {SCOPE_SESSION}"
        assert rendered(pilot, "#usage-source") == source
        severity = screen.query_one("#usage-severity", Label)
        assert str(severity.render()) == "burn rate MODERATE"
        assert [s for s in ("normal", "moderate", "high") if severity.has_class(s)] == ["moderate"]
        assert severity.styles.background == Color.parse("yellow")
        assert rendered(pilot, "#usage-block").splitlines() == [
            "tokens     1.2M",
            "cost       $12.50",
            "burn rate  20.0k/min (750/min input+output)",
            "projected  3.0M tokens, $30.25 at the block's end",
            "time left  1h30m",
        ]
        assert rows(pilot, "#usage-sessions") == [
            ["7f3a-payments", "payments", "$4.50"], ["8d20-search", "search", "$2.00"],
            ["1c44-api", "api", "$1.25"], ["b0b0-payments", "payments", "$0.75"]]  # fmt: skip
        assert rows(pilot, "#usage-projects") == [
            ["payments", "$5.25"], ["search", "$2.00"], ["api", "$1.25"]]  # fmt: skip
        await press(pilot, "escape")
        assert isinstance(pilot.app.screen, MainScreen)

    drive(vm_source, scenario)


def test_u_falls_back_to_the_daemon_and_colours_a_high_burn_rate(
    usage_daemon: Served, tmp_path: Path
) -> None:
    source = promql_source(closed_url(), tmp_path, daemon=usage_daemon.socket)

    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "u")
        screen = pilot.app.screen
        assert isinstance(screen, UsageScreen)
        head = rendered(pilot, "#usage-source").splitlines()
        assert head[0] == f"contextd daemon {usage_daemon.socket} · {SCOPE_BLOCK}"
        assert head[1].startswith("Data source: the daemon's JSON API (no PromQL backend): PromQL")
        assert screen.query_one("#usage-source", Static).has_class("-fallback")
        severity = screen.query_one("#usage-severity", Label)
        assert str(severity.render()) == "burn rate HIGH"
        assert severity.styles.background == Color.parse("red")
        assert rendered(pilot, "#usage-block").splitlines()[:2] == [
            "tokens     1.2M",
            "cost       $31.00",
        ]
        assert rows(pilot, "#usage-projects") == [["web", "$26.00"], ["api", "$5.00"]]

    drive(source, scenario)


def test_help_lists_the_usage_key(vm_source: FallbackSource) -> None:
    async def scenario(pilot: Pilot[None]) -> None:
        await press(pilot, "question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        help_text = str(pilot.app.screen.query_one("#help", Static).render())
        assert "u      usage: the current 5-hour block" in help_text
        assert "NORMAL, MODERATE from 500, HIGH from 1,000" in help_text

    drive(vm_source, scenario)
