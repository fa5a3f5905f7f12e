"""This machine's local bookkeeping of records (a SQLite file, ``spool.db`` in the state dir).

* ``emitted``: the session-id hashes whose record was written (so a session is recorded once,
  also across restarts; a retention sweep of the record store does not make old sessions
  come back).
* ``outbox``: records waiting to be forwarded to a central contextd (``--forward``). A record
  stays until the central acknowledged it (202), so a crash or a central that is down loses
  nothing; a record sent twice (acknowledgement lost) is a duplicate the central ignores.

Only hashes and records are stored here, never a raw session id.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from contextd.errors import StoreError
from contextd.records.model import SessionRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS emitted (
    session_id_hash TEXT PRIMARY KEY,
    at              REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq             INTEGER PRIMARY KEY,
    identity_hash   TEXT NOT NULL,
    session_id_hash TEXT NOT NULL,
    body            BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    dead            TEXT,
    UNIQUE (identity_hash, session_id_hash)
);
"""


class Spool:
    """The ``emitted`` marks and the forwarding outbox (thread-safe)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            if str(path) != ":memory:":
                self.path.chmod(0o600)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc

    def _run(self, what: str, sql: str, rows: Iterable[Sequence[object]] = ((),)) -> int:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                changed = 0
                for row in rows:
                    changed += db.execute(sql, row).rowcount
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"cannot {what} {self.path}: {exc}") from exc
            return changed

    def emitted(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT session_id_hash FROM emitted")}

    def settle(self, records: Sequence[SessionRecord], now: float, *, forward: bool) -> None:
        """Mark records as emitted and, when forwarding, queue them, in one transaction."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                if forward:
                    db.executemany(
                        "INSERT OR IGNORE INTO outbox (identity_hash, session_id_hash, body) "
                        "VALUES (?, ?, ?)",
                        [(r.identity_hash, r.session_id_hash, r.to_bytes()) for r in records],
                    )
                db.executemany(
                    "INSERT OR IGNORE INTO emitted (session_id_hash, at) VALUES (?, ?)",
                    [(r.session_id_hash, now) for r in records],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"cannot write {self.path}: {exc}") from exc

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest queued records still to send: (seq, JSON body)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM outbox WHERE dead IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), bytes(body)) for seq, body in rows]

    def backlog(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE dead IS NULL").fetchone()
        return int(n)

    def delivered(self, seqs: Sequence[int]) -> int:
        return self._run("update", "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def failed(self, seqs: Sequence[int], reason: str | None = None) -> None:
        """Count a failed attempt; with a ``reason`` the records are set aside (``dead``: the
        central refused them; they stay in the file for inspection, and are not resent)."""
        self._run("update", "UPDATE outbox SET attempts = attempts + 1, dead = ? WHERE seq = ?",
                  [(reason, s) for s in seqs])  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._db.close()
