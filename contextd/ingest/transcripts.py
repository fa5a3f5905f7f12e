"""Claude Code transcript lines → records → observations.

Two stages, so the first can run in worker processes: :class:`LineDecoder` turns bytes into
compact, picklable records (no shared state), and :class:`RecordResolver` turns records into
observations through the response ledger (de-duplication needs the one ledger of the store).
:class:`TranscriptParser` composes both for in-process use.

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

from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import PurePath
from typing import NamedTuple

import orjson

from contextd.events import Activity, Compaction, Observation, Origin, Response
from contextd.ledger import ResponseLedger, response_key, tool_key
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

    def add(self, other: ParseStats) -> None:
        """Add another set of counters (a worker's) to these."""
        for f in fields(ParseStats):
            if f.name != "by_reason":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for reason, value in other.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + value


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


OriginKey = tuple[str, str | None, str | None, str | None]
"""``(cwd, gitBranch, version, entrypoint)`` of a line."""


class ActivityLine(NamedTuple):
    """A line that only shows the session was active at ``at``."""

    session_id: str
    at: float
    origin: OriginKey | None


class ResponseLine(NamedTuple):
    """One line of an API response, with its usage as written (not yet de-duplicated)."""

    session_id: str
    at: float
    origin: OriginKey | None
    model: str
    key: int | None  # ledger key of (message.id, requestId); None: no id, count every line
    usage: tuple[int, int, int, int]  # input, output, cache_creation, cache_read
    context: int
    sidechain: bool
    tool_keys: tuple[int | None, ...]  # ledger keys of its tool_use ids (None: no id)
    last_at: float  # time of the last line folded into this one (see _merged)


class BoundaryLine(NamedTuple):
    """A ``compact_boundary`` of the main chain."""

    session_id: str
    at: float
    origin: OriginKey | None
    uuid: str | None
    trigger: str
    pre_tokens: int
    post_tokens: int | None


Record = ActivityLine | ResponseLine | BoundaryLine


def _utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (JSON's encoding); fast for ASCII, as most lines are."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _merged(first: ResponseLine, later: ResponseLine) -> ResponseLine:
    """Two lines of one response as one: first input/cache counts, largest output, all tools.

    The response keeps the first line's time; the resolver reports the last line's time as
    activity, so the effects equal those of the separate lines however blocks split them.
    """
    inp, out, creation, read = first.usage
    return first._replace(
        last_at=max(first.last_at, later.last_at),
        origin=later.origin,
        usage=(inp, max(out, later.usage[1]), creation, read),
        tool_keys=first.tool_keys + later.tool_keys,
    )


class LineDecoder:
    """Turns raw transcript lines into records. No I/O and no shared state."""

    def __init__(self, stats: ParseStats | None = None) -> None:
        self.stats = stats or ParseStats()
        self._last_origin: OriginKey | None = None

    def oversize(self) -> None:
        """Record a line the reader skipped for being over the size cap."""
        self.stats.lines += 1
        self.stats.oversize += 1
        self.stats.reject("oversize")

    def feed_block(self, block: bytes, file: TranscriptFile) -> list[Record]:
        """Process a block of complete lines (each ending in ``\\n``) in file order.

        Lines that carry neither usage nor a checkpoint are never visited one by one (they only
        show the session is alive, and their times are monotone within a file): a byte count checks
        that every line is shaped like one JSON object, and only the lines around a
        ``"usage"`` or ``compact_boundary`` match, plus the first and last timed lines, are
        decoded. Misshapen lines (blank, torn, not an object, NUL bytes) are looked for line by
        line only when the block-wide checks say there are some; they are counted and left out.
        Invalid UTF-8 is found where a line is decoded (orjson validates it), or in a block that
        fails those checks; elsewhere a line is not decoded, so its bytes are never used.
        """
        count = block.count(b"\n")
        self.stats.lines += count
        bad: set[int] = set()
        if not (
            block[:1] == b"{"
            and block[-2:] == b"}\n"
            and block.count(b"}\n{") == count - 1
            and b"\x00" not in block
        ):
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
        previous: Record | None = None
        for line_start in starts:
            for record in self._decode(block[line_start : block.find(b"\n", line_start)], file):
                if (
                    type(record) is ResponseLine
                    and type(previous) is ResponseLine
                    and record.key is not None
                    and record.key == previous.key
                    and record.session_id == previous.session_id
                    and record.sidechain == previous.sidechain
                ):
                    # The next line of the same streamed response: the ledger would add only
                    # its output growth, so fold it in here (half the records to resolve).
                    previous = found[-1] = _merged(previous, record)
                else:
                    found.append(record)
                    previous = record
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
            elif b"\x00" in line or not _utf8(line):
                stats.malformed += 1
                stats.reject("invalid_json")
                bad.add(offset)
            offset += len(line) + 1
        return bad

    def _first_timed(
        self, block: bytes, parsed: list[int], bad: set[int], file: TranscriptFile
    ) -> list[Record]:
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
    ) -> list[Record]:
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

    def parse(self, raw: bytes, file: TranscriptFile) -> list[Record]:
        """Parse one line completely."""
        stats = self.stats
        stats.lines += 1
        if not raw.strip():
            stats.blank += 1
            return []
        return self._decode(raw, file)

    def _decode(self, raw: bytes, file: TranscriptFile) -> list[Record]:
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
        if kind == "assistant":
            return [self._assistant(entry, session_id, at, origin, sidechain)]
        if kind == "system" and get("subtype") == "compact_boundary" and not sidechain:
            return [self._boundary(entry, session_id, at, origin)]
        # Progress lines embed copies of sub-agent messages: activity, never usage.
        return [ActivityLine(session_id, at, origin)]

    def _origin(
        self, cwd: object, branch: object, version: object, entry: object
    ) -> OriginKey | None:
        """The line's origin, the same tuple object as the previous line's when equal."""
        if type(cwd) is not str:
            return None
        last = self._last_origin
        if last is not None and last == (cwd, branch, version, entry):
            return last
        self._last_origin = (cwd, _str(branch), _str(version), _str(entry))
        return self._last_origin

    def _assistant(
        self,
        entry: dict[str, object],
        session_id: str,
        at: float,
        origin: OriginKey | None,
        sidechain: bool,
    ) -> Record:
        message = entry.get("message")
        if type(message) is not dict:
            self.stats.malformed += 1
            self.stats.reject("bad_message")
            return ActivityLine(session_id, at, origin)
        model = message.get("model")
        usage = message.get("usage")
        if (
            type(model) is not str
            or model == SYNTHETIC_MODEL
            or entry.get("isApiErrorMessage") is True
            or type(usage) is not dict
        ):
            return ActivityLine(session_id, at, origin)
        counts = usage_counts(usage)
        content = message.get("content")
        tool_keys: tuple[int | None, ...] = ()
        if type(content) is list:
            tool_keys = tuple(
                tool_key(tool_id) if type(tool_id := block.get("id")) is str and tool_id else None
                for block in content
                if type(block) is dict and block.get("type") == "tool_use"
            )
        return ResponseLine(
            session_id,
            at,
            origin,
            model,
            response_key(_str(message.get("id")), _str(entry.get("requestId"))),
            (counts.input, counts.output, counts.cache_creation, counts.cache_read),
            context_of(usage, counts),
            sidechain,
            tool_keys,
            at,
        )

    def _boundary(
        self, entry: dict[str, object], session_id: str, at: float, origin: OriginKey | None
    ) -> Record:
        meta = entry.get("compactMetadata")
        meta = meta if type(meta) is dict else {}
        post = meta.get("postTokens")
        trigger = meta.get("trigger")
        return BoundaryLine(
            session_id,
            at,
            origin,
            _str(entry.get("uuid")),
            trigger if type(trigger) is str else "unknown",
            _count(meta.get("preTokens")),
            post if type(post) is int else None,
        )


class RecordResolver:
    """Records → observations: de-duplication through the ledger, counted once per response."""

    def __init__(self, ledger: ResponseLedger, stats: ParseStats) -> None:
        self.ledger = ledger
        self.stats = stats
        self._origins: dict[OriginKey, Origin] = {}

    def _origin(self, key: OriginKey | None) -> Origin | None:
        if key is None:
            return None
        origin = self._origins.get(key)
        if origin is None:
            if len(self._origins) > 4096:
                self._origins.clear()
            origin = self._origins[key] = Origin(*key)
        return origin

    def resolve(self, records: list[Record]) -> list[Observation]:
        out: list[Observation] = []
        for record in records:
            if type(record) is ResponseLine:
                out.append(self._response(record))
                if record.last_at > record.at:
                    out.append(Activity(record.session_id, record.last_at, None))
            elif type(record) is BoundaryLine:
                out.append(self._boundary(record))
            else:
                out.append(Activity(record.session_id, record.at, self._origin(record.origin)))
        return out

    def _response(self, line: ResponseLine) -> Observation:
        ledger = self.ledger
        session_id = line.session_id
        origin = self._origin(line.origin)
        counts = TokenCounts(*line.usage)
        counted = ledger.count(line.key, session_id, counts)
        tool_calls = 0
        for key in line.tool_keys:
            if key is None or ledger.first_sighting_of(key, session_id):
                tool_calls += 1
        main_chain = not line.sidechain
        if counted is None:
            if tool_calls:
                return Response(
                    session_id, line.at, line.model, ZERO_TOKENS, 0, main_chain, False,
                    tool_calls, origin,
                )  # fmt: skip
            return Activity(session_id, line.at, origin)
        if counted.new_response:
            self.stats.responses += 1
        return Response(
            session_id=counted.session_id,
            at=line.at,
            model=line.model,
            usage=counted.usage,
            context_tokens=line.context,
            main_chain=main_chain,
            new_response=counted.new_response,
            tool_calls=tool_calls,
            origin=origin if counted.session_id == session_id else None,
        )

    def _boundary(self, line: BoundaryLine) -> Observation:
        origin = self._origin(line.origin)
        if line.uuid is not None and not self.ledger.first_sighting(
            f"compact:{line.uuid}", line.session_id
        ):
            return Activity(line.session_id, line.at, origin)
        self.stats.checkpoints += 1
        return Compaction(
            session_id=line.session_id,
            at=line.at,
            trigger=line.trigger,
            pre_tokens=line.pre_tokens,
            post_tokens=line.post_tokens,
            origin=origin,
        )


class TranscriptParser:
    """Raw transcript lines → observations, in process: a decoder and a resolver."""

    def __init__(self, ledger: ResponseLedger, stats: ParseStats | None = None) -> None:
        self.stats = stats or ParseStats()
        self.decoder = LineDecoder(self.stats)
        self.resolver = RecordResolver(ledger, self.stats)

    @property
    def ledger(self) -> ResponseLedger:
        return self.resolver.ledger

    def oversize(self) -> None:
        self.decoder.oversize()

    def feed_block(self, block: bytes, file: TranscriptFile) -> list[Observation]:
        return self.resolver.resolve(self.decoder.feed_block(block, file))

    def parse(self, raw: bytes, file: TranscriptFile) -> list[Observation]:
        return self.resolver.resolve(self.decoder.parse(raw, file))
