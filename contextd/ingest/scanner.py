"""Transcript ingestion: files → parser → engine → store, one transaction per step.

Large scans (a first ingest of a big corpus) decode files in worker processes: decoding is
independent per file, while de-duplication, the engine and the store stay in this process and
take the workers' results in file order, so the outcome is the same as a sequential scan.

:class:`TranscriptIngestor` reads each file from its committed cursor, feeds complete lines to
the parser and the resulting observations to the :class:`~contextd.sessions.SessionManager`,
and commits the changed sessions, events, ledger keys, cursors and counters together every
``batch_lines`` lines or ``commit_interval`` seconds, and at the end. Sessions that are no longer
live are evicted from memory after each commit and faulted back in from the store when a line
names them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

from contextd.events import Observation
from contextd.ingest.tailer import DEFAULT_MAX_LINE, FileCursor, read_blocks
from contextd.ingest.transcripts import (
    LineDecoder,
    ParseStats,
    Record,
    TranscriptFile,
    TranscriptParser,
)
from contextd.ledger import ResponseLedger
from contextd.sessions import SessionManager
from contextd.store import Store

_KEEP_EXPIRED = 64  # sessions no longer live kept in memory for their next file
_COUNTED = ("lines", "blank", "malformed", "oversize", "responses", "checkpoints")


def _state(cursor: FileCursor) -> tuple[int, int, bool, int]:
    return (cursor.offset, cursor.fp_len, cursor.discarding, cursor.resets)


PARALLEL_MIN_BYTES = 64 * 1024 * 1024  # below this a pool costs more than it saves
_AHEAD = 4  # files decoded ahead of the one being applied, per worker (memory bound)


class DecodedBlock(NamedTuple):
    """A worker's result for one block: its records, the cursor after it, its counters."""

    records: list[Record]
    cursor: FileCursor
    stats: ParseStats


def decode_file(path: str, cursor: FileCursor, max_line: int) -> list[DecodedBlock]:
    """Decode the new blocks of one file (runs in a worker process; reads only)."""
    decoder = LineDecoder()
    file = TranscriptFile.from_path(path)
    out: list[DecodedBlock] = []
    for block, end in read_blocks(cursor, max_line=max_line):
        decoder.stats = ParseStats()
        if block is None:
            decoder.oversize()
            records: list[Record] = []
        else:
            records = decoder.feed_block(block, file)
        cursor.offset = end
        out.append(DecodedBlock(records, replace(cursor), decoder.stats))
    return out


