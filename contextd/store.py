"""SQLite persistence: session state, events, the response ledger and file cursors.

Everything one ingest step produced is written in **one transaction** (:meth:`Store.commit`):
the sessions it changed, the events it emitted, the ledger keys it counted, and the cursors
of the files it read. A crash (even ``kill -9``) at any moment therefore leaves either all of
it or none of it, and a restart resumes exactly after the last committed line.

The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a
process crash; only an operating-system crash or power loss may roll back the last ones, which
the transcripts (still on disk) then replay.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import orjson

from contextd.errors import SchemaVersionError, StoreError, StoreLockedError
from contextd.ingest.tailer import FileCursor
from contextd.models import (
    EventKind,
    ModelUsage,
    SessionEvent,
    SessionSnapshot,
    SessionStatus,
    TokenCounts,
    WindowSource,
)
from contextd.sessions import Changes

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id    TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    last_activity REAL NOT NULL,
    project       TEXT,
    state         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions (status, last_activity);
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    at         REAL NOT NULL,
    kind       TEXT NOT NULL,
    data       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, seq);
CREATE TABLE IF NOT EXISTS ledger (
    key        INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    output     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path        TEXT PRIMARY KEY,
    offset      INTEGER NOT NULL,
    fp_len      INTEGER NOT NULL,
    fingerprint BLOB NOT NULL,
    discarding  INTEGER NOT NULL,
    resets      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_LEDGER_CACHE_LIMIT = 50_000


def _tokens(data: dict[str, int]) -> TokenCounts:
    return TokenCounts(
        data.get("input", 0), data.get("output", 0),
        data.get("cache_creation", 0), data.get("cache_read", 0),
    )  # fmt: skip


def snapshot_to_record(snap: SessionSnapshot) -> bytes:
    """Serialise a snapshot (the persisted form of a session)."""
    return orjson.dumps(
        {
            "session_id": snap.session_id,
            "status": snap.status.value,
            "started_at": snap.started_at,
            "last_activity": snap.last_activity,
            "project": snap.project,
            "cwd": snap.cwd,
            "model": snap.model,
            "user": snap.user,
            "git_branch": snap.git_branch,
            "version": snap.version,
            "entrypoint": snap.entrypoint,
            "ended_at": snap.ended_at,
            "end_reason": snap.end_reason,
            "context_tokens": snap.context_tokens,
            "context_at": snap.context_at,
            "window_tokens": snap.window_tokens,
            "window_source": snap.window_source.value,
            "session_type": snap.session_type,
            "tokens": snap.tokens.as_dict(),
            "sidechain_tokens": snap.sidechain_tokens.as_dict(),
            "by_model": [[m.model, m.tokens.as_dict(), m.responses] for m in snap.by_model],
            "responses": snap.responses,
            "tool_calls": snap.tool_calls,
            "warn_crossings": snap.warn_crossings,
            "critical_crossings": snap.critical_crossings,
            "warn_armed": snap.warn_armed,
            "critical_armed": snap.critical_armed,
            "peak_percent": snap.peak_percent,
            "checkpoints": snap.checkpoints,
            "tokens_saved": snap.tokens_saved,
            "pending_checkpoint": snap.pending_checkpoint,
            "last_checkpoint_at": snap.last_checkpoint_at,
            "last_checkpoint_source": snap.last_checkpoint_source,
            "last_checkpoint_saved": snap.last_checkpoint_saved,
            "superseded_by": snap.superseded_by,
        }
    )


def snapshot_from_record(blob: bytes) -> SessionSnapshot:
    d = orjson.loads(blob)
    return SessionSnapshot(
        session_id=d["session_id"],
        status=SessionStatus(d["status"]),
        started_at=d["started_at"],
        last_activity=d["last_activity"],
        project=d["project"],
        cwd=d["cwd"],
        model=d["model"],
        user=d.get("user"),
        git_branch=d["git_branch"],
        version=d["version"],
        entrypoint=d["entrypoint"],
        ended_at=d["ended_at"],
        end_reason=d["end_reason"],
        context_tokens=d["context_tokens"],
        context_at=d["context_at"],
        window_tokens=d["window_tokens"],
        window_source=WindowSource(d["window_source"]),
        session_type=d.get("session_type"),
        tokens=_tokens(d["tokens"]),
        sidechain_tokens=_tokens(d["sidechain_tokens"]),
        by_model=tuple(ModelUsage(m, _tokens(t), n) for m, t, n in d["by_model"]),
        responses=d["responses"],
        tool_calls=d["tool_calls"],
        warn_crossings=d["warn_crossings"],
        critical_crossings=d["critical_crossings"],
        warn_armed=d["warn_armed"],
        critical_armed=d["critical_armed"],
        peak_percent=d["peak_percent"],
        checkpoints=d["checkpoints"],
        tokens_saved=d["tokens_saved"],
        pending_checkpoint=d["pending_checkpoint"],
        last_checkpoint_at=d.get("last_checkpoint_at"),
        last_checkpoint_source=d.get("last_checkpoint_source"),
        last_checkpoint_saved=d.get("last_checkpoint_saved"),
        superseded_by=d.get("superseded_by"),
    )


def _event(row: tuple[int, str, float, str, bytes]) -> SessionEvent:
    seq, session_id, at, kind, data = row
    return SessionEvent(seq, session_id, at, EventKind(kind), orjson.loads(data))


class SqliteLedger:
    """The response ledger's backend.

    Keys this process read or wrote sit in a dict (bounded); keys committed earlier are known
    through a sorted array of 8-byte integers loaded on first use, so a key that was never
    seen costs a binary search, not a query, and a cold ingest of a whole corpus runs without
    per-line queries. Writes are held until the store commits them with the state they
    produced.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._cache: dict[int, tuple[str, int]] = {}
        self._pending: dict[int, tuple[str, int]] = {}
        self._index: array[int] | None = None

    def _committed(self, key: int) -> bool:
        if self._index is None:
            self._index = array("q", (k for (k,) in self._conn.execute(
                "SELECT key FROM ledger ORDER BY key")))  # fmt: skip
        index = self._index
        at = bisect_left(index, key)
        return at < len(index) and index[at] == key

    def get(self, key: int) -> tuple[str, int] | None:
        found = self._cache.get(key)
        if found is None and self._committed(key):
            row = self._conn.execute(
                "SELECT session_id, output FROM ledger WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                found = self._cache[key] = (row[0], row[1])
        return found

    def put(self, key: int, session_id: str, output_tokens: int) -> None:
        self._cache[key] = self._pending[key] = (session_id, output_tokens)

    @property
    def pending(self) -> bool:
        """Whether writes wait for the next commit."""
        return bool(self._pending)

    def flush(self) -> None:
        if self._pending:
            self._conn.executemany(
                "INSERT OR REPLACE INTO ledger (key, session_id, output) VALUES (?, ?, ?)",
                [(k, s, o) for k, (s, o) in self._pending.items()],
            )

    def committed(self) -> None:
        """The pending writes are committed; bound the cache by folding it into the index."""
        self._pending.clear()
        if len(self._cache) > _LEDGER_CACHE_LIMIT:
            if self._index is not None:
                # Two sorted runs: timsort merges them in linear time, in C.
                self._index = array("q", sorted(chain(self._index, self._cache)))
            self._cache.clear()

    def discard(self) -> None:
        """Forget uncommitted writes (after a failed commit): reload what the table holds."""
        self._pending.clear()
        self._cache.clear()
        self._index = None


def _writer_lock(db: Path) -> int:
    fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreLockedError(f"{db} is being written by another process (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class Store:
    """The state database. One writer (the process that opened it); readers may be many."""

    def __init__(
        self,
        path: Path | str,
        *,
        keep_events: int = 500,
        writer: bool = True,
        autocheckpoint: bool = True,
    ) -> None:
        """Open (creating and migrating) the database.

        Without ``autocheckpoint`` the WAL is never checkpointed inside a commit (where its
        fsync would land on whatever request made that commit); the owner then calls
        :meth:`checkpoint` from another thread.
        ``keep_events`` bounds the events kept per session by :meth:`prune_events`. A
        ``writer`` takes the database's exclusive writer lock (``<db>.lock``): two processes
        ingesting into one database, each with its own cursors in memory, would count lines
        twice, so the second one gets :class:`~contextd.errors.StoreLockedError`.
        """
        self.path = Path(path)
        self.keep_events = keep_events
        self._lock_fd: int | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()
        self._closed = False
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if writer:
                    self._lock_fd = _writer_lock(self.path)
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA cache_size=-8192")  # 8 MiB: the ledger's hot pages
            if not autocheckpoint:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._migrate()
            if str(path) != ":memory:":
                os.chmod(self.path, 0o600)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from exc
        self.ledger = SqliteLedger(self._conn)

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking the writer (PASSIVE), on a
        connection of its own so it can run on another thread than the commits."""
        # The lock keeps close() from closing this connection under a running checkpoint
        # (cancelling the task that started it does not stop its thread).
        with self._checkpoint_lock:
            if self._closed:
                return
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
                )
            try:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot checkpoint {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._checkpoint_lock:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} has schema {version}; this contextd knows up to {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            self._conn.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
            )

    # -- writes ------------------------------------------------------------------------------

    def commit(
        self,
        changes: Changes,
        cursors: Iterable[FileCursor] = (),
        counters: dict[str, int] | None = None,
    ) -> None:
        """Write one ingest step atomically. On failure nothing is written and it raises.

        A step that changed nothing writes nothing (no empty transaction on the hot path).
        """
        cursors = list(cursors)
        counters = {k: v for k, v in (counters or {}).items() if v}
        if not (changes.sessions or changes.events or cursors or counters
                or self.ledger.pending):  # fmt: skip
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if changes.sessions:
                conn.executemany(
                    "INSERT OR REPLACE INTO sessions "
                    "(session_id, status, last_activity, project, state) VALUES (?, ?, ?, ?, ?)",
                    [
                        (s.session_id, s.status.value, s.last_activity, s.project,
                         snapshot_to_record(s))
                        for s in changes.sessions
                    ],
                )  # fmt: skip
            if changes.events:
                conn.executemany(
                    "INSERT INTO events (seq, session_id, at, kind, data) VALUES (?, ?, ?, ?, ?)",
                    [
                        (e.seq, e.session_id, e.at, e.kind.value, orjson.dumps(dict(e.data)))
                        for e in changes.events
                    ],
                )
            self.ledger.flush()
            conn.executemany(
                "INSERT OR REPLACE INTO files "
                "(path, offset, fp_len, fingerprint, discarding, resets) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (c.path, c.offset, c.fp_len, c.fingerprint, int(c.discarding), c.resets)
                    for c in cursors
                ],
            )
            if counters:
                conn.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    list(counters.items()),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.ledger.discard()
            raise StoreError(f"cannot write state database {self.path}: {exc}") from exc
        self.ledger.committed()

    def prune_events(self, session_ids: Iterable[str] | None = None) -> int:
        """Delete all but the newest ``keep_events`` events of the given sessions (or all)."""
        keep = self.keep_events
        if session_ids is None:
            cur = self._conn.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER "
                "(PARTITION BY session_id ORDER BY seq DESC) AS n FROM events) WHERE n > ?)",
                (keep,),
            )
            return cur.rowcount
        removed = 0
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for sid in session_ids:
                cur = self._conn.execute(
                    "DELETE FROM events WHERE session_id = ? AND seq < (SELECT seq FROM events "
                    "WHERE session_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (sid, sid, keep - 1),
                )
                removed += cur.rowcount
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise StoreError(f"cannot prune events in {self.path}: {exc}") from exc
        return removed

    # -- reads -------------------------------------------------------------------------------

    def cursor(self, path: str) -> FileCursor:
        row = self._conn.execute(
            "SELECT offset, fp_len, fingerprint, discarding, resets FROM files WHERE path = ?",
            (path,),
        ).fetchone()
        if row is None:
            return FileCursor(path)
        return FileCursor(path, row[0], row[1], bytes(row[2]), bool(row[3]), row[4])

    def cursors(self) -> dict[str, FileCursor]:
        return {
            r[0]: FileCursor(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5])
            for r in self._conn.execute(
                "SELECT path, offset, fp_len, fingerprint, discarding, resets FROM files"
            )
        }

    def session(self, session_id: str) -> SessionSnapshot | None:
        row = self._conn.execute(
            "SELECT state FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return snapshot_from_record(row[0]) if row else None

    def sessions(self, *, live_only: bool = False) -> list[SessionSnapshot]:
        """Sessions, most recently active first."""
        sql = "SELECT state FROM sessions"
        if live_only:
            sql += " WHERE status IN ('active', 'idle')"
        sql += " ORDER BY last_activity DESC, session_id"
        return [snapshot_from_record(r[0]) for r in self._conn.execute(sql)]

    def events(self, session_id: str | None = None, limit: int = 500) -> list[SessionEvent]:
        """The newest ``limit`` events (of one session, or of all), oldest first."""
        if session_id is None:
            rows = self._conn.execute(
                "SELECT seq, session_id, at, kind, data FROM events ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT seq, session_id, at, kind, data FROM events WHERE session_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        return [_event(r) for r in reversed(rows)]

    def next_seq(self) -> int:
        (top,) = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(top) + 1

    def counters(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, value FROM counters").fetchall())

    def integrity_ok(self) -> bool:
        (result,) = self._conn.execute("PRAGMA integrity_check").fetchone()
        return bool(result == "ok")
