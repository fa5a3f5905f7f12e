"""Ended sessions become records: built from the snapshot, written once by the daemon (also
for sessions that ended while it was down), never with a raw id."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from contextd.models import ModelUsage, SessionSnapshot, SessionStatus, TokenCounts
from contextd.records.build import build_record, git_head, project_hash, session_id_hash
from contextd.records.model import SessionRecord
from contextd.records.service import History, HistoryConfig
from contextd.records.store import RecordStore, open_record_store
from contextd.server import build_app
from contextd.store import Store
from tests.test_server import BASE, SID, SID2, hook, make_settings, wait_for

SECRET = b"k" * 32
ME = "0123456789abcdef"


def snapshot(**overrides: object) -> SessionSnapshot:
    values: dict[str, object] = {
        "session_id": SID, "status": SessionStatus.ENDED, "started_at": 1000.0,
        "last_activity": 1900.0, "ended_at": 2000.0, "project": "spotter", "cwd": "/nowhere",
        "model": "claude-opus-4-6", "user": ME, "end_reason": "logout",
        "tokens": TokenCounts(10, 20, 30, 40),
        "by_model": (ModelUsage("claude-opus-4-6", TokenCounts(10, 20, 30, 40), 3),
                     ModelUsage("<synthetic>", TokenCounts(), 1)),
        "tool_calls": 4, "responses": 3, "peak_percent": 91.234, "warn_crossings": 1,
        "critical_crossings": 1, "checkpoints": 1, "tokens_saved": 5000,
        "session_type": "interactive", **overrides,
    }  # fmt: skip
    return SessionSnapshot(**values)  # type: ignore[arg-type]


def test_a_record_carries_hashes_and_figures_never_the_raw_session_id() -> None:
    rec = build_record(snapshot(), secret=SECRET, fallback_identity="f" * 16,
                       cost=Decimal("0.1234567"), branch_sha="b" * 40)  # fmt: skip
    assert rec.identity_hash == ME
    assert rec.session_id_hash == session_id_hash(SECRET, SID) != SID
    assert len(rec.session_id_hash) == 32
    assert SID not in rec.to_bytes().decode()
    assert (rec.started_at, rec.ended_at, rec.status) == (1000.0, 2000.0, "ended")
    assert rec.models == ["claude-opus-4-6"]
    assert (rec.tokens.input, rec.tokens.output, rec.tokens.cache_creation,
            rec.tokens.cache_read) == (10, 20, 30, 40)  # fmt: skip
    assert (rec.cost_usd, rec.peak_percent, rec.branch_sha) == (0.123457, 91.23, "b" * 40)
    assert (rec.checkpoints, rec.tokens_saved, rec.tool_calls) == (1, 5000, 4)
    # The key depends on the install secret: ids do not link across installs.
    other = build_record(snapshot(), secret=b"x" * 32, fallback_identity="f" * 16)
    assert other.session_id_hash != rec.session_id_hash


def test_free_text_in_vocabulary_fields_is_not_recorded() -> None:
    weird = (ModelUsage("weird model name", TokenCounts(1, 1, 1, 1), 1),)
    odd = snapshot(end_reason="because I said so", model="my model", session_type="a b",
                   by_model=weird)  # fmt: skip
    rec = build_record(odd, secret=SECRET, fallback_identity=ME)
    assert (rec.end_reason, rec.model, rec.session_type, rec.models) == ("other", None, None, [])


def test_an_unknown_cost_is_null_and_a_session_without_tokens_costs_zero() -> None:
    assert build_record(snapshot(), secret=SECRET, fallback_identity=ME).cost_usd is None
    idle = snapshot(tokens=TokenCounts(), by_model=())
    assert build_record(idle, secret=SECRET, fallback_identity=ME).cost_usd == 0.0


def test_the_project_can_be_recorded_as_a_keyed_hash() -> None:
    rec = build_record(snapshot(), secret=SECRET, fallback_identity=ME, project_mode="hash")
    assert (rec.project, rec.project_hashed) == (project_hash(SECRET, "spotter"), True)
    assert "spotter" not in rec.to_bytes().decode()


def test_an_expired_session_ends_at_its_last_activity_and_a_live_one_has_no_record() -> None:
    rec = build_record(snapshot(status=SessionStatus.EXPIRED, ended_at=None), secret=SECRET,
                       fallback_identity=ME)  # fmt: skip
    assert (rec.status, rec.ended_at) == ("expired", 1900.0)
    unnamed = build_record(snapshot(user=None), secret=SECRET, fallback_identity="f" * 16)
    assert unnamed.identity_hash == "f" * 16
    with pytest.raises(ValueError, match="active"):
        build_record(snapshot(status=SessionStatus.ACTIVE), secret=SECRET, fallback_identity=ME)


def git_repo(path: Path) -> str:
    path.mkdir(parents=True)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def test_git_head_is_the_checked_out_commit_or_none(tmp_path: Path) -> None:
    sha = git_repo(tmp_path / "repo")
    assert git_head(str(tmp_path / "repo")) == sha
    (tmp_path / "plain").mkdir()
    assert git_head(str(tmp_path / "plain")) is None
    assert git_head(str(tmp_path / "missing")) is None
    assert git_head(None) is None


# -- the daemon --------------------------------------------------------------------------------


def write_transcript(root: Path, sid: str, cwd: Path, at: float) -> None:
    project = root / "projects" / "-tmp-repo"
    project.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(at))
    usage = {"input_tokens": 1000, "cache_read_input_tokens": 150_000,
             "cache_creation_input_tokens": 2000, "output_tokens": 500}  # fmt: skip
    line = {"type": "assistant", "sessionId": sid, "cwd": str(cwd), "timestamp": stamp,
            "requestId": f"req_{sid[:4]}", "version": "2.1.330",
            "message": {"id": f"msg_{sid[:4]}", "model": "claude-opus-4-6", "content": [],
                        "usage": usage}}  # fmt: skip
    (project / f"{sid}.jsonl").write_bytes(orjson.dumps(line) + b"\n")


def records_of(location: str) -> list[SessionRecord]:
    store: RecordStore = open_record_store(location)
    try:
        return store.records()
    finally:
        store.close()


@pytest.fixture
def history_db(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "history.db")


@contextlib.contextmanager
def serve_daemon(daemon: Daemon) -> Iterator[TestClient]:
    with TestClient(build_app(daemon), base_url=BASE) as client:
        wait_for(lambda: daemon.ready and daemon.history is not None)
        yield client


def test_a_session_that_ended_while_the_daemon_was_down_is_recorded_at_start(
    tmp_path: Path, history_db: str
) -> None:
    repo = tmp_path / "repo"
    sha = git_repo(repo)
    write_transcript(tmp_path / "claude", SID, repo, time.time() - 7200)  # expired by now
    daemon = Daemon(make_settings(tmp_path, record_settle=0.0))
    with serve_daemon(daemon) as _:
        assert daemon.history is not None
        store = daemon.history.store
        wait_for(lambda: store.count() == 1)
        (rec,) = store.records()
    assert rec.status == "expired"
    secret = bytes.fromhex((tmp_path / "state" / "install.secret").read_text().strip())
    assert rec.session_id_hash == session_id_hash(secret, SID)
    assert (rec.project, rec.branch_sha, rec.identity_hash) == ("repo", sha, daemon.user)
    assert (rec.tokens.input, rec.tokens.cache_read, rec.tokens.output) == (1000, 150_000, 500)
    assert rec.cost_usd is not None
    assert rec.cost_usd > 0
    assert rec.models == ["claude-opus-4-6"]


def test_a_session_ended_by_its_hook_is_recorded_once_across_restarts(
    tmp_path: Path, history_db: str
) -> None:
    daemon = Daemon(make_settings(tmp_path, record_settle=0.0))
    with serve_daemon(daemon) as client:
        hook(client, "SessionStart", source="startup", model="claude-opus-4-6")
        hook(client, "SessionEnd", reason="clear")
        hook(client, "SessionStart", sid=SID2, source="clear")
        assert daemon.history is not None
        store = daemon.history.store
        wait_for(lambda: store.count() == 1)
        assert store.records()[0].status == "superseded"
        assert store.records()[0].end_reason == "clear"
    again = Daemon(make_settings(tmp_path, record_settle=0.0))
    with serve_daemon(again) as client:
        hook(client, "SessionEnd", sid=SID2, reason="logout")
        assert again.history is not None
        store = again.history.store
        wait_for(lambda: store.count() == 2)
    rows = records_of(history_db)
    assert sorted(r.status for r in rows) == ["ended", "superseded"]
    assert len({r.key for r in rows}) == 2
    # A third start has nothing left to record: both sessions are marked as emitted.
    history = standalone_history(tmp_path, settle=0.0)
    state = Store(tmp_path / "state" / "contextd.db", writer=False)
    try:
        assert history.notice(state.sessions(), time.time() + 3600) == []
    finally:
        state.close()
        history.close()


def standalone_history(tmp_path: Path, settle: float) -> History:
    """A History on a daemon's files, of its own (the daemon's runs on its event loop)."""
    settings = make_settings(tmp_path, record_settle=settle)
    secret = bytes.fromhex((tmp_path / "state" / "install.secret").read_text().strip())
    return History(HistoryConfig.from_settings(settings), secret=secret, local_user=ME,
                   git=lambda _: None)  # fmt: skip


def test_a_session_waits_for_the_settle_time_before_it_is_recorded(tmp_path: Path) -> None:
    daemon = Daemon(make_settings(tmp_path, record_settle=3600.0))
    with serve_daemon(daemon) as client:
        hook(client, "SessionStart", source="startup")
        hook(client, "SessionEnd", reason="logout")
        wait_for(lambda: any(s.status is SessionStatus.ENDED for s in daemon.sessions))
        history = standalone_history(tmp_path, settle=3600.0)
        try:
            now = time.time()
            assert history.notice(daemon.sessions, now) == []
            (due,) = history.notice(daemon.sessions, now + 3601)
            assert due.session_id == SID
            assert history.store.count() == 0
        finally:
            history.close()


def test_the_json_api_marks_the_daemon_users_sessions_is_me(tmp_path: Path) -> None:
    daemon = Daemon(make_settings(tmp_path))
    with serve_daemon(daemon) as client:
        hook(client, "SessionStart", source="startup")
        hook(client, "SessionStart", sid=SID2, source="startup",
             contextd_env={"user_id": "fedcba9876543210"})  # fmt: skip
        rows = client.get("/api/sessions").json()["sessions"]
        assert {r["session_id"]: r["is_me"] for r in rows} == {SID: True, SID2: False}
        assert client.get(f"/api/sessions/{SID}").json()["is_me"] is True
        other = client.get("/api/sessions", params={"user": "fedcba9876543210"}).json()
        assert [r["session_id"] for r in other["sessions"]] == [SID2]
