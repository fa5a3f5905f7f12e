"""Smoke test: the real ``contextd monitor`` in a real terminal (tmux), on a VictoriaMetrics that
scrapes a live daemon. The tmux server runs on its own socket in the test's temp directory and
is stopped through that socket; every wait polls ``capture-pane`` against a deadline."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contextd.exporters import names
from tests.monitor import daemon
from tests.monitor.daemon import LiveDaemon
from tests.promql_servers import require_binary, running_victoria_metrics
from tests.test_live_scrape import scrape_config

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # seconds for the screen to show the sessions, and for the process to exit
POLL = 0.1
SESSION = "monitor"


class Tmux:
    def __init__(self, binary: str, socket: Path) -> None:
        self.argv = [binary, "-S", str(socket), "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=10,
                              check=False)  # fmt: skip
        assert done.returncode == 0, f"tmux {args}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", SESSION)

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, f"{what}; the screen:\n{self.screen()}"
            time.sleep(POLL)


def test_monitor_in_tmux_shows_the_fullest_session_first_and_quits_on_q(
    live_daemon: LiveDaemon, tmp_path: Path
) -> None:
    tmux = Tmux(require_binary("tmux", "tmux"), tmp_path / "tmux.sock")
    target = f"127.0.0.1:{live_daemon.served.port}"
    with running_victoria_metrics(tmp_path / "vm", scrape_config=scrape_config(target)) as vm:
        vm.wait_for(names.ACTIVE_SESSIONS.name,
                    lambda r: [v for _, v in r] == [len(daemon.SESSIONS)])  # fmt: skip
        # tmux 3.3 does not always record a pane's exit status (pane_dead_status stays empty
        # now and then, whatever the command did): the shell around the command writes it.
        status = tmp_path / "exit-status"
        monitor = shlex.join(
            [
                sys.executable,
                "-m",
                "contextd",
                "monitor",
                "--prometheus",
                vm.url,
                "--daemon",
                str(live_daemon.socket),
                "--refresh",
                "1",
            ]
        )
        command = f"{monitor}; echo $? > {shlex.quote(str(status))}"  # fmt: skip
        tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", command)
        try:
            tmux("set-option", "-t", SESSION, "remain-on-exit", "on")
            projects = [daemon.project(p) for p in (daemon.SESSIONS[1], daemon.SESSIONS[2],
                                                    daemon.SESSIONS[0])]  # fmt: skip
            health = f"VictoriaMetrics {vm.url} · 3 active sessions"

            def drawn() -> bool:  # the whole first view, not a frame caught mid-render
                screen = tmux.screen()
                return health in screen and all(p in screen for p in projects)

            tmux.wait(drawn, "the monitor never showed the three sessions")
            screen = tmux.screen()
            assert health in screen
            rows = [line for line in screen.splitlines() if any(p in line for p in projects)]
            assert [next(p for p in projects if p in row) for row in rows] == projects
            assert rows[0].split()[0] == "CRITICAL"
            assert "92.0%" in rows[0]

            tmux("send-keys", "-t", SESSION, "q")
            tmux.wait(status.exists, "the monitor did not exit after q")
            assert status.read_text().strip() == "0"
        finally:
            subprocess.run([*tmux.argv, "kill-server"], capture_output=True, timeout=10,
                           check=False)  # fmt: skip
