"""Where session-end records are kept: SQLite (default) or PostgreSQL (a team's archive).

Both backends run the same SQL (:data:`MIGRATIONS`, numbered, applied in order and recorded in
``record_schema``) on a DB-API connection; only the placeholder style and the way a migration
takes its lock differ. The table:

``session_records (identity_hash, session_id_hash, ended_at, started_at, project, session_type,
received_at, body)`` with the primary key ``(identity_hash, session_id_hash)`` — the idempotency
key: inserting a record whose key is there changes nothing (``ON CONFLICT DO NOTHING``) and
counts as a duplicate — an index ``(identity_hash, ended_at)`` for one identity's history over
time and an index ``(ended_at)`` for the retention sweep. ``body`` is the record's JSON.

:func:`open_record_store` picks the backend from the ``store`` setting: a
``postgresql://`` (or ``postgres://``) URL, else the path of a SQLite file. PostgreSQL needs the
optional ``psycopg`` driver (``pip install 'contextd[postgresql]'``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from contextd.errors import ConfigError, SchemaVersionError, StoreError
from contextd.records.model import SessionRecord, record_from_bytes

if TYPE_CHECKING:
    import psycopg

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1
        """CREATE TABLE session_records (
            identity_hash   TEXT NOT NULL,
            session_id_hash TEXT NOT NULL,
            ended_at        DOUBLE PRECISION NOT NULL,
            started_at      DOUBLE PRECISION NOT NULL,
            project         TEXT,
            session_type    TEXT,
            received_at     DOUBLE PRECISION NOT NULL,
            body            TEXT NOT NULL,
            PRIMARY KEY (identity_hash, session_id_hash)
        )""",
        "CREATE INDEX session_records_by_identity ON session_records (identity_hash, ended_at)",
        "CREATE INDEX session_records_by_end ON session_records (ended_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_INSERT = (
    "INSERT INTO session_records (identity_hash, session_id_hash, ended_at, started_at, project,"
    " session_type, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (identity_hash, session_id_hash) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Added:
    """What an insert did: records stored, and records whose key was already there."""

    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """A selection of records: by identity, by end time (``since <= ended_at < until``), by
    project; oldest first, at most ``limit``."""

    identity: str | None = None
    since: float | None = None
    until: float | None = None
    project: str | None = None
    limit: int | None = None


class RecordStore(Protocol):
    """The record store interface both backends implement."""

    location: str

    def add(self, records: Sequence[SessionRecord]) -> Added: ...
    def records(self, query: RecordQuery = ...) -> list[SessionRecord]: ...
    def count(self) -> int: ...
    def sweep(self, before: float) -> int: ...
    def close(self) -> None: ...


class _SqlRecordStore:
    """The SQL both backends share; a subclass provides the connection and transactions."""

    location: str
    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- backend specifics -------------------------------------------------------------------

    def _conn(self) -> Any:
        raise NotImplementedError

    @contextlib.contextmanager
    def _transaction(self, *, migrating: bool = False) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _errors(self) -> tuple[type[Exception], ...]:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    @contextlib.contextmanager
    def _guarded(self, what: str) -> Iterator[Any]:
        with self._lock:
            try:
                yield self._conn()
            except self._errors() as exc:
                raise StoreError(f"cannot {what} record store {self.location}: {exc}") from exc

    def _migrate(self) -> None:
        with self._guarded("migrate") as conn, self._transaction(migrating=True):
            conn.execute("CREATE TABLE IF NOT EXISTS record_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM record_schema").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"record store {self.location} has schema {version}; "
                    f"this contextd knows up to {SCHEMA_VERSION}"
                )
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                conn.execute(self._sql("INSERT INTO record_schema (version) VALUES (?)"),
                             (number,))  # fmt: skip

    def add(self, records: Sequence[SessionRecord]) -> Added:
        """Store records; those whose key is already there are left as they are."""
        if not records:
            return Added(0, 0)
        now = time.time()
        rows = [
            (r.identity_hash, r.session_id_hash, r.ended_at, r.started_at, r.project,
             r.session_type, now, r.to_bytes().decode())
            for r in records
        ]  # fmt: skip
        with self._guarded("write") as conn, self._transaction():
            cursor = conn.cursor()
            cursor.executemany(self._sql(_INSERT), rows)
            accepted = max(0, cursor.rowcount)
        return Added(accepted, len(records) - accepted)

    def records(self, query: RecordQuery = RecordQuery()) -> list[SessionRecord]:
        where, params = _where(query)  # fixed column names; values are parameters
        sql = f"SELECT body FROM session_records{where} ORDER BY ended_at, session_id_hash"  # noqa: S608
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        with self._guarded("read") as conn:
            rows = conn.execute(self._sql(sql), params).fetchall()
        return [record_from_bytes(r[0]) for r in rows]

    def count(self) -> int:
        with self._guarded("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM session_records").fetchone()[0])

    def sweep(self, before: float) -> int:
        """Delete the records that ended before ``before`` (the retention sweep)."""
        with self._guarded("sweep") as conn, self._transaction():
            cursor = conn.execute(self._sql("DELETE FROM session_records WHERE ended_at < ?"),
                                  (before,))  # fmt: skip
            return max(0, int(cursor.rowcount))


def _where(query: RecordQuery) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for column, op, value in (("identity_hash", "=", query.identity),
                              ("ended_at", ">=", query.since), ("ended_at", "<", query.until),
                              ("project", "=", query.project)):  # fmt: skip
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteRecordStore(_SqlRecordStore):
    """Records in a SQLite file (WAL; any number of readers next to the writer)."""

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.location = str(path)
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            if str(path) != ":memory:":
                Path(path).chmod(0o600)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open record store {path}: {exc}") from exc
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        return self._db

    def _errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    @contextlib.contextmanager
    def _transaction(self, *, migrating: bool = False) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresRecordStore(_SqlRecordStore):
    """Records in PostgreSQL: the shared archive of a team's central contextd."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._psycopg = _psycopg()
        self._url = url
        self.location = _redacted(url)
        self._db: psycopg.Connection[Any] = self._connect()
        self._migrate()

    def _connect(self) -> psycopg.Connection[Any]:
        driver = self._psycopg
        try:
            conn: psycopg.Connection[Any] = driver.connect(
                self._url, autocommit=True, connect_timeout=10, application_name="contextd"
            )
        except driver.Error as exc:
            raise StoreError(f"cannot open record store {self.location}: {exc}") from exc
        return conn

    def _conn(self) -> psycopg.Connection[Any]:
        """The connection; a new one when the last was lost (server restarted, network): the
        request that met the loss failed (503, retried by its sender), the next one works."""
        if self._db.closed:
            self._db = self._connect()
        return self._db

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._psycopg.Error,)

    @contextlib.contextmanager
    def _transaction(self, *, migrating: bool = False) -> Iterator[None]:
        with self._db.transaction():
            if migrating:  # two instances starting at once: one migrates, the other waits
                self._db.execute("SELECT pg_advisory_xact_lock(7323)")
            yield

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _psycopg() -> Any:
    try:
        import psycopg  # noqa: PLC0415 (optional: only a PostgreSQL store needs it)
    except ImportError:
        raise ConfigError(
            "store: a PostgreSQL store needs the psycopg driver: pip install 'contextd[postgresql]'"
        ) from None
    return psycopg


def _redacted(url: str) -> str:
    """The URL without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def is_postgres(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def open_record_store(location: str | Path) -> RecordStore:
    """A PostgreSQL store for a ``postgresql://`` URL, else a SQLite file at ``location``."""
    text = str(location)
    if is_postgres(text):
        return PostgresRecordStore(text)
    return SqliteRecordStore(Path(text).expanduser())


def add_all(store: RecordStore, records: Iterable[SessionRecord], batch: int = 1000) -> Added:
    """Add records in batches of ``batch`` (one transaction each)."""
    accepted = duplicates = 0
    chunk: list[SessionRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= batch:
            added = store.add(chunk)
            accepted, duplicates = accepted + added.accepted, duplicates + added.duplicates
            chunk = []
    added = store.add(chunk)
    return Added(accepted + added.accepted, duplicates + added.duplicates)
