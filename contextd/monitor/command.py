"""``contextd monitor``'s options and wiring: from settings and flags to a data source.

Importing this module does not import Textual: ``--once`` and the option checks stay light,
and :func:`run_ui` loads the UI only when it is about to draw.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass

from contextd.config import Settings
from contextd.daemon_client import DaemonClient
from contextd.errors import ConfigError
from contextd.monitor.data import (
    Clock,
    DaemonSource,
    FallbackSource,
    PromQLSource,
    SourceKind,
    Thresholds,
)

__all__ = ["MonitorOptions", "SourceKind", "options", "run_ui", "source"]
from contextd.monitor.promql import PromQLClient

MIN_REFRESH = 0.2  # seconds: below this the monitor would mostly wait on its own queries
QUERY_TIMEOUT = 3.0  # seconds per request: a refresh must not hang on a dead backend


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    prometheus: str
    daemon: str
    token: str | None
    refresh: float
    thresholds: Thresholds


def _url(name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected an http(s) URL, got {value!r}")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ConfigError(f"{name}: bad port in {value!r}") from None
    return value


def options(
    settings: Settings, *, prometheus: str | None, daemon: str | None, refresh: float | None
) -> MonitorOptions:
    """The monitor's options: flags over settings. Raises ConfigError naming a bad one."""
    seconds = settings.monitor_refresh if refresh is None else refresh
    if not math.isfinite(seconds) or seconds < MIN_REFRESH:
        raise ConfigError(f"--refresh: expected at least {MIN_REFRESH} seconds, got {seconds:g}")
    address = daemon or str(settings.socket)
    if "://" in address:
        _url("--daemon", address)
    return MonitorOptions(
        prometheus=_url("--prometheus", prometheus or settings.prometheus_url),
        daemon=address,
        token=settings.token,
        refresh=seconds,
        thresholds=Thresholds(settings.engine.warn_percent, settings.engine.critical_percent),
    )


def source(opts: MonitorOptions, clock: Clock = time.time) -> FallbackSource:
    """PromQL first, the daemon's JSON API as the fallback."""
    daemon = DaemonClient(opts.daemon, token=opts.token, timeout=QUERY_TIMEOUT)
    promql = PromQLClient(opts.prometheus, timeout=QUERY_TIMEOUT)
    return FallbackSource(
        PromQLSource(promql, daemon=daemon, thresholds=opts.thresholds, clock=clock),
        DaemonSource(daemon, thresholds=opts.thresholds, clock=clock),
    )


def run_ui(opts: MonitorOptions) -> int:
    """Draw the monitor in this terminal until the user quits."""
    from contextd.monitor.app import MonitorApp  # noqa: PLC0415 (Textual only when drawing)

    app = MonitorApp(source(opts), refresh_seconds=opts.refresh, thresholds=opts.thresholds)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(app.run_async())
    # The terminal is restored. Reads still running in worker threads (a slow or unreachable
    # backend, up to their timeouts) hold nothing to save: exit now instead of joining them,
    # as asyncio.run would (``q`` must quit at once, whatever the backends do).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(app.return_code or 0)
