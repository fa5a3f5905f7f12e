"""The tailer's promises (reliability.md scenarios 3-9, reader level).

Each test drives :func:`contextd.ingest.tailer.read_lines` the way a consumer does: it stores
``end`` in ``cursor.offset`` after each line, and "persists" a cursor by copying it.

The state machine at the end checks the same promises against a model of the file over random
sequences of appends, partial lines, truncation, replacement, deletion, commits and restarts,
reading through :func:`read_lines` and through :func:`read_blocks` (what the scanner uses).
It runs 200 examples by default; set ``TAILER_HYPOTHESIS_EXAMPLES`` (e.g. to 10000, as Vector
does) for a longer run. The variable deliberately avoids the ``CONTEXTD_`` prefix, which
:mod:`contextd.config` reserves for settings and rejects when unknown.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from contextd.ingest.tailer import FINGERPRINT_BYTES, FileCursor, read_blocks, read_lines

SMALL_MAX_LINE = 1000


def consume(
    cursor: FileCursor, *, max_line: int = SMALL_MAX_LINE, chunk: int = 1 << 20
) -> list[bytes | None]:
    """Read every available line, advancing the cursor after each one as a consumer does."""
    out: list[bytes | None] = []
    for line, end in read_lines(cursor, max_line=max_line, chunk=chunk):
        out.append(line)
        cursor.offset = end
    return out


def persisted(cursor: FileCursor) -> FileCursor:
    """A copy of the cursor, as a store would keep it."""
    return dataclasses.replace(cursor)


def on_line_boundary(path: Path, offset: int) -> bool:
    data = path.read_bytes()
    return offset <= len(data) and (offset == 0 or data[offset - 1 : offset] == b"\n")


# -- complete and partial lines ----------------------------------------------------------------


def test_complete_lines_are_yielded_with_the_offset_where_the_next_line_starts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"one\ntwo\n\nthree\n")

    got = list(read_lines(FileCursor(str(path))))

    assert got == [(b"one", 4), (b"two", 8), (b"", 9), (b"three", 15)]


def test_partial_last_line_is_held_back_and_yielded_once_when_completed(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    cursor = FileCursor(str(path))

    assert consume(cursor) == [b'{"a":1}']
    assert cursor.offset == 8  # the start of the unterminated line, never past it
    assert consume(cursor) == []  # a second poll during the pause changes nothing
    assert cursor.offset == 8

    with path.open("ab") as f:
        f.write(b'2}\n{"c":3}\n')

    assert consume(cursor) == [b'{"b":2}', b'{"c":3}']
    assert consume(cursor) == []
    assert cursor.offset == path.stat().st_size


def test_cursor_rebuilt_from_a_persisted_copy_resumes_right_after_the_last_consumed_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"l1\nl2\nl3\n")
    cursor = FileCursor(str(path))
    for n, (_, end) in enumerate(read_lines(cursor), 1):
        cursor.offset = end
        if n == 2:
            break  # the consumer has applied two lines when the cursor is persisted
    saved = persisted(cursor)
    with path.open("ab") as f:
        f.write(b"l4\nl5")

    restarted = persisted(saved)

    assert consume(restarted) == [b"l3", b"l4"]
    assert restarted.resets == 0
    assert on_line_boundary(path, restarted.offset)


def test_killed_during_a_partial_line_the_restart_yields_it_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"done\nhalf of a li")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [b"done"]
    saved = persisted(cursor)  # the daemon dies during the writer's pause
    with path.open("ab") as f:
        f.write(b"ne\n")

    restarted = persisted(saved)

    assert consume(restarted) == [b"half of a line"]
    assert consume(restarted) == []


# -- truncation, replacement, inode reuse ----------------------------------------------------


def test_truncation_to_zero_is_detected_and_the_new_lines_are_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"old-1\nold-2\nold-3\n")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [b"old-1", b"old-2", b"old-3"]

    path.write_bytes(b"")
    assert consume(cursor) == []
    assert cursor.resets == 1
    assert cursor.offset == 0

    with path.open("ab") as f:
        f.write(b"new-1\n")
    assert consume(cursor) == [b"new-1"]
    assert cursor.resets == 1


def test_truncation_then_regrowth_past_the_old_offset_while_stopped_is_caught_by_fingerprint(
    tmp_path: Path,
) -> None:
    # The Promtail blind spot: the file is truncated and rewritten to a size >= the stored
    # offset, and the byte before the offset is still a newline (equal-length lines), so neither
    # a size check nor the line-boundary check can notice. Only the fingerprint can.
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"old-1\nold-2\n")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [b"old-1", b"old-2"]
    saved = persisted(cursor)

    path.write_bytes(b"new-1\nnew-2\nnew-3\n")  # open(..., "wb"): same inode, truncated
    assert path.stat().st_size >= saved.offset
    assert path.read_bytes()[saved.offset - 1 : saved.offset] == b"\n"
    restarted = persisted(saved)

    assert consume(restarted) == [b"new-1", b"new-2", b"new-3"]
    assert restarted.resets == saved.resets + 1


def test_rewrite_of_a_file_longer_than_the_fingerprint_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    old = [b"old-%04d-%s" % (i, b"x" * 90) for i in range(40)]
    path.write_bytes(b"".join(line + b"\n" for line in old))
    cursor = FileCursor(str(path))
    assert consume(cursor) == old
    assert cursor.fp_len == FINGERPRINT_BYTES

    new = [b"new-%04d-%s" % (i, b"y" * 90) for i in range(50)]
    path.write_bytes(b"".join(line + b"\n" for line in new))

    assert consume(cursor) == new
    assert cursor.resets == 1


def test_rewrite_keeping_the_first_kib_is_caught_by_the_line_boundary_check(
    tmp_path: Path,
) -> None:
    # Same fingerprint, size >= offset, but the stored offset no longer follows a newline.
    path = tmp_path / "t.jsonl"
    head = b"h" * 600
    path.write_bytes(head + b"\n" + b"i" * 600 + b"\nold-3\n")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [head, b"i" * 600, b"old-3"]

    path.write_bytes(head + b"\n" + b"i" * 650 + b"\nnew-3\n")
    assert path.stat().st_size >= cursor.offset

    assert consume(cursor) == [head, b"i" * 650, b"new-3"]
    assert cursor.resets == 1


def test_shrinking_below_the_offset_while_skipping_an_oversize_line_does_not_get_stuck(
    tmp_path: Path,
) -> None:
    # While an oversize line is skipped the offset is mid-line, so only the size check can
    # notice a file cut back below it (the head, and so the fingerprint, is unchanged).
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"x" * 5000)
    cursor = FileCursor(str(path))
    assert consume(cursor) == [None]
    assert cursor.discarding

    os.truncate(path, 2000)
    with path.open("ab") as f:
        f.write(b"\nnext\n")

    assert consume(cursor) == [None, b"next"]
    assert cursor.resets == 1
    assert not cursor.discarding


def test_atomic_replacement_with_different_content_is_read_from_the_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"first-1\nfirst-2\n")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [b"first-1", b"first-2"]

    tmp = tmp_path / "t.jsonl.tmp"
    tmp.write_bytes(b"second-1\nsecond-2\nsecond-3\n")
    os.replace(tmp, path)

    assert consume(cursor) == [b"second-1", b"second-2", b"second-3"]
    assert cursor.resets == 1


def test_new_file_on_a_reused_inode_is_read_from_the_start(tmp_path: Path) -> None:
    # ext4 and tmpfs usually hand the freed inode straight to the next file. FileCursor keeps
    # no inode number at all, so the outcome must not depend on whether that happened.
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"gone-1\ngone-2\n")
    cursor = FileCursor(str(path))
    assert consume(cursor) == [b"gone-1", b"gone-2"]

    path.unlink()
    path.write_bytes(b"born-1\nborn-2\nborn-3\n")

    assert consume(cursor) == [b"born-1", b"born-2", b"born-3"]
    assert cursor.resets == 1


def test_lines_appended_while_a_read_is_under_way_are_covered_by_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer appends the first line between the reader's fstat (size 0: nothing to
    # fingerprint yet) and its first pread. The cursor then passes that line, so the fingerprint
    # must cover it too: a rewrite before the next read (same first-line length, so the
    # line-boundary check passes) must still be caught, not resumed at the old offset.
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"")
    real_pread = os.pread
    raced = False

    def pread_racing_the_writer(fd: int, n: int, offset: int) -> bytes:
        nonlocal raced
        if not raced:
            raced = True
            with path.open("ab") as f:
                f.write(b"first\n")
        return real_pread(fd, n, offset)

    cursor = FileCursor(str(path))
    with monkeypatch.context() as m:
        m.setattr(os, "pread", pread_racing_the_writer)
        assert consume(cursor) == [b"first"]
    assert raced
    assert cursor.fp_len >= cursor.offset == 6

    path.write_bytes(b"other\nnew-2\n")

    assert consume(cursor) == [b"other", b"new-2"]
    assert cursor.resets == 1


def test_appends_to_the_same_file_never_count_as_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    cursor = FileCursor(str(path))
    seen: list[bytes | None] = []
    expected: list[bytes] = []
    for i in range(60):  # grows well past the fingerprint's 1 KiB
        line = b"line-%03d-%s" % (i, b"z" * 30)
        expected.append(line)
        with path.open("ab") as f:
            f.write(line + b"\n")
        seen += consume(cursor)
    assert seen == expected
    assert cursor.resets == 0
    assert cursor.fp_len == FINGERPRINT_BYTES


# -- oversize and garbage lines --------------------------------------------------------------


def test_line_longer_than_max_line_is_reported_once_as_none_and_the_next_lines_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    limit = b"m" * SMALL_MAX_LINE
    path.write_bytes(b"before\n" + b"x" * 5000 + b"\n" + limit + b"\nafter\n")
    cursor = FileCursor(str(path))

    assert consume(cursor) == [b"before", None, limit, b"after"]
    assert consume(cursor) == []
    assert cursor.offset == path.stat().st_size
    assert not cursor.discarding


def test_oversize_line_spanning_many_small_chunks_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"a\n" + b"x" * 5000 + b"\nb\n")
    cursor = FileCursor(str(path))

    assert consume(cursor, chunk=64) == [b"a", None, b"b"]
    assert cursor.offset == path.stat().st_size
    assert not cursor.discarding


def test_oversize_line_still_being_written_is_reported_once_and_skipped_without_holding_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"first\n" + b"x" * 5000)  # no newline yet: the writer is still going
    cursor = FileCursor(str(path))

    assert consume(cursor) == [b"first", None]
    assert cursor.discarding
    assert cursor.offset == path.stat().st_size  # moved past it: nothing of it is kept

    with path.open("ab") as f:
        f.write(b"x" * 7000)
    assert consume(cursor) == []  # not reported again
    assert cursor.discarding
    assert cursor.offset == path.stat().st_size
    saved = persisted(cursor)

    with path.open("ab") as f:
        f.write(b"x" * 100 + b"\nsecond\nthird\n")
    assert consume(cursor) == [b"second", b"third"]
    assert not cursor.discarding
    assert cursor.offset == path.stat().st_size

    restarted = persisted(saved)  # a restart while it was being skipped skips it too
    assert consume(restarted) == [b"second", b"third"]
    assert not restarted.discarding


def test_oversize_line_being_written_leaves_at_most_max_line_bytes_unconsumed(
    tmp_path: Path,
) -> None:
    # With chunks smaller than max_line the reader may keep up to max_line bytes of the line
    # buffered; everything before that is behind the cursor, so memory stays bounded.
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"x" * 50_000)
    cursor = FileCursor(str(path))

    assert consume(cursor, chunk=256) == [None]
    assert cursor.discarding
    assert 0 <= path.stat().st_size - cursor.offset <= SMALL_MAX_LINE

    with path.open("ab") as f:
        f.write(b"x" * 50_000 + b"\nnext\n")
    assert consume(cursor, chunk=256) == [b"next"]


def test_invalid_utf8_passes_through_as_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    garbage = b'{"a":"\xff\xfe\xc3(\xed\xa0\x80"}'
    path.write_bytes(garbage + b"\n\x00\r\x80\nok\n")

    assert consume(FileCursor(str(path))) == [garbage, b"\x00\r\x80", b"ok"]


def test_missing_file_yields_nothing_and_leaves_the_cursor_alone(tmp_path: Path) -> None:
    cursor = FileCursor(str(tmp_path / "absent.jsonl"), offset=42, fp_len=42, fingerprint=b"f")
    before = persisted(cursor)

    assert consume(cursor) == []
    assert cursor == before


# -- the model-based property test ------------------------------------------------------------

MODEL_MAX_LINE = 100
_EXAMPLES = int(os.environ.get("TAILER_HYPOTHESIS_EXAMPLES", "200"))

# What to append: raw bytes (any, newline aside) or the length of a long line, from just
# under max_line (the boundary: exactly max_line is still a line) to well over it.
_normal = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
_long = st.integers(MODEL_MAX_LINE - 1, 4 * MODEL_MAX_LINE)
_record = st.one_of(_normal, _normal, _normal, _long)
_chunks = st.sampled_from([7, 64, 1 << 20])


@dataclasses.dataclass
class _Position:
    """Where the model says a cursor is: which generation of the file, how many of its complete
    lines were consumed, whether the unterminated oversize line after them was already reported,
    and what the consumer kept of this generation (reset by a restart to the committed copy)."""

    gen: int = 0
    consumed: int = 0
    reported_partial: bool = False
    kept: list[bytes | None] = dataclasses.field(default_factory=list)

    def copy(self) -> _Position:
        return dataclasses.replace(self, kept=list(self.kept))


class TailerModel(RuleBasedStateMachine):
    """A file written by a Claude-Code-like writer and read by a restartable consumer.

    Model: ``lines`` are the complete lines written since the last truncation, replacement or
    deletion (one generation of the file); ``partial`` is the unterminated line at its end.
    A read must yield exactly the lines after the cursor's model position (all of them when the
    file changed generation), each oversize line as one ``None``. A restart goes back to the
    position of the last commit, so lines consumed after it are replayed: at-least-once at the
    reader, exactly-once for whoever commits offsets together with state.
    """

    root: Path  # set by the test to its tmp_path

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=self.root))
        self.path = self.dir / "t.jsonl"
        self.counter = 0
        self.gen = 0
        self.lines: list[bytes] = []
        self.partial: tuple[bytes, int] | None = None  # (the whole line, bytes written)
        self.cursor = FileCursor(str(self.path))
        self.pos = _Position()
        self.saved_cursor = persisted(self.cursor)
        self.saved_pos = self.pos.copy()

    def teardown(self) -> None:
        if hasattr(self, "path"):
            self.path.unlink(missing_ok=True)
            self.dir.rmdir()

    # -- helpers ------------------------------------------------------------------------------

    def _new_line(self, record: bytes | int) -> bytes:
        self.counter += 1
        prefix = b"%06d|" % self.counter  # unique: "never twice" is checkable
        if isinstance(record, int):
            return prefix + b"o" * (record - len(prefix))
        return prefix + record

    def _append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    def _new_generation(self) -> None:
        self.gen += 1
        self.lines = []
        self.partial = None

    def _write_lines(self, records: list[bytes | int]) -> bytes:
        new = [self._new_line(r) for r in records]
        self.lines += new
        return b"".join(line + b"\n" for line in new)

    @staticmethod
    def _shown(line: bytes) -> bytes | None:
        return None if len(line) > MODEL_MAX_LINE else line

    # -- the writer ---------------------------------------------------------------------------

    @precondition(lambda self: self.partial is None)
    @rule(records=st.lists(_record, min_size=1, max_size=4))
    def append_lines(self, records: list[bytes | int]) -> None:
        self._append(self._write_lines(records))

    @precondition(lambda self: self.partial is None)
    @rule(record=_record, data=st.data())
    def append_partial_line(self, record: bytes | int, data: st.DataObject) -> None:
        line = self._new_line(record)
        written = data.draw(st.integers(1, len(line)), label="written")
        self.partial = (line, written)
        self._append(line[:written])

    @precondition(lambda self: self.partial is not None and self.partial[1] < len(self.partial[0]))
    @rule(data=st.data())
    def extend_partial_line(self, data: st.DataObject) -> None:
        assert self.partial is not None
        line, written = self.partial
        more = data.draw(st.integers(written + 1, len(line)), label="written")
        self._append(line[written:more])
        self.partial = (line, more)

    @precondition(lambda self: self.partial is not None)
    @rule()
    def complete_partial_line(self) -> None:
        assert self.partial is not None
        line, written = self.partial
        self._append(line[written:] + b"\n")
        self.lines.append(line)
        self.partial = None

    @rule(records=st.lists(_record, max_size=4), regrow=st.booleans())
    def truncate(self, records: list[bytes | int], regrow: bool) -> None:
        """Truncate to 0 in place (same inode), optionally writing new content, optionally
        growing it past every offset a cursor holds (the Promtail blind spot)."""
        self._new_generation()
        content = self._write_lines(records)
        target = max(self.cursor.offset, self.saved_cursor.offset) if regrow else 0
        while len(content) < target:
            content += self._write_lines([b"regrow"])
        with self.path.open("wb") as f:
            f.write(content)

    @rule(records=st.lists(_record, max_size=4))
    def replace(self, records: list[bytes | int]) -> None:
        """Write a new file beside it and rename it over the old one."""
        self._new_generation()
        tmp = self.dir / "t.jsonl.tmp"
        tmp.write_bytes(self._write_lines(records))
        os.replace(tmp, self.path)

    @rule()
    def delete(self) -> None:
        self._new_generation()
        self.path.unlink(missing_ok=True)

    # -- the consumer -------------------------------------------------------------------------

    @rule()
    def commit(self) -> None:
        self.saved_cursor = persisted(self.cursor)
        self.saved_pos = self.pos.copy()

    @rule()
    def restart(self) -> None:
        self.cursor = persisted(self.saved_cursor)
        self.pos = self.saved_pos.copy()

    def _expected_read(self) -> tuple[list[bytes | None], _Position]:
        same_gen = self.pos.gen == self.gen
        start = self.pos.consumed if same_gen else 0
        reported = self.pos.reported_partial and same_gen
        kept = list(self.pos.kept) if same_gen else []
        out: list[bytes | None] = []
        for line in self.lines[start:]:
            if reported:  # the oversize line reported while partial, now complete: skipped
                reported = False
                continue
            out.append(self._shown(line))
        if self.partial is not None and self.partial[1] > MODEL_MAX_LINE and not reported:
            out.append(None)
            reported = True
        return out, _Position(self.gen, len(self.lines), reported, kept + out)

    @rule(chunk=_chunks, by_block=st.booleans())
    def read(self, chunk: int, by_block: bool) -> None:
        """Consume everything new, line by line, or block by block as the scanner does."""
        cursor = self.cursor
        if not self.path.exists():
            before = persisted(cursor)
            assert consume(cursor, max_line=MODEL_MAX_LINE, chunk=chunk) == []
            assert cursor == before
            return
        expected, after = self._expected_read()
        resets, offset = cursor.resets, cursor.offset
        data = self.path.read_bytes()

        got: list[bytes | None] = []
        reader = read_blocks if by_block else read_lines
        for item, end in reader(cursor, max_line=MODEL_MAX_LINE, chunk=chunk):
            assert end <= len(data)
            assert item is None or data[end - 1 : end] == b"\n"
            if item is not None and by_block:
                assert data[end - len(item) : end] == item  # whole lines, ending at `end`
                got += item.split(b"\n")[:-1]
            else:
                got.append(item)
            cursor.offset = end

        assert got == expected
        if self.pos.gen == self.gen:
            assert cursor.resets == resets  # never a spurious reset
        elif offset > 0:
            assert cursor.resets == resets + 1  # a change under a used cursor is always caught
        # else: from offset 0 the outcome is the same with or without a reset (a fingerprint
        # of a few bytes of a partial line may even match the new file's first bytes).
        self.pos = after
        self.check_position(data)

    def check_position(self, data: bytes) -> None:
        """After a read, the cursor sits exactly after the consumed lines (or, while skipping
        an oversize line, inside it with at most max_line bytes of it left unconsumed)."""
        cursor = self.cursor
        complete = sum(len(line) + 1 for line in self.lines)
        assert cursor.offset <= len(data)
        assert cursor.discarding == self.pos.reported_partial
        if cursor.discarding:
            assert complete < cursor.offset
            assert len(data) - cursor.offset <= MODEL_MAX_LINE
        else:
            assert cursor.offset == complete
            assert cursor.offset == 0 or data[cursor.offset - 1 : cursor.offset] == b"\n"
        # Exactly the generation's complete lines, in order, none twice (plus the one report of
        # an oversize line still being written).
        shown = [self._shown(line) for line in self.lines]
        assert self.pos.kept == shown + ([None] if cursor.discarding else [])
        kept_lines = [line for line in self.pos.kept if line is not None]
        assert len(kept_lines) == len(set(kept_lines))


def test_tailer_agrees_with_the_model_over_random_writes_truncations_and_restarts(
    tmp_path: Path,
) -> None:
    class TailerModelInTmp(TailerModel):
        root = tmp_path

    run_state_machine_as_test(
        TailerModelInTmp,
        settings=settings(
            max_examples=_EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
