"""``contextd serve --forward``: two real daemons. The central is stopped while sessions end
on the edge, then started again: every record arrives, exactly once, and the outbox drains."""

from __future__ import annotations

import signal
import sqlite3
import uuid
from pathlib import Path

import pytest

from contextd.records.store import open_record_store
from tests.served import Served
from tests.test_server import wait_for

pytestmark = pytest.mark.slow


def start_pair(
    tmp: Path, central_env: dict[str, str] | None = None
) -> tuple[Served, Served, dict[str, str]]:
    """A central daemon, and an edge forwarding to it (recording at once); the edge's env."""
    central, edge = Served(tmp / "central"), Served(tmp / "edge")
    env = {"CONTEXTD_FORWARD": f"http://127.0.0.1:{central.port}", "CONTEXTD_RECORD_SETTLE": "0"}
    central.start(env=central_env)
    edge.start(env=env)
    return central, edge, env


def stop_all(*daemons: Served) -> None:
    for served in daemons:
        if served.proc is not None and served.proc.poll() is None:
            served.stop()


def end_session(edge: Served, sid: str) -> None:
    for event, extra in (("SessionStart", {"source": "startup"}),
                         ("SessionEnd", {"reason": "logout"})):  # fmt: skip
        status, _ = edge.post("/hooks", {"session_id": sid, "hook_event_name": event,
                                         "cwd": "/home/u/proj", **extra})  # fmt: skip
        assert status == 200


def central_hashes(central: Served) -> list[str]:
    status, body = central.get("/v1/session-records")
    assert status == 200
    rows = body["records"]
    assert isinstance(rows, list)
    return [r["session_id_hash"] for r in rows]


def local_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_records_reach_a_central_that_was_down_exactly_once(
    tmp_path: Path, store_location: str
) -> None:
    """The central keeps its records in SQLite or in PostgreSQL (a team's archive)."""
    central_env = {"CONTEXTD_STORE": store_location}
    central, edge, _ = start_pair(tmp_path, central_env)
    edge_history = edge.db.parent / "history.db"
    spool = edge.db.parent / "spool.db"
    try:
        first = str(uuid.uuid4())
        end_session(edge, first)
        wait_for(lambda: len(central_hashes(central)) == 1, timeout=30)

        assert central.stop() == 0
        later = [str(uuid.uuid4()) for _ in range(5)]
        for sid in later:
            end_session(edge, sid)
        # Recorded on the edge and queued, while nothing answers at the central's address.
        wait_for(lambda: local_rows(edge_history, "SELECT COUNT(*) FROM session_records")
                   == [(6,)], timeout=30)  # fmt: skip
        wait_for(lambda: local_rows(spool, "SELECT COUNT(*) FROM outbox") == [(5,)], timeout=30)

        central.start(env=central_env)
        wait_for(lambda: len(central_hashes(central)) == 6, timeout=30)
        wait_for(lambda: local_rows(spool, "SELECT COUNT(*) FROM outbox") == [(0,)], timeout=30)
    finally:
        stop_all(edge, central)
    archive = open_record_store(store_location)
    try:
        hashes = [r.session_id_hash for r in archive.records()]
    finally:
        archive.close()
    edge_hashes = sorted(str(h) for (h,) in local_rows(
        edge_history, "SELECT session_id_hash FROM session_records"))  # fmt: skip
    assert sorted(hashes) == edge_hashes
    assert len(set(hashes)) == 6


def test_a_killed_edge_loses_and_doubles_nothing(tmp_path: Path) -> None:
    central, edge, env = start_pair(tmp_path)
    try:
        for _ in range(8):
            end_session(edge, str(uuid.uuid4()))
        edge.stop(signal.SIGKILL)  # wherever recording or forwarding was
        edge.start(env=env)
        wait_for(lambda: len(central_hashes(central)) == 8, timeout=30)
        outbox = edge.db.parent / "spool.db"
        wait_for(lambda: local_rows(outbox, "SELECT COUNT(*) FROM outbox") == [(0,)], timeout=30)
        assert len(set(central_hashes(central))) == 8
    finally:
        stop_all(edge, central)
    edge_rows = local_rows(edge.db.parent / "history.db", "SELECT COUNT(*) FROM session_records")
    assert edge_rows == [(8,)]
