"""Incremental, crash-safe reading of append-only JSONL files.

A :class:`FileCursor` says how far a file has been consumed: a byte offset that always sits on a
line boundary, plus a fingerprint (BLAKE2b of the first up to 1 KiB) that identifies the file
independently of its inode. Before reading, :func:`read_lines` checks that the file is still
the one the cursor describes; when it was truncated, replaced, rewritten or its inode reused, it
starts again from byte 0 (the ledger keeps re-read responses from counting twice).

A partial last line (no ``\\n`` yet) is left for the next read; the cursor never passes its
start. A line longer than ``max_line`` bytes is skipped (reported as ``None``) without being held
in memory, also when it is still being written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from contextd.errors import TranscriptError

FINGERPRINT_BYTES = 1024
DEFAULT_MAX_LINE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(slots=True)
class FileCursor:
    """How far one file has been consumed. Persisted with the state its lines produced."""

    path: str
    offset: int = 0
    fp_len: int = 0
    fingerprint: bytes = b""
    discarding: bool = False
    resets: int = 0

    def reset(self) -> None:
        self.offset = 0
        self.fp_len = 0
        self.fingerprint = b""
        self.discarding = False
        self.resets += 1


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _still_same_file(cursor: FileCursor, fd: int, size: int) -> bool:
    """True when the file behind ``fd`` is the one ``cursor`` was reading."""
    if size < cursor.offset or size < cursor.fp_len:
        return False  # truncated
    if cursor.fp_len:
        head = os.pread(fd, cursor.fp_len, 0)
        if _digest(head) != cursor.fingerprint:
            return False  # replaced, rewritten, or a new file on a reused inode
    if cursor.offset and not cursor.discarding:
        return os.pread(fd, 1, cursor.offset - 1) == b"\n"  # offsets sit on line boundaries
    return True


def _refresh_fingerprint(cursor: FileCursor, fd: int, size: int) -> None:
    want = min(size, FINGERPRINT_BYTES)
    if want > cursor.fp_len:
        head = os.pread(fd, want, 0)
        cursor.fp_len = len(head)
        cursor.fingerprint = _digest(head)


def read_blocks(
    cursor: FileCursor, *, max_line: int = DEFAULT_MAX_LINE, chunk: int = _CHUNK
) -> Iterator[tuple[bytes | None, int]]:
    """Yield ``(block, end_offset)`` for the new complete lines of ``cursor.path``.

    ``block`` holds one or more complete lines, each with its ``\\n``, at most about ``chunk``
    bytes; it is ``None`` for one skipped oversize line. ``end_offset`` is where the next line
    starts: the caller stores it in ``cursor.offset`` once the block's effects are committed.
    The cursor's fingerprint (and, after a reset, its offset) is updated here.
    """
    try:
        fd = os.open(cursor.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TranscriptError(f"cannot read {cursor.path}: {exc.strerror}") from exc
    try:
        size = os.fstat(fd).st_size
        if not _still_same_file(cursor, fd, size):
            cursor.reset()
        _refresh_fingerprint(cursor, fd, size)
        yield from _scan(fd, cursor, max_line, chunk)
    finally:
        os.close(fd)


def read_lines(
    cursor: FileCursor, *, max_line: int = DEFAULT_MAX_LINE, chunk: int = _CHUNK
) -> Iterator[tuple[bytes | None, int]]:
    """Like :func:`read_blocks`, one line at a time (without its ``\\n``)."""
    for block, end in read_blocks(cursor, max_line=max_line, chunk=chunk):
        if block is None:
            yield None, end
            continue
        offset = end - len(block)
        lines = block.split(b"\n")
        lines.pop()  # the empty tail after the block's final newline
        for line in lines:
            offset += len(line) + 1
            yield line, offset


def _scan(
    fd: int, cursor: FileCursor, max_line: int, chunk: int
) -> Iterator[tuple[bytes | None, int]]:
    pos = cursor.offset  # file offset of buf[0]
    discarding = cursor.discarding
    buf = b""
    while True:
        data = os.pread(fd, chunk, pos + len(buf))
        if not data:
            break
        buf = buf + data if buf else data
        if cursor.fp_len < min(pos + len(buf), FINGERPRINT_BYTES):
            # Appended since the fstat: the lines handed out must be covered by the fingerprint.
            _refresh_fingerprint(cursor, fd, pos + len(buf))
        start = 0
        if discarding:
            nl = buf.find(b"\n")
            if nl < 0:
                pos += len(buf)
                buf = b""
                cursor.offset = pos
                continue
            # The end of a skipped oversize line: everything before it was already handed
            # out and applied, so the cursor can move past it directly.
            discarding = False
            cursor.discarding = False
            start = nl + 1
            cursor.offset = pos + start
        last = buf.rfind(b"\n", start)
        if last >= 0:
            emit_from = start
            if last + 1 - start > max_line:  # only then can a complete line be oversize
                line_start = start
                while line_start <= last:
                    nl = buf.find(b"\n", line_start)
                    if nl - line_start > max_line:
                        if line_start > emit_from:
                            yield buf[emit_from:line_start], pos + line_start
                        yield None, pos + nl + 1
                        emit_from = nl + 1
                    line_start = nl + 1
            if last + 1 > emit_from:
                yield buf[emit_from : last + 1], pos + last + 1
            start = last + 1
        pos += start
        buf = buf[start:]
        if len(buf) > max_line:
            # An oversize line still being written: report it once, then skip to its end.
            pos += len(buf)
            buf = b""
            discarding = True
            cursor.discarding = True
            cursor.offset = pos
            yield None, pos
