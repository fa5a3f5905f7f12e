"""Claude Code transcript lines → observations.

Rules (see shared/reference/claude-code-formats.md §1-2):

* Only top-level ``assistant`` lines carry usage. ``progress`` lines embed copies of sub-agent
  messages with usage and count as activity only, as do ``<synthetic>`` and API-error lines.
* One response is split over several lines with the same ``(message.id, requestId)``; the
  :class:`~contextd.ledger.ResponseLedger` counts it once and adds any growth of
  ``output_tokens``.
* Context = ``input + cache_creation + cache_read`` of the last main-chain response; when
  ``usage.iterations`` is present, of its last ``message``/``fallback_message`` iteration.
  Lines from sub-agent files or with ``isSidechain: true`` count towards the session's tokens but
  never its context.
* ``system``/``compact_boundary`` → a checkpoint (``preTokens``, ``postTokens`` when present),
  counted once per boundary ``uuid`` (forked sessions copy the boundary line).
* A line that is not valid UTF-8 JSON, or not an object, is counted as malformed and skipped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath

import orjson

from contextd.events import Activity, Compaction, Observation, Origin, Response
from contextd.ledger import ResponseLedger, ledger_key, response_key
from contextd.models import ZERO_TOKENS, TokenCounts

SYNTHETIC_MODEL = "<synthetic>"
_NOT_CONTEXT_ITERATIONS = frozenset({"compaction", "advisor_message"})
_TIMED_SEARCH = 16  # lines looked at from either end of a block to place it in time


@dataclass(frozen=True, slots=True)
class TranscriptFile:
    """What a transcript's path says about its lines."""

    path: str
    session_hint: str | None
    sidechain: bool

    @classmethod
    def from_path(cls, path: str) -> TranscriptFile:
        """Derive the session and kind from ``…/<session>.jsonl`` or ``…/<session>/subagents/…``."""
        parts = PurePath(path).parts
        stem = PurePath(path).stem
        if "subagents" in parts:
            idx = len(parts) - 1 - parts[::-1].index("subagents")
            return cls(path, parts[idx - 1] if idx > 0 else None, sidechain=True)
        if stem.startswith("agent-"):
            return cls(path, None, sidechain=True)  # pre-2.1.2 flat sub-agent file
        return cls(path, stem, sidechain=False)


