"""kill -9 during transcript ingestion (reliability.md scenarios 3 and 4).

A writer in this process keeps appending Claude-Code-like transcript lines (cut at arbitrary
bytes, so partial lines are left for a while and completed later) while a child process
ingests them and is SIGKILLed, 15 times: the daemon's ingest loop (the CLI's composition,
scanning again and again) killed right after one of its commits or while it works on the next
batch, and ``contextd scan`` itself killed at random moments. After a final ``contextd scan``
the state must be exactly what one clean scan of the final files produces: every line, response,
tool call, checkpoint and torn line counted once; and the stored offsets always on line
boundaries, never past the file's end.

What is compared, and why nothing else differs legitimately:

* Statuses are deterministic: the engine runs with idle_after = expire_after = 30 days, the
  "live" sessions' lines are about 3 days old and the "old" ones about 400 days, so the wall
  time of a scan cannot move a session between statuses. Session snapshots are compared field
  by field with nothing excluded.
* Events are compared as each session's newest ``session_events`` (500), the retention the
  store applies after each scan: a run killed before its pruning step leaves older events that
  the next scan touching that session prunes, so beyond the retained window the two stores may
  legitimately differ in how much history they still hold.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contextd.ingest.tailer import FileCursor
from contextd.sessions import EngineConfig
from contextd.store import Store

SEED = 20261123
KILLS = int(os.environ.get("CRASH_TEST_KILLS", "15"))  # more for a longer soak
TIME_BUDGET = 50.0  # seconds for the kill loop; the test fails if it cannot do its kills
INITIAL_BYTES = 1_500_000
BURST_BYTES = 400_000  # per file before each start; one file gets up to BIG_BURST_BYTES
BIG_BURST_BYTES = 2_000_000  # more than one read block (1 MiB): commits inside the file
KEEP_EVENTS = EngineConfig().session_events  # events kept per session (the CLI's setting)
DAY = 86_400.0
EXPIRE_AFTER = 30 * DAY

# -- a Claude-Code-like transcript generator --------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _words(rng: random.Random, n: int) -> str:
    vocab = ("context", "window", "token", "cache", "tool", "file", "read", "edit", "test",
             "commit", "ledger", "cursor", "offset", "session", "ü", "→", "日本")  # fmt: skip
    return " ".join(rng.choice(vocab) for _ in range(n))


@dataclasses.dataclass
class TranscriptWriter:
    """One transcript file, written the way Claude Code writes it.

    Lines are generated into ``data`` and reach the file in pieces cut at arbitrary bytes, so
    the file often ends in a partial line that a later piece completes.
    """

    path: Path
    session_id: str
    rng: random.Random
    clock: float
    cwd: str
    model: str
    sidechain: bool = False
    agent_id: str | None = None
    switch_branch_at: int | None = None  # turn at which the session moves to another branch
    switch_model_at: int | None = None
    data: bytearray = dataclasses.field(default_factory=bytearray)  # generated so far
    written: int = 0  # how much of it is in the file
    turn: int = 0
    context: int = 20_000
    parent: str | None = None

    def _common(self) -> dict[str, object]:
        self.clock += self.rng.uniform(0.05, 2.0)
        branch = "main"
        if self.switch_branch_at is not None and self.turn >= self.switch_branch_at:
            branch = "feature/crash-safety"
        entry: dict[str, object] = {
            "parentUuid": self.parent,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": "2.1.39",
            "gitBranch": branch,
        }
        if self.agent_id is not None:
            entry["agentId"] = self.agent_id
        return entry

    def _emit(self, entry: dict[str, object]) -> None:
        uuid = f"{self.session_id}-{self.agent_id or 'main'}-{len(self.data)}"
        entry.setdefault("uuid", uuid)
        entry.setdefault("timestamp", _iso(self.clock))
        self.parent = str(entry["uuid"])
        self.data += json.dumps(entry, ensure_ascii=False).encode() + b"\n"

    def _usage(self, output: int) -> dict[str, object]:
        read = int(self.context * 0.8)
        creation = self.context - read - 3
        return {
            "input_tokens": 3,
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": creation,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output,
            "service_tier": "standard",
        }

    def generate_turn(self) -> None:
        """A prompt and one API response over 1-3 lines (growing output_tokens, maybe a tool
        call); now and then a queued prompt, a progress line, a torn line or a compaction."""
        rng = self.rng
        self.turn += 1
        model = self.model
        if self.switch_model_at is not None and self.turn >= self.switch_model_at:
            model = "claude-sonnet-4-5-20250929"
        user = self._common() | {
            "type": "user",
            "message": {"role": "user", "content": _words(rng, rng.randint(5, 150))},
        }
        self._emit(user)
        if not self.sidechain and rng.random() < 0.05:
            queued: dict[str, object] = {"type": "queue-operation", "operation": "enqueue",
                      "sessionId": self.session_id, "timestamp": _iso(self.clock),
                      "content": _words(rng, 5)}  # fmt: skip
            self._emit(queued)  # no cwd: places the session in time, says nothing of origin
        if not self.sidechain and rng.random() < 0.1:
            progress = self._common() | {
                "type": "progress",
                "data": {"type": "agent_progress", "message": {"message": {
                    "id": f"msg_copy_{rng.getrandbits(48):x}", "model": model,
                    "usage": self._usage(999)}}},
            }  # fmt: skip
            self._emit(progress)
        self.context += rng.randint(1_500, 9_000)
        message_id = f"msg_{self.session_id[-6:]}_{self.agent_id or 'm'}_{self.turn:05d}"
        request_id = f"req_{rng.getrandbits(64):016x}"
        parts = rng.randint(1, 3)
        output = rng.randint(1, 20)
        for part in range(parts):
            content: list[dict[str, object]]
            if part == parts - 1 and rng.random() < 0.4:
                content = [{"type": "tool_use", "id": f"toolu_{message_id}_{part}",
                            "name": "Read", "input": {"file_path": "/tmp/x.py"}}]  # fmt: skip
            else:
                content = [{"type": "text", "text": _words(rng, rng.randint(5, 120))}]
            if part == parts - 1:
                output += rng.randint(0, 600)  # the last line often holds the final count
            line = self._common() | {
                "type": "assistant",
                "requestId": request_id,
                "message": {"model": model, "id": message_id, "type": "message",
                            "role": "assistant", "content": content, "stop_reason": None,
                            "stop_sequence": None, "usage": self._usage(output)},
            }  # fmt: skip
            self._emit(line)
        if not self.sidechain and rng.random() < 0.02:
            torn = b'{"type":"user","message":{"role":"user","content":"torn by a cra'
            self.data += torn + b"\n"
        if not self.sidechain and self.context > 185_000:
            boundary = self._common() | {
                "type": "system", "subtype": "compact_boundary",
                "content": "Conversation compacted", "isMeta": False, "level": "info",
                "compactMetadata": {"trigger": "auto", "preTokens": self.context},
            }  # fmt: skip
            if rng.random() < 0.3:
                post = rng.randint(15_000, 40_000)
                boundary["compactMetadata"] = {"trigger": "manual", "preTokens": self.context,
                                               "postTokens": post}  # fmt: skip
            boundary["parentUuid"] = None
            self._emit(boundary)
            self.context = rng.randint(15_000, 40_000)

    def write_piece(self, max_bytes: int) -> None:
        """Append the next 1..max_bytes bytes (most often ending mid-line)."""
        n = self.rng.randint(1, max_bytes)
        while len(self.data) - self.written < n:
            self.generate_turn()
        with self.path.open("ab") as f:
            f.write(self.data[self.written : self.written + n])
        self.written += n

    def finish_line(self) -> None:
        """Complete the line the file ends in, if it ends mid-line."""
        if self.written == 0 or self.data[self.written - 1 : self.written] == b"\n":
            return
        end = self.data.find(b"\n", self.written)
        with self.path.open("ab") as f:
            f.write(self.data[self.written : end + 1])
        self.written = end + 1


def build_writers(root: Path, rng: random.Random, now: float) -> list[TranscriptWriter]:
    """Four sessions in two projects, one with a sub-agent file (same sessionId)."""
    specs = [
        ("-home-dev-alpha", "5a1f0c2e-0000-4000-8000-000000000001", now - 3 * DAY, "alpha",
         "claude-opus-4-6", {"switch_model_at": 150, "switch_branch_at": 120}),
        ("-home-dev-alpha", "5a1f0c2e-0000-4000-8000-000000000002", now - 400 * DAY, "alpha",
         "claude-opus-4-6", {"switch_branch_at": 200}),
        ("-home-dev-beta", "5a1f0c2e-0000-4000-8000-000000000003", now - 3 * DAY, "beta",
         "claude-opus-4-7", {}),
        ("-home-dev-beta", "5a1f0c2e-0000-4000-8000-000000000004", now - 401 * DAY, "beta",
         "claude-haiku-4-5", {}),
    ]  # fmt: skip
    writers = []
    for project, session, start, name, model, extra in specs:
        folder = root / "projects" / project
        folder.mkdir(parents=True, exist_ok=True)
        writers.append(
            TranscriptWriter(
                path=folder / f"{session}.jsonl",
                session_id=session,
                rng=random.Random(rng.getrandbits(64)),
                clock=start,
                cwd=f"/home/dev/{name}",
                model=model,
                **extra,  # type: ignore[arg-type]
            )
        )
    parent = writers[0]
    sub = parent.path.parent / parent.session_id / "subagents"
    sub.mkdir(parents=True)
    writers.append(
        TranscriptWriter(
            path=sub / "agent-a3c9e51.jsonl",
            session_id=parent.session_id,
            rng=random.Random(rng.getrandbits(64)),
            clock=parent.clock + 60,
            cwd=parent.cwd,
            model="claude-sonnet-4-5-20250929",
            sidechain=True,
            agent_id="a3c9e51",
        )
    )
    return writers


# -- the child and what it leaves behind ------------------------------------------------------

# The daemon's transcript loop: the CLI's composition (contextd.cli._scan) kept alive and
# scanning again and again. After each commit it reports "c" and waits for one byte on stdin,
# so the test can kill it exactly between two commits, or let it go on and kill it while it
# works on the next batch. Small batches put commits (and so kills) inside files too, and
# commit_interval=0 commits after every file (the CLI batches files into ~1 s transactions).
CHILD = """
import sys
from contextd.config import load_settings
from contextd.ingest.discovery import claude_roots, transcript_files
from contextd.ingest.scanner import TranscriptIngestor
from contextd.sessions import SessionManager
from contextd.store import Store

