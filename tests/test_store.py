"""The SQLite store: round trips, atomic commits, schema guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contextd.errors import SchemaVersionError, StoreError
from contextd.events import Compaction, Response
from contextd.ingest.tailer import FileCursor
from contextd.models import TokenCounts
from contextd.sessions import SessionManager
from contextd.store import Store

T0 = 1_700_000_000.0


def _manager_with_state() -> SessionManager:
    m = SessionManager()
    m.apply(Response("s1", T0, "claude-opus-4-6", TokenCounts(5, 6, 7, 150_000), 150_007, True), T0)
    m.apply(Compaction("s1", T0 + 1, "auto", pre_tokens=150_007), T0 + 1)
    m.apply(Response("s1", T0 + 2, "claude-haiku-4-5", TokenCounts(1, 2, 3, 4), 8, False), T0 + 2)
    return m


def test_sessions_events_cursors_and_counters_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    m = _manager_with_state()
    cursor = FileCursor("/x.jsonl", offset=120, fp_len=120, fingerprint=b"\x01" * 16, resets=2)
    store.commit(m.drain(), [cursor], {"transcript_lines": 3})
    store.close()
    again = Store(tmp_path / "state.db")
    assert again.session("s1") == m.session("s1")
    assert again.events("s1") == list(m.events("s1"))
    assert again.cursor("/x.jsonl") == cursor
    assert again.counters() == {"transcript_lines": 3}
    assert again.next_seq() == m.next_seq
    assert again.integrity_ok()


def test_a_failed_commit_writes_nothing_and_forgets_uncommitted_ledger_keys(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    m = _manager_with_state()
    store.ledger.put(42, "s1", 10)
    changes = m.drain()
    duplicate = changes.events[0]
    bad = type(changes)(changes.sessions, (*changes.events, duplicate))  # seq collides
    with pytest.raises(StoreError, match="cannot write"):
        store.commit(bad, [FileCursor("/x.jsonl", offset=10)])
    assert store.sessions() == []
    assert store.events() == []
    assert store.cursor("/x.jsonl").offset == 0
    assert store.ledger.get(42) is None
    store.commit(changes)  # the store is still usable
    assert store.session("s1") is not None


def test_database_file_is_private(tmp_path: Path) -> None:
    Store(tmp_path / "sub" / "state.db").close()
    assert (tmp_path / "sub" / "state.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError, match="schema 99"):
        Store(path)


def test_a_path_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(path)


def test_prune_keeps_the_newest_events_per_session(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", keep_events=5)
    m = SessionManager()
    for i in range(30):
        m.apply(Response("a", T0 + i, "m", TokenCounts(1), 1, True), T0 + i)
        m.apply(Response("b", T0 + i, "m", TokenCounts(1), 1, True), T0 + i)
    store.commit(m.drain())
    assert store.prune_events() > 0
    assert [e.seq for e in store.events("a")] == [e.seq for e in list(m.events("a"))[-5:]]
    assert len(store.events("b")) == 5


def test_prune_of_named_sessions_leaves_the_others_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", keep_events=10)
    m = SessionManager()
    for i in range(25):
        m.apply(Response("a", T0 + i, "m", TokenCounts(1), 1, True), T0 + i)
        m.apply(Response("b", T0 + i, "m", TokenCounts(1), 1, True), T0 + i)
    store.commit(m.drain())
    before_b = store.events("b", limit=100)
    assert store.prune_events(["a"]) == len(m.events("a")) - 10
    assert [e.seq for e in store.events("a", limit=100)] == [
        e.seq for e in list(m.events("a"))[-10:]
    ]
    assert store.events("b", limit=100) == before_b


def test_ledger_finds_keys_committed_by_an_earlier_process(tmp_path: Path) -> None:
    first = Store(tmp_path / "state.db")
    for key in range(0, 3000, 3):
        first.ledger.put(key, "s", key)
    first.commit(SessionManager().drain())
    first.close()
    second = Store(tmp_path / "state.db")
    assert second.ledger.get(2997) == ("s", 2997)
    assert second.ledger.get(2998) is None
    assert second.ledger.get(-5) is None


def test_closing_waits_for_a_checkpoint_running_on_another_thread(tmp_path: Path) -> None:
    """The daemon checkpoints on a worker thread; shutdown must not close that connection
    under it (that crashed the process), and a checkpoint after close does nothing."""
    import threading  # noqa: PLC0415

    store = Store(tmp_path / "state.db", autocheckpoint=False)
    m = SessionManager()
    for i in range(200):
        m.apply(Response(f"s{i}", T0, "m", TokenCounts(1), 1, True), T0)
    store.commit(m.drain())
    errors: list[BaseException] = []

    def checkpoint_loop() -> None:
        try:
            for _ in range(200):
                store.checkpoint()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    worker = threading.Thread(target=checkpoint_loop)
    worker.start()
    store.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    store.checkpoint()  # after close: a no-op, not a crash


def test_a_step_that_changed_nothing_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    m = _manager_with_state()
    store.commit(m.drain(), [FileCursor("/x.jsonl", offset=10)], {"transcript_lines": 2})
    before = store._conn.total_changes
    store.commit(m.drain(), [], {"transcript_lines": 0})
    assert store._conn.total_changes == before
    store.commit(m.drain(), [], {"transcript_lines": 1})  # a counter alone is a change
    assert store.counters()["transcript_lines"] == 3


def test_the_session_type_survives_the_record_round_trip() -> None:
    from contextd.models import SessionSnapshot, SessionStatus  # noqa: PLC0415
    from contextd.store import snapshot_from_record, snapshot_to_record  # noqa: PLC0415

    snap = SessionSnapshot("s", SessionStatus.ACTIVE, 1.0, 2.0, session_type="jupyter")
    assert snapshot_from_record(snapshot_to_record(snap)) == snap
    legacy = snapshot_to_record(SessionSnapshot("s", SessionStatus.ACTIVE, 1.0, 2.0))
    assert snapshot_from_record(legacy.replace(b',"session_type":null', b"")).session_type is None