@dataclass(slots=True)
class ParseStats:
    """Counters of what the parser saw; persisted and exported by the adapters."""

    lines: int = 0
    blank: int = 0
    malformed: int = 0
    oversize: int = 0
    responses: int = 0
    checkpoints: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def parse_timestamp(value: object) -> float | None:
    """ISO-8601 (``…Z`` or with offset) → POSIX seconds; None when absent or invalid."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _count(value: object) -> int:
    # ``type(...) is int`` also rejects bools; orjson yields exact ints.
    return value if type(value) is int and value > 0 else 0


def usage_counts(usage: dict[str, object]) -> TokenCounts:
    """Token counts of an API ``usage`` object; missing or invalid counts are 0."""
    get = usage.get
    creation = _count(get("cache_creation_input_tokens"))
    nested = get("cache_creation")
    if type(nested) is dict:
        split = 0
        for value in nested.values():
            split += _count(value)
        creation = max(creation, split)
    return TokenCounts(
        _count(get("input_tokens")),
        _count(get("output_tokens")),
        creation,
        _count(get("cache_read_input_tokens")),
    )


def context_of(usage: dict[str, object], counts: TokenCounts) -> int:
    """The context size a response reports, with Claude Code's ``iterations`` refinement."""
    iterations = usage.get("iterations")
    if counts.context == 0 or not isinstance(iterations, list):
        return counts.context
    for item in reversed(iterations):
        if isinstance(item, dict) and item.get("type") not in _NOT_CONTEXT_ITERATIONS:
            return (
                _count(item.get("input_tokens"))
                + _count(item.get("cache_creation_input_tokens"))
                + _count(item.get("cache_read_input_tokens"))
            )
    return counts.context


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class TranscriptParser:
    """Turns raw transcript lines into observations. No I/O; the ledger is injected."""

    def __init__(self, ledger: ResponseLedger, stats: ParseStats | None = None) -> None:
        self.ledger = ledger
        self.stats = stats or ParseStats()
        self._seen_first = False
        self._tail: deque[bytes] = deque(maxlen=16)
        self._last_origin: Origin | None = None

    def oversize(self) -> None:
        """Record a line the reader skipped for being over the size cap."""
        self.stats.lines += 1
        self.stats.oversize += 1
        self.stats.reject("oversize")

    def feed_block(self, block: bytes, file: TranscriptFile) -> list[Observation]:
        """Process a block of complete lines (each ending in ``\\n``) in file order.

        Same results as :meth:`feed` on each line followed by :meth:`flush`, but lines that
        carry neither usage nor a checkpoint are never visited one by one: a byte count checks
        that every line is shaped like one JSON object, and only the lines around a
        ``"usage"`` or ``compact_boundary`` match, plus the first and last timed lines, are
        decoded. Misshapen lines (blank, torn, not an object) are found only when the count
        says there are some, then counted and left out.
        """
        count = block.count(b"\n")
        self.stats.lines += count
        bad: set[int] = set()
        if not (block[:1] == b"{" and block[-2:] == b"}\n" and block.count(b"}\n{") == count - 1):
            bad = self._misshapen(block)
        starts: list[int] = []
        for needle in (b'"usage"', b"compact_boundary"):
            hit = block.find(needle)
            while hit >= 0:
                line_start = block.rfind(b"\n", 0, hit) + 1
                line_end = block.find(b"\n", hit)
                if line_start not in bad:
                    starts.append(line_start)
                hit = block.find(needle, line_end)
        starts = sorted(set(starts))
        found = self._first_timed(block, starts, bad, file)
        for line_start in starts:
            found.extend(self._decode(block[line_start : block.find(b"\n", line_start)], file))
        found.extend(self._last_timed(block, starts, bad, file))
        return found

    def _misshapen(self, block: bytes) -> set[int]:
        """Start offsets of the lines of ``block`` that cannot be JSON objects; counted here."""
        stats = self.stats
        bad: set[int] = set()
        offset = 0
        for line in block.split(b"\n")[:-1]:
            if line[:1] != b"{" or line[-1:] != b"}":
                body = line.strip()
                if not body:
                    stats.blank += 1
                    bad.add(offset)
                elif body[:1] != b"{" or body[-1:] != b"}":
                    stats.malformed += 1
                    stats.reject("invalid_json")
                    bad.add(offset)
            offset += len(line) + 1
        return bad

    def _first_timed(
        self, block: bytes, parsed: list[int], bad: set[int], file: TranscriptFile
    ) -> list[Observation]:
        line_start = 0
        first_parsed = parsed[0] if parsed else len(block)
        for _ in range(_TIMED_SEARCH):
            if line_start >= first_parsed:
                return []  # a decoded usage line comes first and dates the block itself
            end = block.find(b"\n", line_start)
            if line_start not in bad:
                found = self._decode(block[line_start:end], file)
                if found:
                    return found
            line_start = end + 1
        return []

    def _last_timed(
        self, block: bytes, parsed: list[int], bad: set[int], file: TranscriptFile
    ) -> list[Observation]:
        end = len(block) - 1
        last_parsed = parsed[-1] if parsed else -1
        for _ in range(_TIMED_SEARCH):
            line_start = block.rfind(b"\n", 0, end) + 1
            if line_start <= last_parsed:
                return []
            if line_start not in bad:
                found = self._decode(block[line_start:end], file)
                if found:
                    return found
            if line_start == 0:
                return []
            end = line_start - 1
        return []

    def feed(self, raw: bytes, file: TranscriptFile) -> list[Observation]:
        """Parse a line if it can carry usage or a checkpoint; otherwise defer it.

        Most bytes of a transcript are prompts, tool results and progress lines that only
        show the session is alive. Those are shape-checked here (blank, or not one JSON object
        → counted) and kept aside: :meth:`flush` parses the first and the last of them, which
        is all the session's start and last-activity times need (lines of a file are in time
        order, give or take milliseconds). Call :meth:`flush` before committing the offset of a
        fed line.
        """
        if b'"usage"' in raw or b"compact_boundary" in raw:
            return self.parse(raw, file)
        stats = self.stats
        stats.lines += 1
        if raw[:1] != b"{" or raw[-1:] != b"}":  # cheap shape check; Claude writes no padding
            body = raw.strip()
            if not body:
                stats.blank += 1
                return []
            if body[:1] != b"{" or body[-1:] != b"}":
                stats.malformed += 1
                stats.reject("invalid_json")
                return []
        if not self._seen_first:
            found = self._decode(raw, file)
            self._seen_first = bool(found)
            return found
        self._tail.append(raw)
        return []

    def flush(self, file: TranscriptFile) -> list[Observation]:
        """Parse the newest deferred line that places the session in time; start afresh."""
        found: list[Observation] = []
        while self._tail and not found:
            found = self._decode(self._tail.pop(), file)
        self._tail.clear()
        self._seen_first = False
        return found

    def parse(self, raw: bytes, file: TranscriptFile) -> list[Observation]:
        """Parse one line completely."""
        stats = self.stats
        stats.lines += 1
        if not raw.strip():
            stats.blank += 1
            return []
        return self._decode(raw, file)

    def _decode(self, raw: bytes, file: TranscriptFile) -> list[Observation]:
        stats = self.stats
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            stats.malformed += 1
            stats.reject("invalid_json")
            return []
        if not isinstance(entry, dict):
            stats.malformed += 1
            stats.reject("not_an_object")
            return []
        get = entry.get
        kind = get("type")
        session_id = get("sessionId")
        if type(session_id) is not str or not session_id:
            session_id = file.session_hint
        at = parse_timestamp(get("timestamp"))
        if session_id is None or at is None:
            return []  # bookkeeping lines (snapshots, summaries) place nothing in time
        origin = self._origin(get("cwd"), get("gitBranch"), get("version"), get("entrypoint"))
        sidechain = file.sidechain or get("isSidechain") is True
        if kind == "progress":
            # Progress lines show activity; the messages they embed are copies: never usage.
            return [Activity(session_id, at, origin)]
        if kind == "assistant":
            return [self._assistant(entry, session_id, at, origin, sidechain)]
        if kind == "system" and entry.get("subtype") == "compact_boundary" and not sidechain:
            return [self._boundary(entry, session_id, at, origin)]
        return [Activity(session_id, at, origin)]

    def _origin(self, cwd: object, branch: object, version: object, entry: object) -> Origin | None:
        """The line's origin; the same object as the previous line's when nothing differs (the
        engine skips its bookkeeping for an origin it has already taken in)."""
        if type(cwd) is not str:
            return None
        last = self._last_origin
        if (
            last is not None
            and last.cwd == cwd
            and last.git_branch == branch
            and last.version == version
            and last.entrypoint == entry
        ):
            return last
        self._last_origin = Origin(cwd, _str(branch), _str(version), _str(entry))
        return self._last_origin

    def _assistant(
        self,
        entry: dict[str, object],
        session_id: str,
        at: float,
        origin: Origin | None,
        sidechain: bool,
    ) -> Observation:
        message = entry.get("message")
        if not isinstance(message, dict):
            self.stats.malformed += 1
            self.stats.reject("bad_message")
            return Activity(session_id, at, origin)
        model = message.get("model")
        usage = message.get("usage")
        if (
            not isinstance(model, str)
            or model == SYNTHETIC_MODEL
            or entry.get("isApiErrorMessage") is True
            or not isinstance(usage, dict)
        ):
            return Activity(session_id, at, origin)
        counts = usage_counts(usage)
        key = response_key(_str(message.get("id")), _str(entry.get("requestId")))
        counted = self.ledger.count(key, session_id, counts)
        tool_calls = 0
        content = message.get("content")
        if type(content) is list:
            for block in content:
                if type(block) is dict and block.get("type") == "tool_use":
                    tool_id = _str(block.get("id"))
                    if tool_id is None or self.ledger.first_sighting(tool_id, session_id):
                        tool_calls += 1
        if counted is None:
            if tool_calls:
                return Response(
                    session_id, at, model, ZERO_TOKENS, 0, not sidechain, False, tool_calls, origin
                )
            return Activity(session_id, at, origin)
        if counted.new_response:
            self.stats.responses += 1
        return Response(
            session_id=counted.session_id,
            at=at,
            model=model,
            usage=counted.usage,
            context_tokens=context_of(usage, counts),
            main_chain=not sidechain,
            new_response=counted.new_response,
            tool_calls=tool_calls,
            origin=origin if counted.session_id == session_id else None,
        )

    def _boundary(
        self, entry: dict[str, object], session_id: str, at: float, origin: Origin | None
    ) -> Observation:
        uuid = _str(entry.get("uuid"))
        if uuid is not None and not self.ledger.first_sighting(f"compact:{uuid}", session_id):
            return Activity(session_id, at, origin)
        meta = entry.get("compactMetadata")
        meta = meta if isinstance(meta, dict) else {}
        post = meta.get("postTokens")
        trigger = meta.get("trigger")
        self.stats.checkpoints += 1
        return Compaction(
            session_id=session_id,
            at=at,
            trigger=trigger if isinstance(trigger, str) else "unknown",
            pre_tokens=_count(meta.get("preTokens")),
            post_tokens=post if isinstance(post, int) and not isinstance(post, bool) else None,
            origin=origin,
        )


__all__ = [
    "ParseStats",
    "TranscriptFile",
    "TranscriptParser",
    "context_of",
    "ledger_key",
    "parse_timestamp",
    "usage_counts",
]
