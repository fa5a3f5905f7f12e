"""The daemon's history: records of ended sessions, written once, kept, forwarded, swept.

:class:`History` watches the published sessions. A session that is no longer live
(``ended``, ``superseded`` or ``expired``) and has no record yet waits ``settle`` seconds after
its end (the transcript's last lines and the usage reader catch up) and is then recorded: its
record goes into the record store, its hash into the spool's ``emitted`` marks and, with
``--forward``, into the outbox — store first, marks last, so a crash in between re-emits it on
the next start and the idempotent key makes that harmless. On start, every session of the
state database that ended while the daemon was down (and within the retention period) is
recorded too. A session revived after its record was written keeps that first record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from contextd.config import Settings
from contextd.errors import ContextdError
from contextd.models import SessionSnapshot, SessionStatus
from contextd.records.build import (
    ProjectMode,
    build_record,
    git_head,
    session_costs,
    session_id_hash,
)
from contextd.records.forward import Forwarder
from contextd.records.model import SessionRecord
from contextd.records.spool import Spool
from contextd.records.store import RecordStore, open_record_store
from contextd.usage.service import UsageService

log = logging.getLogger("contextd.history")
DAY = 86_400.0
BRANCH_FRESH = 6 * 3600.0  # a branch SHA is taken only this long after a session ended
BATCH = 500  # sessions recorded per transaction


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    store: str  # a SQLite path or a postgresql:// URL
    spool: Path
    project_mode: ProjectMode = "name"
    settle: float = 30.0
    retention_days: float | None = None
    forward: str | None = None
    forward_token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryConfig:
        state = settings.db.parent
        return cls(
            store=settings.store or str(state / "history.db"), spool=state / "spool.db",
            project_mode="hash" if settings.record_project == "hash" else "name",
            settle=settings.record_settle,
            retention_days=settings.retention_days, forward=settings.forward,
            forward_token=settings.forward_token,
        )  # fmt: skip


def usage_costs(usage: UsageService) -> Callable[[Collection[str]], dict[str, Decimal | None]]:
    """Session costs from the usage reader (read up to now first) and its price table."""

    def costs(session_ids: Collection[str]) -> dict[str, Decimal | None]:
        usage.refresh()
        return session_costs(usage.reader.entries(), usage.table, session_ids)

    return costs


def end_of(snap: SessionSnapshot) -> float:
    return snap.ended_at if snap.ended_at is not None else snap.last_activity


class History:
    """Records of this daemon's ended sessions (and of other machines', received over HTTP)."""

    def __init__(
        self,
        config: HistoryConfig,
        *,
        secret: bytes,
        local_user: str,
        costs: Callable[[Collection[str]], dict[str, Decimal | None]] = lambda _: {},
        git: Callable[[str | None], str | None] = git_head,
    ) -> None:
        self.config = config
        self.secret = secret
        self.local_user = local_user
        self.costs = costs
        self.git = git
        self.store: RecordStore = open_record_store(config.store)
        try:
            self.spool = Spool(config.spool)
        except BaseException:
            self.store.close()
            raise
        self.forwarder = (
            Forwarder(self.spool, config.forward, config.forward_token) if config.forward else None
        )
        self._emitted = self.spool.emitted()
        self._pending: dict[str, SessionSnapshot] = {}
        self._hashes: dict[str, str] = {}
        self._refused: set[str] = set()  # sessions no record can hold (not retried)

    def _hash(self, session_id: str) -> str:
        found = self._hashes.get(session_id)
        if found is None:
            found = self._hashes[session_id] = session_id_hash(self.secret, session_id)
        return found

    def cutoff(self, now: float) -> float | None:
        days = self.config.retention_days
        return now - days * DAY if days is not None else None

    def notice(self, sessions: Iterable[SessionSnapshot], now: float) -> list[SessionSnapshot]:
        """Take note of ended sessions without a record; return those due for recording."""
        cutoff = self.cutoff(now)
        for snap in sessions:
            sid = snap.session_id
            if snap.live:
                self._pending.pop(sid, None)  # revived before its record was written
            elif (self._hash(sid) not in self._emitted and self._hash(sid) not in self._refused
                  and (cutoff is None or end_of(snap) >= cutoff)):  # fmt: skip
                self._pending[sid] = snap
        settle = self.config.settle
        return [
            s for s in self._pending.values()
            if s.status is SessionStatus.EXPIRED or end_of(s) + settle <= now
        ]  # fmt: skip

    def record(self, sessions: Sequence[SessionSnapshot], now: float) -> list[SessionRecord]:
        """Write the records of ended sessions (blocking: git, the stores)."""
        if not sessions:
            return []
        costs = self.costs([s.session_id for s in sessions])
        heads: dict[str | None, str | None] = {}
        records = []
        for snap in sessions:
            # The checkout of a session that ended long ago has likely moved on: no SHA then.
            recent = now - end_of(snap) <= BRANCH_FRESH
            if recent and snap.cwd not in heads:
                heads[snap.cwd] = self.git(snap.cwd)
            try:
                records.append(build_record(
                    snap, secret=self.secret, fallback_identity=self.local_user,
                    project_mode=self.config.project_mode,
                    branch_sha=heads[snap.cwd] if recent else None,
                    cost=costs.get(snap.session_id),
                ))  # fmt: skip
            except ValueError as exc:  # figures no record can hold: say so once, go on
                log.error("session %s cannot be recorded: %s", self._hash(snap.session_id), exc)
                self._refused.add(self._hash(snap.session_id))
                self._pending.pop(snap.session_id, None)
        self.store.add(records)
        self.spool.settle(records, now, forward=self.forwarder is not None)
        recorded = {r.session_id_hash for r in records}
        self._emitted |= recorded
        for snap in sessions:
            if self._hash(snap.session_id) in recorded:
                self._pending.pop(snap.session_id, None)
        return records

    def sweep(self, now: float) -> int:
        cutoff = self.cutoff(now)
        return self.store.sweep(cutoff) if cutoff is not None else 0

    def close(self) -> None:
        self.spool.close()
        self.store.close()

    # -- the daemon's background tasks -------------------------------------------------------

    async def run(
        self,
        sessions: Callable[[], Iterable[SessionSnapshot]],
        stored: Callable[[], Awaitable[list[SessionSnapshot]]] | None,
        clock: Callable[[], float],
        interval: float,
    ) -> None:
        """Record ended sessions every ``interval`` seconds; first those of ``stored`` (the
        state database's, read once: sessions that ended while the daemon was down)."""
        if stored is not None:
            with contextlib.suppress(ContextdError):
                self.notice(await stored(), clock())
        swept_at = 0.0
        while True:
            now = clock()
            try:
                due = self.notice(sessions(), now)
                for start in range(0, len(due), BATCH):
                    chunk = due[start : start + BATCH]
                    written = await asyncio.to_thread(self.record, chunk, now)
                    log.info("recorded %d ended sessions", len(written))
                    if written and self.forwarder is not None:
                        # Here, on the event loop: an asyncio.Event set from the thread
                        # ``record`` runs on wakes nobody until the loop next turns.
                        self.forwarder.wake.set()
                if now - swept_at >= 3600 and self.config.retention_days is not None:
                    removed = await asyncio.to_thread(self.sweep, now)
                    swept_at = now
                    if removed:
                        log.info("retention: removed %d records", removed)
            except ContextdError as exc:
                log.error("history: %s", exc)
            except Exception:  # a top-level loop: log and go on
                log.exception("history: recording failed")
            await asyncio.sleep(interval)
