"""SVG snapshots of the monitor's views (``pytest --snapshot-update`` rewrites them).

The data is what a real VictoriaMetrics answers for ``known.PLANS`` at the fixed instant
``known.T0``, recorded once per test and replayed, with the backend's random port and the
temporary socket path replaced by fixed strings: those are the only parts of a screen that
would change from run to run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from textual.pilot import Pilot

from contextd.monitor.app import DetailScreen, MonitorApp
from contextd.monitor.data import FallbackSource, MonitorSnapshot, SessionDetail
from tests.monitor.pilot import refreshed, until

pytestmark = pytest.mark.slow

SnapCompare = Callable[..., bool]
FIXED_URL = "http://127.0.0.1:8428"
NO_DAEMON = "recent events come from the daemon: cannot reach the daemon at /run/contextd.sock"


@dataclass(frozen=True)
class Recorded:
    """Replays one snapshot and the details of its sessions."""

    snap: MonitorSnapshot
    details: dict[str, SessionDetail]

    def snapshot(self) -> MonitorSnapshot:
        return self.snap

    def detail(self, session_id: str) -> SessionDetail:
        return self.details[session_id]


@pytest.fixture
def recorded(vm_source: FallbackSource) -> Recorded:
    snap = replace(vm_source.snapshot(), address=FIXED_URL)
    details = {r.session_id: replace(vm_source.detail(r.session_id), notes=(NO_DAEMON,))
               for r in snap.sessions}  # fmt: skip
    return Recorded(snap, details)


async def loaded(pilot: Pilot[None]) -> None:
    await refreshed(pilot)


def test_main_view(snap_compare: SnapCompare, recorded: Recorded) -> None:
    app = MonitorApp(recorded, refresh_seconds=3600)
    assert snap_compare(app, terminal_size=(120, 32), run_before=loaded)


def test_main_view_compact(snap_compare: SnapCompare, recorded: Recorded) -> None:
    app = MonitorApp(recorded, refresh_seconds=3600)
    assert snap_compare(app, terminal_size=(70, 30), run_before=loaded)


def test_sessions_view(snap_compare: SnapCompare, recorded: Recorded) -> None:
    app = MonitorApp(recorded, refresh_seconds=3600)
    assert snap_compare(app, press=["s", "down"], terminal_size=(120, 32), run_before=loaded)


def test_detail_view(snap_compare: SnapCompare, recorded: Recorded) -> None:
    async def open_detail(pilot: Pilot[None]) -> None:
        await refreshed(pilot)
        await pilot.press("s", "enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen)
                    and pilot.app.screen.loaded is not None, "the detail")  # fmt: skip

    app = MonitorApp(recorded, refresh_seconds=3600)
    assert snap_compare(app, terminal_size=(100, 36), run_before=open_detail)
