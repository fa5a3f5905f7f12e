"""The forwarder's outcomes (delivered, refused, central down or failing, backoff), the
retention sweep, and the history options' errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from contextd.cli import main
from contextd.errors import ConfigError, QueryError, SourceUnreachableError, StoreError
from contextd.models import SessionSnapshot, SessionStatus
from contextd.records.forward import Forwarder, events_url
from contextd.records.service import History, HistoryConfig
from contextd.records.spool import Spool
from contextd.records.store import Added, RecordQuery, open_record_store
from tests.history.central import capturing
from tests.history.records import record
from tests.postgres_server import PostgresServer
from tests.served import free_port


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    queued = Spool(tmp_path / "spool.db")
    queued.settle([record(n) for n in range(5)] + [record(9, project="poison")], time.time(),
                  forward=True)  # fmt: skip
    return queued


def test_delivered_records_leave_the_outbox(spool: Spool) -> None:
    port = free_port()
    with capturing(port) as central:
        forwarder = Forwarder(spool, f"http://127.0.0.1:{port}/", batch=4)
        assert forwarder.send_pending() == 6
    assert spool.backlog() == 0
    assert central.paths == ["/v1/session-events", "/v1/session-events"]
    assert central.tokens == [None, None]
    sent = [r for body in central.bodies for r in json.loads(body)["records"]]
    assert [r["session_id_hash"] for r in sent] == [record(n).session_id_hash
                                                    for n in (0, 1, 2, 3, 4, 9)]  # fmt: skip


def test_a_record_the_central_refuses_is_set_aside_and_the_rest_delivered(spool: Spool) -> None:
    port = free_port()
    with capturing(port, lambda body: 422 if b"poison" in body else 202) as central:
        forwarder = Forwarder(spool, f"http://127.0.0.1:{port}", token="fwd-t0ken")  # noqa: S106
        assert forwarder.send_pending() == 5
        assert forwarder.send_pending() == 0  # not retried
    assert set(central.tokens) == {"Bearer fwd-t0ken"}
    assert spool.backlog() == 0
    assert spool.pending(10) == []


@pytest.mark.parametrize("status", [500, 503, 401, 429])
def test_a_failing_central_keeps_every_record(spool: Spool, status: int) -> None:
    port = free_port()
    with capturing(port, lambda _: status):
        forwarder = Forwarder(spool, f"http://127.0.0.1:{port}")
        with pytest.raises(QueryError, match=str(status)):
            forwarder.send_pending()
    assert spool.backlog() == 6


def test_a_central_that_is_down_keeps_every_record_and_backs_off_up_to_a_bound(
    spool: Spool,
) -> None:
    forwarder = Forwarder(spool, f"http://127.0.0.1:{free_port()}", timeout=2, base_delay=0.5,
                          max_delay=60)  # fmt: skip
    with pytest.raises(SourceUnreachableError):
        forwarder.send_pending()
    assert spool.backlog() == 6
    assert forwarder.delay() == 0.0
    delays = []
    for failures in (1, 2, 3, 8, 1000):
        forwarder.failures = failures
        delays.append(forwarder.delay())
    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert 1.0 <= delays[2] <= 2.0
    assert all(30 <= d <= 60 for d in delays[3:])


@pytest.mark.parametrize("url", ["ftp://central", "central:7323", "http://", "http://h:99999"])
def test_a_bad_forward_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="--forward"):
        events_url(url)


def test_the_endpoint_path_is_added_once() -> None:
    assert events_url("https://c.example/base/")[1:] == (
        "c.example",
        443,
        "/base/v1/session-events",
    )
    assert events_url("http://c:8/v1/session-events")[1:] == ("c", 8, "/v1/session-events")


def test_the_retention_sweep_deletes_records_that_ended_before_the_cutoff(
    store_location: str,
) -> None:
    store = open_record_store(store_location)
    try:
        store.add([record(n) for n in range(6)])
        assert store.sweep(record(3).ended_at) == 3
        assert [r.session_id_hash for r in store.records()] == [
            record(n).session_id_hash for n in (3, 4, 5)
        ]
        assert store.records(RecordQuery(limit=1))[0].session_id_hash == record(3).session_id_hash
    finally:
        store.close()


def test_sessions_that_ended_before_the_retention_period_are_not_recorded(
    tmp_path: Path,
) -> None:
    config = HistoryConfig(store=str(tmp_path / "h.db"), spool=tmp_path / "s.db",
                           retention_days=30, settle=0)  # fmt: skip
    history = History(config, secret=b"k" * 32, local_user="0123456789abcdef",
                      git=lambda _: None)  # fmt: skip
    now = 1_790_000_000.0
    old = SessionSnapshot("old-session", SessionStatus.ENDED, now - 41 * 86_400,
                          now - 40 * 86_400, ended_at=now - 40 * 86_400)  # fmt: skip
    recent = SessionSnapshot("recent-session", SessionStatus.EXPIRED, now - 7200, now - 3700)
    try:
        due = history.notice([old, recent], now)
        assert [s.session_id for s in due] == ["recent-session"]
        (written,) = history.record(due, now)
        assert written.status == "expired"
        assert history.notice([old, recent], now) == []  # recorded once
        history.store.add([record(0)])  # ended in 2026-05: long before `now` - 30 days
        assert history.sweep(now) == 1
        assert history.store.count() == 1
    finally:
        history.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("--retention-days", "-3"), ("--retention-days", "soon"), ("--forward", "ftp://x")],
)
def test_bad_serve_history_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code = main(["serve", "--db", str(tmp_path / "c.db"), "--config-dir", str(tmp_path),
                 "--port", str(free_port()), option, value])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert option in err


def test_a_crash_between_store_and_marks_re_emits_harmlessly(tmp_path: Path) -> None:
    config = HistoryConfig(store=str(tmp_path / "h.db"), spool=tmp_path / "s.db", settle=0,
                           forward="http://127.0.0.1:9")  # fmt: skip
    snap = SessionSnapshot("crash-session", SessionStatus.EXPIRED, 1000.0, 2000.0)
    first = History(config, secret=b"k" * 32, local_user="0123456789abcdef",
                    git=lambda _: None)  # fmt: skip
    try:
        (due,) = first.notice([snap], 9999.0)
        (written,) = first.record([due], 9999.0)
        # What a crash after the store write and before the marks leaves behind:
        first.spool._run("undo", "DELETE FROM emitted")
        first.spool.delivered([seq for seq, _ in first.spool.pending(10)])
    finally:
        first.close()
    second = History(config, secret=b"k" * 32, local_user="0123456789abcdef",
                     git=lambda _: None)  # fmt: skip
    try:
        (again,) = second.notice([snap], 9999.0)
        (rewritten,) = second.record([again], 9999.0)
        assert rewritten.key == written.key
        assert second.store.count() == 1  # the store kept the first; nothing doubled
        assert second.spool.backlog() == 1  # queued again: the central counts a duplicate
        assert second.notice([snap], 9999.0) == []
    finally:
        second.close()


def test_a_postgres_store_reconnects_after_losing_its_connection(
    postgres_server: PostgresServer,
) -> None:
    store = open_record_store(postgres_server.database("reconnect"))
    try:
        store.add([record(0)])
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'contextd'")  # fmt: skip
        with pytest.raises(StoreError):
            store.add([record(1)])  # the request that meets the loss fails: not acknowledged
        assert store.add([record(1), record(0)]) == Added(1, 1)  # the next one reconnects
        assert store.count() == 2
    finally:
        store.close()


def test_git_runs_once_per_directory_and_not_for_sessions_long_over(tmp_path: Path) -> None:
    asked: list[str | None] = []

    def git(cwd: str | None) -> str | None:
        asked.append(cwd)
        return "c" * 40

    config = HistoryConfig(store=str(tmp_path / "h.db"), spool=tmp_path / "s.db", settle=0)
    history = History(config, secret=b"k" * 32, local_user="0123456789abcdef", git=git)
    now = 1_790_000_000.0
    snaps = [SessionSnapshot(f"s{n}", SessionStatus.EXPIRED, now - 9000, now - 3700,
                             cwd="/work/repo") for n in range(3)]  # fmt: skip
    old = SessionSnapshot("old", SessionStatus.EXPIRED, now - 3 * 86_400, now - 2 * 86_400,
                          cwd="/work/repo")  # fmt: skip
    try:
        written = history.record([*snaps, old], now)
    finally:
        history.close()
    assert asked == ["/work/repo"]
    assert [r.branch_sha for r in written] == ["c" * 40] * 3 + [None]


def test_a_session_no_record_can_hold_is_skipped_once_not_retried(tmp_path: Path) -> None:
    config = HistoryConfig(store=str(tmp_path / "h.db"), spool=tmp_path / "s.db", settle=0)
    history = History(config, secret=b"k" * 32, local_user="0123456789abcdef",
                      git=lambda _: None)  # fmt: skip
    bad = SessionSnapshot("bad", SessionStatus.EXPIRED, -50.0, -10.0)  # before the epoch
    good = SessionSnapshot("good", SessionStatus.EXPIRED, 1000.0, 2000.0, peak_percent=1e9)
    try:
        due = history.notice([bad, good], 9999.0)
        written = history.record(due, 9999.0)
        assert [r.peak_percent for r in written] == [10_000.0]  # clamped to the bound
        assert history.store.count() == 1
        assert history.notice([bad, good], 9999.0) == []
    finally:
        history.close()
