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


def test_the_served_daemon_settles_its_heap_once_ready(served: Served) -> None:
    """After the initial scan, ``contextd serve`` freezes what is alive (modules, SDKs, the
    scan's state) out of the cyclic GC's reach: full collections then stay short under load."""
    status, stats = served.get("/api/stats")
    assert status == 200
    frozen = stats["gc_frozen_objects"]
    assert isinstance(frozen, int)
    assert frozen > 10_000  # the interpreter, starlette, uvicorn, the MCP SDK, ...


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


class TranscriptWriter:
    """Appends assistant lines (responses split over two lines, growing output) to a few
    transcript files, sometimes stopping mid-line and finishing the line later."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.rng = rng
        project = root / "projects" / "-w-proj"
        project.mkdir(parents=True, exist_ok=True)
        self.files = [project / f"7b2f0c2e-0000-4000-8000-00000000000{i}.jsonl" for i in range(3)]
        self.pending: dict[Path, bytes] = {}
        self.turn = 0

    def _lines(self, path: Path) -> bytes:
        self.turn += 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{self.turn % 1000:03d}Z"
        out = b""
        for output in (5, 40 + self.turn % 50):
            line = {"type": "assistant", "sessionId": path.stem, "cwd": "/w/proj",
                    "timestamp": stamp, "requestId": f"req_{self.turn}",
                    "message": {"id": f"msg_{self.turn}", "model": "claude-opus-4-6",
                                "content": [], "usage": {"input_tokens": 3,
                                "cache_creation_input_tokens": 100 + self.turn,
                                "cache_read_input_tokens": 1000 * self.turn,
                                "output_tokens": output}}}  # fmt: skip
            out += json.dumps(line).encode() + b"\n"
        return out

    def step(self) -> None:
        path = self.rng.choice(self.files)
        data = self.pending.pop(path, b"") or self._lines(path)
        cut = self.rng.randrange(1, len(data) + 1) if self.rng.random() < 0.3 else len(data)
        with path.open("ab") as fh:
            fh.write(data[:cut])
        if cut < len(data):
            self.pending[path] = data[cut:]

    def finish(self) -> None:
        for path, rest in self.pending.items():
            with path.open("ab") as fh:
                fh.write(rest)
        self.pending.clear()


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_no_acknowledged_hook_and_counts_none_twice(
    tmp_path: Path,
) -> None:
    """SIGKILL at random moments while hooks arrive and transcripts grow, then a restart:
    every acknowledged hook is there exactly once, and the transcripts' figures equal those of
    one clean scan of the final files."""
    rng = random.Random(20261123)
    served = Served(tmp_path)
    writer = TranscriptWriter(served.root, rng)
    acked: set[str] = set()
    sent: set[str] = set()
    for round_ in range(6):
        served.start()
        deadline = time.monotonic() + rng.uniform(0.3, 1.2)
        i = 0
        while time.monotonic() < deadline:
            writer.step()
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
    writer.finish()
    served.start()  # catches up on the transcripts, then SIGTERM commits
    served.stop(signal.SIGTERM)
    store = Store(served.db)
    stored = {s.session_id: s for s in store.sessions() if s.session_id.startswith("5a1f")}
    assert acked, "no hook was acknowledged"
    assert acked <= set(stored)
    assert set(stored) <= sent
    assert all(s.checkpoints == 1 for s in stored.values())
    assert store.counters()["hook_events_PostCompact"] == len(stored)
    assert store.integrity_ok()
    from_transcripts = {s.session_id: (s.tokens, s.context_tokens, s.responses)
                        for s in store.sessions() if s.session_id.startswith("7b2f")}  # fmt: skip
    store.close()
    clean = tmp_path / "clean.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
    argv = [sys.executable, "-m", "contextd", "scan", "--config-dir", str(served.root),
            "--db", str(clean)]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=60)
    reference = Store(clean)
    expected = {s.session_id: (s.tokens, s.context_tokens, s.responses)
                for s in reference.sessions()}  # fmt: skip
    assert len(expected) == 3
    assert from_transcripts == expected


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
