"""Fixtures of the monitor's tests: a VictoriaMetrics holding the known sessions, sources on it,
and a live daemon holding sessions of its own (for the fallback and the tmux smoke test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contextd.daemon_client import DaemonClient
from contextd.monitor.data import DaemonSource, FallbackSource, PromQLSource
from contextd.monitor.promql import PromQLClient
from tests.monitor import known
from tests.monitor.daemon import LiveDaemon, start_daemon
from tests.promql_servers import VictoriaMetrics, free_port, running_victoria_metrics


@pytest.fixture(scope="module")
def vm_loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics holding ``known.PLANS`` over the 30 minutes up to ``known.T0``."""
    with running_victoria_metrics(tmp_path_factory.mktemp("vm-loaded")) as vm:
        vm.push(known.exposition())
        yield vm


def closed_url() -> str:
    """An http URL on a loopback port where nothing listens (a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def promql_source(
    url: str,
    tmp_path: Path,
    *,
    daemon: str | Path | None = None,
    clock: Callable[[], float] = lambda: known.T0,
) -> FallbackSource:
    """What ``contextd monitor`` builds, with the clock stopped at ``known.T0`` and, unless
    ``daemon`` says otherwise, a daemon socket where no daemon listens."""
    client = DaemonClient(daemon or tmp_path / "no-daemon.sock", timeout=2.0)
    return FallbackSource(
        PromQLSource(PromQLClient(url, timeout=5.0), daemon=client, clock=clock),
        DaemonSource(client, clock=clock),
    )


@pytest.fixture
def vm_source(vm_loaded: VictoriaMetrics, tmp_path: Path) -> FallbackSource:
    return promql_source(vm_loaded.url, tmp_path)


@pytest.fixture(scope="session")
def live_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    """A ``contextd serve`` holding ``tests.monitor.daemon.SESSIONS``."""
    daemon = start_daemon(tmp_path_factory.mktemp("monitor-daemon"))
    try:
        yield daemon
    finally:
        daemon.served.stop()