root, db, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = load_settings()
store = Store(db, keep_events=settings.engine.session_events)
commit = store.commit

def reporting_commit(*args, **kwargs):
    commit(*args, **kwargs)
    sys.stdout.write("c\\n")
    sys.stdout.flush()
    sys.stdin.buffer.read(1)

store.commit = reporting_commit
manager = SessionManager(settings.engine, next_seq=store.next_seq())
ingestor = TranscriptIngestor.open(
    store, manager, max_line=settings.max_line_bytes, batch_lines=batch, commit_interval=0.0
)
roots = claude_roots([root])
while True:
    ingestor.scan(transcript_files(roots))
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
    env["CONTEXTD_IDLE_AFTER"] = env["CONTEXTD_EXPIRE_AFTER"] = str(EXPIRE_AFTER)
    return env


def _cli_argv(config_dir: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "contextd", "scan", "--config-dir", str(config_dir),
            "--db", str(db), "--json"]  # fmt: skip


def run_cli_scan(config_dir: Path, db: Path) -> dict[str, int]:
    argv = _cli_argv(config_dir, db)
    done = subprocess.run(argv, env=_child_env(), capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    summary: dict[str, int] = json.loads(done.stdout)
    return summary


class Child:
    """The ingest loop in a child process; it pauses after each commit until released."""

    def __init__(self, config_dir: Path, db: Path, batch_lines: int) -> None:
        argv = [sys.executable, "-c", CHILD, str(config_dir), str(db), str(batch_lines)]
        self.proc = subprocess.Popen(
            argv,
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.commits = 0  # reported so far
        self.released = 0  # commits it was allowed to go on from

    def poll_commits(self) -> int:
        assert self.proc.stdout is not None
        try:
            while data := os.read(self.proc.stdout.fileno(), 65536):
                self.commits += data.count(b"\n")
        except BlockingIOError:
            pass
        return self.commits

    def release(self) -> None:
        """Let it go on from every commit it reported."""
        assert self.proc.stdin is not None
        if self.commits > self.released:
            self.proc.stdin.write(b"g" * (self.commits - self.released))
            self.proc.stdin.flush()
            self.released = self.commits

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.poll_commits()
        assert self.proc.returncode == -signal.SIGKILL, self.stderr()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def kill_cli_scan(
    config_dir: Path, db: Path, delay: float, keep_writing: Callable[[], None]
) -> bool:
    """Run ``contextd scan`` and SIGKILL it after ``delay`` s; False when it finished first."""
    cli = subprocess.Popen(
        _cli_argv(config_dir, db), env=_child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    kill_at = time.monotonic() + delay
    while cli.poll() is None and time.monotonic() < kill_at:
        keep_writing()
        time.sleep(0.001)  # pacing the writer; nothing waits on this
    cli.send_signal(signal.SIGKILL)
    cli.wait(timeout=10)
    assert cli.stderr is not None
    err = cli.stderr.read().decode()
    cli.stderr.close()
    assert cli.returncode in (0, -signal.SIGKILL), err
    return cli.returncode == -signal.SIGKILL


def kill_ingest_loop(
    child: Child, kind: str, aim: int, delay: float, keep_writing: Callable[[], None]
) -> None:
    """Let the child run until its ``aim``-th commit, then kill it there ("between") or
    ``delay`` s later ("during"), while the writer keeps writing."""
    kill_at: float | None = None
    hard_limit = time.monotonic() + 20.0
    while True:
        now = time.monotonic()
        assert now < hard_limit, "the ingest loop made no progress"
        assert child.alive(), f"the ingest loop exited: {child.stderr()}"
        if kill_at is not None and now >= kill_at:
            break
        commits = child.poll_commits()
        if kind == "between" and commits >= aim:
            break  # it is waiting right after commit number `aim`
        child.release()
        if kind == "during" and kill_at is None and commits >= aim:
            kill_at = now + delay
        keep_writing()
        time.sleep(0.001)  # pacing the writer; nothing waits on this
    child.kill()


def committed_cursors(db: Path) -> dict[str, FileCursor]:
    store = Store(db)
    try:
        assert store.integrity_ok()
        return store.cursors()
    finally:
        store.close()


def assert_cursors_on_line_boundaries(cursors: dict[str, FileCursor]) -> None:
    for path, cursor in cursors.items():
        data = Path(path).read_bytes()
        assert cursor.offset <= len(data), path
        assert not cursor.discarding, path
        assert cursor.offset == 0 or data[cursor.offset - 1 : cursor.offset] == b"\n", path
        assert cursor.resets == 0, f"{path}: growth was taken for a rewrite"


def last_line_end(path: Path) -> int:
    """Offset just after the last complete line: where a full scan must bring the cursor."""
    data = path.read_bytes() if path.exists() else b""
    return data.rfind(b"\n") + 1


# -- what a store holds, for comparison -------------------------------------------------------


def _events_by_session(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Each session's newest KEEP_EVENTS events (what the store promises to keep), in order."""
    store = Store(db)
    try:
        events = store.events(None, limit=10_000_000)
    finally:
        store.close()
    out: dict[str, list[tuple[object, ...]]] = {}
    for e in events:
        out.setdefault(e.session_id, []).append((e.kind.value, e.at, dict(e.data)))
    return {sid: es[-KEEP_EVENTS:] for sid, es in out.items()}


def _ledger(db: Path) -> list[tuple[int, str, int]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT key, session_id, output FROM ledger ORDER BY key").fetchall()
    finally:
        conn.close()
    return rows


def _sessions(db: Path) -> dict[str, dict[str, object]]:
    store = Store(db)
    try:
        return {s.session_id: dataclasses.asdict(s) for s in store.sessions()}
    finally:
        store.close()


def _counters(db: Path) -> dict[str, int]:
    store = Store(db)
    try:
        return store.counters()
    finally:
        store.close()


def _transcripts(root: Path) -> list[Path]:
    return sorted((root / "projects").rglob("*.jsonl"))


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkilled_ingest_leaves_exactly_the_state_of_one_clean_scan(tmp_path: Path) -> None:
    rng = random.Random(SEED)  # the writer's choices
    plan = random.Random(SEED + 1)  # where the kills go
    root = tmp_path / "claude"
    db = tmp_path / "state" / "contextd.db"
    writers = build_writers(root, rng, time.time())
    # A backlog of a few MB before the first start, main files first so that each session's
    # first line is in its own file (Claude Code starts the main file before any sub-agent).
    for w in writers:
        w.write_piece(INITIAL_BYTES)

    # Where the kills go: the ingest loop held right after its n-th commit ("between"); let go
    # on from there and killed up to 30 ms later, while it works on the next batch or commits
    # it ("during"); or `contextd scan` itself killed at a random time, which may fall in
    # start-up, recovery, reading or a commit ("anytime"; when it finishes first, it is simply
    # started again).
    kinds = ["between", "during", "during", "anytime"] * (KILLS // 4 + 1)
    plan.shuffle(kinds)

    def keep_writing() -> None:
        rng.choice(writers).write_piece(rng.choice((200, 2000)))

    kills = loop_kills = mid_ingest = 0
    started = time.monotonic()
    while kills < KILLS:
        assert time.monotonic() - started < TIME_BUDGET, f"only {kills} kills in the budget"
        big = rng.choice(writers)
        for w in writers:  # a burst for the child to chew on
            w.write_piece(BIG_BURST_BYTES if w is big else BURST_BYTES)
        due = {str(w.path): last_line_end(w.path) for w in writers}
        kind = kinds[kills]
        aim = plan.randint(1, 5 if kind == "between" else 3)
        delay = plan.uniform(0.0, 0.4 if kind == "anytime" else 0.03)
        batch = plan.choice((50, 300, 2000))  # lines: commits after every block, or fewer

        before = committed_cursors(db) if db.exists() else {}
        if kind == "anytime":
            killed = kill_cli_scan(root, db, delay, keep_writing)
        else:
            kill_ingest_loop(Child(root, db, batch), kind, aim, delay, keep_writing)
            killed = True
            loop_kills += 1
        kills += killed

        if db.exists():
            cursors = committed_cursors(db)
            assert_cursors_on_line_boundaries(cursors)
            progressed = any(
                p not in before or c.offset > before[p].offset for p, c in cursors.items()
            )
            behind = [p for p, end in due.items() if p not in cursors or cursors[p].offset < end]
            if kind != "anytime" and progressed and behind:
                mid_ingest += 1  # it was committing, and died before all it was due to commit

    # (`contextd scan` commits about once a second and at the end, so from outside its kills
    # cannot be told apart from kills before or after its work; they are not counted here.)
    assert mid_ingest >= loop_kills // 2, f"{mid_ingest} of {loop_kills} kills were mid-ingest"

    # The writer completes its last lines; the real command finishes the job.
    for w in writers:
        w.finish_line()
    final = run_cli_scan(root, db)
    clean_db = tmp_path / "clean" / "contextd.db"
    clean = run_cli_scan(root, clean_db)

    lines_on_disk = sum(p.read_bytes().count(b"\n") for p in _transcripts(root))
    assert final["sessions"] == clean["sessions"] == 4
    assert final["files"] == clean["files"] == 5
    assert clean["lines"] == lines_on_disk

    # Every line counted exactly once over all the killed runs, and every response, checkpoint
    # and rejected (torn) line too.
    counters = _counters(db)
    assert counters == _counters(clean_db)
    assert counters["transcript_lines"] == lines_on_disk
    assert counters["transcript_malformed"] > 0

    # The same sessions, field by field.
    got, want = _sessions(db), _sessions(clean_db)
    assert sorted(got) == sorted(want)
    for sid, fields in want.items():
        diff = {k: (got[sid][k], v) for k, v in fields.items() if got[sid][k] != v}
        assert not diff, f"session {sid}: fields differ as (after kills, clean): {diff}"
    assert {s["status"] for s in want.values()} == {"active", "expired"}
    assert all(s["checkpoints"] and s["responses"] and s["tool_calls"] for s in want.values())

    # The same ledger: each response and tool call once, with its largest output count.
    assert _ledger(db) == _ledger(clean_db)

    # The same events per session: kinds and counts, and each event's time and data too.
    events, clean_events = _events_by_session(db), _events_by_session(clean_db)
    kinds_got = {sid: Counter(e[0] for e in es) for sid, es in events.items()}
    assert kinds_got == {sid: Counter(e[0] for e in es) for sid, es in clean_events.items()}
    assert events == clean_events

    # Both databases are sound, and every cursor sits at the end of its (complete) file.
    for path in (db, clean_db):
        cursors = committed_cursors(path)
        assert sorted(cursors) == sorted(str(p) for p in _transcripts(root))
        assert_cursors_on_line_boundaries(cursors)
        for p, cursor in cursors.items():
            assert cursor.offset == Path(p).stat().st_size
