"""Transcript ingestion: files → parser → engine → store, one transaction per step.

:class:`TranscriptIngestor` reads each file from its committed cursor, feeds complete lines to
the parser and the resulting observations to the :class:`~contextd.sessions.SessionManager`,
and commits the changed sessions, events, ledger keys, cursors and counters together every
``batch_lines`` lines and at the end of each file. Sessions that are no longer live are evicted
from memory after each commit and faulted back in from the store when a line names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from contextd.events import Observation
from contextd.ingest.tailer import DEFAULT_MAX_LINE, FileCursor, read_lines
from contextd.ingest.transcripts import ParseStats, TranscriptFile, TranscriptParser
from contextd.ledger import ResponseLedger
from contextd.sessions import SessionManager
from contextd.store import Store

_COUNTED = ("lines", "blank", "malformed", "oversize", "responses", "checkpoints")


def _state(cursor: FileCursor) -> tuple[int, int, bool, int]:
    return (cursor.offset, cursor.fp_len, cursor.discarding, cursor.resets)


@dataclass(slots=True)
class ScanResult:
    """What one scan did."""

    files: int = 0
    files_read: int = 0
    lines: int = 0
    resets: int = 0
    seconds: float = 0.0


class TranscriptIngestor:
    """Owns the engine's transcript source for one store."""

    def __init__(
        self,
        store: Store,
        manager: SessionManager,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        batch_lines: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.manager = manager
        self.parser = TranscriptParser(ResponseLedger(store.ledger))
        self.max_line = max_line
        self.batch_lines = batch_lines
        self.clock = clock
        self._committed = ParseStats()
        self._cursors: dict[str, FileCursor] | None = None
        self._saved: dict[str, tuple[int, int, bool, int]] = {}

    @classmethod
    def open(
        cls, store: Store, manager: SessionManager | None = None, **kwargs: object
    ) -> TranscriptIngestor:
        """An ingestor whose engine holds the store's live sessions and recent events."""
        if manager is None:
            manager = SessionManager(next_seq=store.next_seq())
        for snap in store.sessions(live_only=True):
            manager.adopt(snap, store.events(snap.session_id, manager.config.session_events))
        manager.adopt_global_events(store.events(None, manager.config.global_events))
        return cls(store, manager, **kwargs)  # type: ignore[arg-type]

    @property
    def stats(self) -> ParseStats:
        return self.parser.stats

    def _cursor(self, path: str) -> FileCursor:
        if self._cursors is None:
            self._cursors = self.store.cursors()
            self._saved = {p: _state(c) for p, c in self._cursors.items()}
        cursor = self._cursors.get(path)
        if cursor is None:
            cursor = self._cursors[path] = FileCursor(path)
        return cursor

    def _apply(self, observations: list[Observation], now: float) -> None:
        manager = self.manager
        for obs in observations:
            if not manager.knows(obs.session_id):
                snap = self.store.session(obs.session_id)
                if snap is not None:
                    events = self.store.events(obs.session_id, manager.config.session_events)
                    manager.adopt(snap, events)
            manager.apply(obs, now)

    def commit(self, cursors: Iterable[FileCursor] = ()) -> None:
        """Persist everything applied so far, with the given cursors, in one transaction."""
        stats, done = self.parser.stats, self._committed
        counters = {
            f"transcript_{name}": getattr(stats, name) - getattr(done, name) for name in _COUNTED
        }
        for reason, value in stats.by_reason.items():
            counters[f"transcript_rejected_{reason}"] = value - done.by_reason.get(reason, 0)
        cursors = tuple(cursors)
        self.store.commit(self.manager.drain(), cursors, counters)
        for cursor in cursors:
            self._saved[cursor.path] = _state(cursor)
        for f in fields(ParseStats):
            value = getattr(stats, f.name)
            setattr(done, f.name, dict(value) if isinstance(value, dict) else value)
        self.manager.evict()

    def ingest_file(self, path: Path | str, now: float | None = None) -> int:
        """Read and apply the new complete lines of one file; return how many were read."""
        now = self.clock() if now is None else now
        key = str(path)
        cursor = self._cursor(key)
        file = TranscriptFile.from_path(key)
        parser = self.parser
        count = 0
        pending = 0
        for line, end in read_lines(cursor, max_line=self.max_line):
            if line is None:
                parser.oversize()
            else:
                observations = parser.feed(line, file)
                if observations:
                    self._apply(observations, now)
            cursor.offset = end
            count += 1
            pending += 1
            if pending >= self.batch_lines:
                self._apply(parser.flush(file), now)
                self.commit((cursor,))
                pending = 0
        self._apply(parser.flush(file), now)
        if pending or self._saved.get(key) != _state(cursor):
            self.commit((cursor,))
        return count

    def scan(self, files: Iterable[Path], now: float | None = None) -> ScanResult:
        """Ingest every file's new lines, then age live sessions; return what was done."""
        started = time.perf_counter()
        now = self.clock() if now is None else now
        result = ScanResult()
        for path in files:
            result.files += 1
            before = self._cursor(str(path)).resets
            read = self.ingest_file(path, now)
            result.lines += read
            result.files_read += read > 0
            result.resets += self._cursor(str(path)).resets - before
        self.manager.tick(now)
        self.commit()
        result.seconds = time.perf_counter() - started
        return result
