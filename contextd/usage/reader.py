"""Reads transcripts into usage entries, incrementally and read-only.

:class:`UsageReader` remembers how far it read each ``*.jsonl`` under ``<root>/projects``;
:meth:`~UsageReader.refresh` reads only what was appended since (a file that shrank is read
again from the start), so the live view and the daemon pay for new lines only. Files are taken
in full-path order, as ccusage does, which decides which copy of a response a resumed session
keeps. A last line without its ``\\n`` is counted once it parses as a whole JSON object.

Entries are de-duplicated twice, once per ccusage loader (:class:`DedupMode`): ``session``
entries feed the session report, blocks and the live view, ``daily`` ones the daily report.
They are the same objects; only the dictionaries are doubled.

A **floor** (:attr:`UsageReader.floor_ms`, None by default: the whole history) bounds what is
kept: lines stamped before it are parsed, counted in :attr:`~UsageReader.too_old` and dropped
(old copies a resumed session writes today included), a file last modified more than
:data:`MTIME_SLACK_MS` before it is not even read (its lines cannot be newer than its
modification time, give or take a skewed clock), and :meth:`~UsageReader.prune` raises the
floor and forgets what is now below it. The daemon keeps usage this way (see
:mod:`contextd.usage.service`); the CLI reads everything.

It never writes anything, so it runs next to a daemon (or instead of one) safely.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from contextd.ingest.discovery import transcript_files
from contextd.usage.entries import (
    USAGE_MARK,
    Deduplicator,
    DedupMode,
    Location,
    UsageEntry,
    locate,
    parse_entry,
)

MTIME_SLACK_MS = 3_600_000
"""How far a line's timestamp may be ahead of its file's modification time (clock skew)."""


class UsageReader:
    """Transcripts under ``roots`` → de-duplicated usage entries. Thread-safe."""

    def __init__(self, roots: Sequence[Path], *, floor_ms: int | None = None) -> None:
        self.roots = list(roots)
        self.floor_ms = floor_ms
        """Lines stamped before this are not kept (None: keep everything)."""
        self.too_old = 0
        """Usage lines dropped because they were stamped before the floor."""
        self._offsets: dict[str, int] = {}
        self._session = Deduplicator(DedupMode.SESSION)
        self._daily = Deduplicator(DedupMode.DAILY)
        self._lock = threading.Lock()
        self.lines = 0
        self.generation = 0
        """Bumped by every refresh that added or replaced entries."""

    def refresh(self) -> int:
        """Read what was appended to every transcript; the number of usage lines read."""
        with self._lock:
            read = 0
            for path in transcript_files(self.roots):
                read += self._read(path)
            if read:
                self.generation += 1
            self.lines += read
            return read

    def entries(self, mode: DedupMode = DedupMode.SESSION) -> list[UsageEntry]:
        with self._lock:
            return (self._daily if mode is DedupMode.DAILY else self._session).entries()

    def prune(self, floor_ms: int) -> list[UsageEntry]:
        """Raise the floor to ``floor_ms`` (never lower it) and forget the entries below it;
        the (``session``-mode) entries forgotten."""
        with self._lock:
            if self.floor_ms is not None and floor_ms <= self.floor_ms:
                return []
            self.floor_ms = floor_ms
            self._daily.prune(floor_ms)
            dropped = self._session.prune(floor_ms)
            if dropped:
                self.generation += 1
            return dropped

    def _location(self, path: Path) -> Location | None:
        for root in self.roots:
            projects = root / "projects"
            if path.is_relative_to(projects):
                return locate(path.relative_to(projects).as_posix())
        return None

    def _read(self, path: Path) -> int:
        key = str(path)
        offset = self._offsets.get(key, 0)
        try:
            stat = os.stat(path)
            if stat.st_size == offset:
                return 0  # nothing new: no open, no read
            floor = self.floor_ms
            if floor is not None and stat.st_mtime_ns // 1_000_000 < floor - MTIME_SLACK_MS:
                self._offsets[key] = stat.st_size  # only lines older than the floor in it
                return 0
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == offset:
                    return 0
                if size < offset:
                    offset = 0  # truncated or replaced: read it again
                f.seek(offset)
                data = f.read(size - offset)
        except OSError:
            return 0  # vanished or unreadable: it is looked at again next refresh
        location = self._location(path)
        if location is None:
            self._offsets[key] = offset + len(data)
            return 0
        consumed = data.rfind(b"\n") + 1
        if parse_entry(data[consumed:], location) is not None:
            consumed = len(data)  # a whole last line without its newline
        # Otherwise an unterminated tail is read again (whole) when the file grows.
        self._offsets[key] = offset + consumed
        return self._parse(data[:consumed], location)

    def _parse(self, data: bytes, location: Location) -> int:
        count = too_old = 0
        session, daily = self._session, self._daily
        floor = self.floor_ms if self.floor_ms is not None else -(2**63)
        pos = data.find(USAGE_MARK)
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos) + 1
            stop = data.find(b"\n", pos)
            if stop < 0:
                stop = len(data)
            entry = parse_entry(data[start:stop], location)
            if entry is not None:
                count += 1
                if entry.at_ms < floor:
                    too_old += 1
                else:
                    session.add(entry)
                    daily.add(entry)
            pos = data.find(USAGE_MARK, stop)
        self.too_old += too_old
        return count
