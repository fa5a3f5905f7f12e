"""Driving :class:`MonitorApp` in tests: waits on conditions, with a bound, never fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot

from contextd.monitor.app import MonitorApp

WAIT = 20.0  # seconds: the bound of every wait below
POLL = 0.02


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until ``condition()`` holds; fail after ``WAIT`` seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while not condition():
                await pilot.pause(POLL)
    except TimeoutError:
        raise AssertionError(f"still waiting after {WAIT}s for {what}") from None
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def refreshed(pilot: Pilot[None], count: int = 1) -> MonitorApp:
    """Wait until the app has drawn ``count`` snapshots; the app."""
    app = pilot.app
    assert isinstance(app, MonitorApp)
    await until(pilot, lambda: app.refreshes >= count, f"{count} refresh(es)")
    return app


async def press(pilot: Pilot[None], *keys: str) -> None:
    """Press ``keys``, then wait for the work they started (loads, refreshes) and a repaint."""
    for key in keys:
        await pilot.press(key)
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
