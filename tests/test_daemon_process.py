"""``contextd serve`` as a real process: listeners, shutdown, and crashes.

Servers bind 127.0.0.1 on free ports with temporary state and are stopped by PID.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contextd.store import Store
from tests.served import Served, free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.stop(signal.SIGKILL)


def test_listens_on_loopback_and_a_private_unix_socket(served: Served) -> None:
    mode = served.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(served.socket.parent.stat().st_mode) == 0o700
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(served.socket))
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := client.recv(65536):
        reply += chunk
    client.close()
    assert reply.startswith(b"HTTP/1.1 200")
    assert b'"status":"ok"' in reply


def test_a_second_instance_is_refused_and_the_first_keeps_its_socket(
    served: Served, tmp_path: Path
) -> None:
    other = Served(tmp_path / "two")
    other.socket = served.socket
    other.start(wait=False)
    assert other.proc is not None
    _, err_bytes = other.proc.communicate(timeout=20)
    err = err_bytes.decode()
    assert other.proc.returncode == 2
    assert "another contextd is listening" in err
    assert served.socket.exists()
    assert served.get("/healthz")[0] == 200


def test_a_stale_socket_from_a_killed_instance_is_reclaimed(tmp_path: Path) -> None:
    first = Served(tmp_path)
    first.start()
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert first.socket.exists()  # left behind
    second = Served(tmp_path)
    second.start()
    try:
        assert second.get("/healthz")[0] == 200
    finally:
        second.stop()


def test_sigterm_commits_and_exits_zero(served: Served) -> None:
    sid = "5a1f0c2e-0000-4000-8000-0000000000aa"
    assert served.post("/hooks", {"session_id": sid, "hook_event_name": "SessionStart",
                                  "source": "startup", "cwd": "/w/p"})[0] == 200  # fmt: skip
    assert served.stop(signal.SIGTERM) == 0
    assert not served.socket.exists()
    store = Store(served.db)
    snap = store.session(sid)
    assert snap is not None
    assert store.counters()["hook_events_SessionStart"] == 1
    assert store.integrity_ok()


def test_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
    root = tmp_path / "c"
    root.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "contextd", "serve", "--host", "0.0.0.0", "--port",  # noqa: S104 (it must refuse)
         str(free_port()), "--config-dir", str(root), "--db", str(tmp_path / "d.db"),
         "--socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "without a token" in result.stderr


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_no_acknowledged_hook_and_counts_none_twice(
    tmp_path: Path,
) -> None:
    """Hooks get a 2xx only once committed: after SIGKILL at random moments and a restart,
    every acknowledged compaction is there exactly once and nothing is counted twice."""
    rng = random.Random(20261123)
    served = Served(tmp_path)
    acked: set[str] = set()
    sent: set[str] = set()
    for round_ in range(6):
        served.start()
        deadline = time.monotonic() + rng.uniform(0.3, 1.2)
        i = 0
        while time.monotonic() < deadline:
            sid = f"5a1f0c2e-0000-4000-8000-{round_:04d}{i:08d}"
            i += 1
            sent.add(sid)
            try:
                body = {"session_id": sid, "hook_event_name": "PostCompact", "trigger": "auto"}
                code, _ = served.post("/hooks", body)
            except OSError:
                break
            if code == 200:
                acked.add(sid)
        served.stop(signal.SIGKILL)
    served.start()
    served.stop(signal.SIGTERM)
    store = Store(served.db)
    stored = {s.session_id: s for s in store.sessions()}
    assert acked, "no hook was acknowledged"
    assert acked <= set(stored)
    assert set(stored) <= sent
    assert all(s.checkpoints == 1 for s in stored.values())
    assert store.counters()["hook_events_PostCompact"] == len(stored)
    assert store.integrity_ok()


def test_while_the_daemon_runs_the_cli_reads_through_it_and_never_writes(served: Served) -> None:
    sid = "5a1f0c2e-0000-4000-8000-0000000000bb"
    window = {"context_window_size": 200_000, "current_usage": {"input_tokens": 150_000}}
    served.post("/api/statusline", {"session_id": sid, "cwd": "/w/proj", "context_window": window})
    common = ["--config-dir", str(served.root), "--db", str(served.db),
              "--socket", str(served.socket)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "contextd", *args, *common]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env,
                              check=False)  # fmt: skip

    listed = cli("sessions", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["session_id"], r["context_tokens"], r["threshold_state"]) for r in rows] == [
        (sid, 150_000, "warning")
    ]
    scanned = cli("scan")
    assert scanned.returncode == 1
    assert "being written by another process" in scanned.stderr
