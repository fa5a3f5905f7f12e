"""VictoriaMetrics scraping a live daemon: ``contextd stack``, and ``deploy/victoriametrics/
scrape.yml`` used as it is.

``contextd stack start`` runs the Debian ``victoria-metrics`` binary against the daemon the
settings name (here a ``contextd serve`` on a free port, given by ``CONTEXTD_PORT``), with its
state under the daemon's state directory; a session made through the daemon's API must reach
VictoriaMetrics through a scrape. The deploy file is tested unmodified: it targets the daemon's
default address, so that test runs the daemon on port 7323 (skipped, saying why, when another
process holds that port).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contextd.config import DEFAULT_PORT
from contextd.exporters import names
from tests.mcp.test_unix_socket import status_line
from tests.promql_servers import (
    VICTORIA_METRICS,
    PromQLServer,
    free_port,
    require_binary,
    running_victoria_metrics,
)
from tests.served import Served

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SID = "5a7c0d1e-0000-4000-8000-00000000beef"


def contextd(daemon: Served, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
    env |= {"CONTEXTD_PORT": str(daemon.port), "CONTEXTD_DB": str(daemon.db),
            "CONTEXTD_CONFIG_DIRS": str(daemon.root),
            "CONTEXTD_SOCKET": str(daemon.socket)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "contextd", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60, check=False)  # fmt: skip


def scraped_context(server: PromQLServer, expected: float) -> float:
    query = f'{names.CONTEXT_TOKENS.name}{{session_id="{SID}"}}'
    found = server.wait_for(query, lambda samples: [v for _, v in samples] == [expected],
                            timeout=30)  # fmt: skip
    return found[0][1]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    served.start()
    yield served
    served.stop()


def test_stack_starts_victoria_metrics_that_scrapes_the_daemon(daemon: Served) -> None:
    require_binary(VICTORIA_METRICS)
    listen = f"127.0.0.1:{free_port()}"
    status_line(daemon, SID, 123_456)
    started = contextd(daemon, "stack", "start", "--listen", listen)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("started VictoriaMetrics (pid ")
        assert f"scraping contextd at 127.0.0.1:{daemon.port}" in started.stdout
        home = daemon.db.parent / "victoria-metrics"
        assert (home / "scrape.yml").stat().st_mode & 0o777 == 0o600
        server = PromQLServer(f"http://{listen}", None, name="the stack's VictoriaMetrics")
        assert scraped_context(server, 123_456) == 123_456
        status = contextd(daemon, "stack", "status", "--json")
        assert status.returncode == 0
        report = json.loads(status.stdout)
        assert report["running"] is True
        assert report["url"] == f"http://{listen}"
        assert [t["health"] for t in report["targets"]] == ["up"]
        again = contextd(daemon, "stack", "start", "--listen", listen)
        assert again.returncode == 0
        assert again.stdout.startswith(f"already running (pid {report['pid']})")
    finally:
        stopped = contextd(daemon, "stack", "stop")
    assert stopped.returncode == 0
    assert stopped.stdout.startswith("stopped VictoriaMetrics")
    host, _, port = listen.partition(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=1).close()
    after = contextd(daemon, "stack", "status")
    assert (after.returncode, after.stdout.split(" (")[0]) == (3, "not running")
    assert contextd(daemon, "stack", "stop").stdout.strip() == "not running"


@pytest.mark.parametrize(
    ("listen", "message"),
    [("0.0.0.0:8428", "binds loopback only"), ("127.0.0.1", "expected HOST:PORT"),
     ("127.0.0.1:99999", "expected HOST:PORT")],
)  # fmt: skip
def test_stack_refuses_a_bad_listen_address(tmp_path: Path, listen: str, message: str) -> None:
    served = Served(tmp_path)  # not started: the address is refused before anything runs
    result = contextd(served, "stack", "start", "--listen", listen)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (served.db.parent / "victoria-metrics").exists()


def test_the_deploy_scrape_config_as_is_scrapes_a_daemon_on_the_default_port(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            pytest.skip(f"port {DEFAULT_PORT} is in use (a contextd running here?): the deploy "
                        "file targets it as it is")  # fmt: skip
    served = Served(tmp_path, port=DEFAULT_PORT)
    served.start()
    try:
        status_line(served, SID, 77_777)
        config = (REPO / "deploy" / "victoriametrics" / "scrape.yml").read_text()
        with running_victoria_metrics(tmp_path / "vm", scrape_config=config) as vm:
            assert scraped_context(vm, 77_777) == 77_777
            up = vm.wait_for('up{job="contextd"}', lambda s: [v for _, v in s] == [1.0],
                             timeout=30)  # fmt: skip
            assert up[0][0]["instance"] == f"127.0.0.1:{DEFAULT_PORT}"
    finally:
        served.stop()