def default_jobs() -> int:
    """Worker processes for large scans: one per CPU, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


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
        batch_lines: int = 200_000,
        commit_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.manager = manager
        self.parser = TranscriptParser(ResponseLedger(store.ledger))
        self.max_line = max_line
        self.batch_lines = batch_lines
        self.commit_interval = commit_interval
        self._dirty: dict[str, FileCursor] = {}
        self._last_commit = time.monotonic()
        self._uncommitted_lines = 0
        self.clock = clock
        self._committed = ParseStats()
        self._cursors: dict[str, FileCursor] | None = None
        self._saved: dict[str, tuple[int, int, bool, int]] = {}
        self._touched: set[str] = set()

    @classmethod
    def open(
        cls,
        store: Store,
        manager: SessionManager | None = None,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        batch_lines: int = 200_000,
        commit_interval: float = 1.0,
    ) -> TranscriptIngestor:
        """An ingestor whose engine holds the store's live sessions and recent events."""
        if manager is None:
            manager = SessionManager(next_seq=store.next_seq())
        for snap in store.sessions(live_only=True):
            manager.adopt(snap, store.events(snap.session_id, manager.config.session_events))
        manager.adopt_global_events(store.events(None, manager.config.global_events))
        return cls(store, manager, max_line=max_line, batch_lines=batch_lines,
                   commit_interval=commit_interval)  # fmt: skip

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

    def apply(self, observations: list[Observation], now: float) -> None:
        """Apply observations from any source, faulting evicted sessions back in first."""
        manager = self.manager
        touched = self._touched
        for obs in observations:
            sid = obs.session_id
            if sid not in touched:
                touched.add(sid)
                if not manager.knows(sid):
                    # Evicted (or from an earlier run): fault its state back in. Its older events
                    # stay in the store; the in-memory buffer only collects new ones.
                    snap = self.store.session(sid)
                    if snap is not None:
                        manager.adopt(snap)
            elif not manager.knows(sid):
                snap = self.store.session(sid)
                if snap is not None:
                    manager.adopt(snap)
            manager.apply(obs, now)

    def commit(self, extra: Mapping[str, int] | None = None) -> None:
        """Persist everything applied so far, with the cursors of the lines it came from (and
        ``extra`` counters), in one transaction."""
        stats, done = self.parser.stats, self._committed
        counters = {
            f"transcript_{name}": getattr(stats, name) - getattr(done, name) for name in _COUNTED
        }
        if extra:
            counters.update(extra)
        for reason, value in stats.by_reason.items():
            counters[f"transcript_rejected_{reason}"] = value - done.by_reason.get(reason, 0)
        cursors = [c for c in self._dirty.values() if self._saved.get(c.path) != _state(c)]
        self.store.commit(self.manager.drain(), cursors, counters)
        for cursor in cursors:
            self._saved[cursor.path] = _state(cursor)
        self._dirty.clear()
        for f in fields(ParseStats):
            value = getattr(stats, f.name)
            setattr(done, f.name, dict(value) if isinstance(value, dict) else value)
        self.manager.evict(keep=_KEEP_EXPIRED)
        self._last_commit = time.monotonic()
        self._uncommitted_lines = 0

    def _maybe_commit(self) -> None:
        if (
            self._uncommitted_lines >= self.batch_lines
            or time.monotonic() - self._last_commit >= self.commit_interval
        ):
            self.commit()

    def ingest_file(
        self, path: Path | str, now: float | None = None, *, commit: bool = True
    ) -> int:
        """Read and apply the new complete lines of one file; return how many were read.

        With ``commit`` (the default) everything is committed before returning; without it the
        caller commits (:meth:`scan` batches files into transactions of about
        ``commit_interval`` seconds, which a cold ingest of a large corpus needs: hashed ledger
        keys have no locality, so every commit rewrites most of the ledger's pages).
        """
        now = self.clock() if now is None else now
        key = str(path)
        cursor = self._dirty[key] = self._cursor(key)  # a reset alone must be committed too
        file = TranscriptFile.from_path(key)
        parser = self.parser
        count = 0
        for block, end in read_blocks(cursor, max_line=self.max_line):
            before = parser.stats.lines
            if block is None:
                parser.oversize()
            else:
                observations = parser.feed_block(block, file)
                if observations:
                    self.apply(observations, now)
            cursor.offset = end
            self._dirty[key] = cursor  # (again: a commit inside this file clears the set)
            lines = parser.stats.lines - before
            count += lines
            self._uncommitted_lines += lines
            if self._uncommitted_lines >= self.batch_lines:
                self._maybe_commit()
        if commit:
            self.commit()
        return count

    def _unread_bytes(self, paths: list[str]) -> int:
        total = 0
        for path in paths:
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            offset = self._cursor(path).offset
            total += size - offset if size >= offset else size
        return total

    def _scan_parallel(self, paths: list[str], now: float, jobs: int, result: ScanResult) -> None:
        # fork is cheap and needs no helper process, but is unsafe once threads run (the
        # daemon's); a single-threaded process (the CLI) forks, others spawn.
        method = "fork" if threading.active_count() == 1 else "spawn"
        context = multiprocessing.get_context(method)
        resolver = self.parser.resolver
        stats = self.parser.stats
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending: deque[tuple[str, Future[list[DecodedBlock]]]] = deque()
            queue = iter(paths)

            def submit() -> None:
                path = next(queue, None)
                if path is not None:
                    snapshot = replace(self._cursor(path))
                    pending.append((path, pool.submit(decode_file, path, snapshot, self.max_line)))

            for _ in range(jobs * _AHEAD):
                submit()
            while pending:
                path, future = pending.popleft()
                submit()
                cursor = self._cursor(path)
                resets_before = cursor.resets
                read = 0
                for decoded in future.result():
                    lines_before = stats.lines
                    stats.add(decoded.stats)
                    observations = resolver.resolve(decoded.records)
                    if observations:
                        self.apply(observations, now)
                    done = decoded.cursor
                    cursor.offset, cursor.fp_len, cursor.fingerprint = (
                        done.offset, done.fp_len, done.fingerprint,
                    )  # fmt: skip
                    cursor.discarding, cursor.resets = done.discarding, done.resets
                    self._dirty[path] = cursor
                    lines = stats.lines - lines_before
                    read += lines
                    self._uncommitted_lines += lines
                self._dirty[path] = cursor
                result.lines += read
                result.files_read += read > 0
                result.resets += cursor.resets - resets_before
                self._maybe_commit()

    def scan(self, files: Iterable[Path], now: float | None = None, *, jobs: int = 1) -> ScanResult:
        """Ingest every file's new lines, then age live sessions; return what was done.

        With ``jobs`` > 1 and at least :data:`PARALLEL_MIN_BYTES` to read, files are decoded
        by that many worker processes.
        """
        started = time.perf_counter()
        now = self.clock() if now is None else now
        paths = [str(p) for p in files]
        result = ScanResult(files=len(paths))
        if jobs > 1 and self._unread_bytes(paths) >= PARALLEL_MIN_BYTES:
            self._scan_parallel(paths, now, jobs, result)
        else:
            for path in paths:
                before = self._cursor(path).resets
                read = self.ingest_file(path, now, commit=False)
                result.lines += read
                result.files_read += read > 0
                result.resets += self._cursor(path).resets - before
                self._maybe_commit()
        self.manager.tick(now)
        self.commit()
        if self._touched:
            self.store.prune_events(self._touched)
            self._touched.clear()
        result.seconds = time.perf_counter() - started
        return result
