"""Reads transcripts into usage entries, incrementally and read-only.

:class:`UsageReader` remembers how far it read each ``*.jsonl`` under ``<root>/projects``;
:meth:`~UsageReader.refresh` reads only what was appended since (a file that shrank is read
again from the start), so the live view and the daemon pay for new lines only. Files are taken
in full-path order, as ccusage does, which decides which copy of a response a resumed session
keeps. A last line without its ``\\n`` is counted once it parses as a whole JSON object.

Entries are de-duplicated twice, once per ccusage loader (:class:`DedupMode`): ``session``
entries feed the session report, blocks and the live view, ``daily`` ones the daily report.
They are the same objects; only the dictionaries are doubled.

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


class UsageReader:
    """Transcripts under ``roots`` → de-duplicated usage entries. Thread-safe."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)
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
            if os.stat(path).st_size == offset:
                return 0  # nothing new: no open, no read
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
        count = 0
        session, daily = self._session, self._daily
        pos = data.find(USAGE_MARK)
        while pos >= 0:
            start = data.rfind(b"\n", 0, pos) + 1
            stop = data.find(b"\n", pos)
            if stop < 0:
                stop = len(data)
            entry = parse_entry(data[start:stop], location)
            if entry is not None:
                count += 1
                session.add(entry)
                daily.add(entry)
            pos = data.find(USAGE_MARK, stop)
        return count
