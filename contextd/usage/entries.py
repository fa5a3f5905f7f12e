"""Transcript lines → usage entries, and which entries count (no I/O).

The rules follow what ccusage 20.0.24 measurably does (``/work/tools/ccusage-notes.md``
§2-4), so that per-session and per-day totals agree with it exactly:

* **Session** = where the *file* is, not the line's ``sessionId``: ``projects/<P>/<S>.jsonl``
  is session S of project directory P, and every file under ``<P>/<S>/`` (sub-agents,
  compaction agents) counts under S too (:func:`locate`).
* **Lines that count** contain the bytes ``"usage":{``, parse as strict JSON, have a parseable
  top-level ``timestamp`` and a ``message.usage`` with integer ``input_tokens`` and
  ``output_tokens``. The line's ``type`` is not checked (``progress`` lines never qualify:
  their usage is nested under ``data``). Rejected: a ``version`` that does not start with
  ``d.d.d``; an empty ``sessionId``/``requestId``/``message.id``/``message.model``; and a line
  with any of :data:`NULL_KEYS` written as ``"<key>":null``.
* **Cache writes** are ``ephemeral_5m + ephemeral_1h`` when ``usage.cache_creation`` is an
  object, else ``cache_creation_input_tokens``; missing counts are 0.
* ``<synthetic>`` lines count (their usage is 0) but name no model; sidechain and API-error
  lines count.

De-duplication (:class:`Deduplicator`): a response is keyed by ``(message.id, requestId)``
across all files, or by ``(message.id, session)`` when it has no request id; lines without a
message id are all kept. Within a key a later line replaces the kept one only when its token
total is strictly larger, except that a main-chain line always beats a sidechain one.
Sidechain replays (same message id and session as a kept entry, another request id, the same
timestamp) are dropped. The ``daily`` variant also keys id-only lines by their timestamp and
drops sidechain replays whatever their timestamp — the two loaders ccusage has.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import PurePosixPath

import orjson

SYNTHETIC_MODEL = "<synthetic>"
USAGE_MARK = b'"usage":{'
NULL_KEYS = (
    "id",
    "cwd",
    "model",
    "speed",
    "costUSD",
    "version",
    "sessionId",
    "requestId",
    "isApiErrorMessage",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
_NULL_KEY = re.compile(b'"(?:' + "|".join(NULL_KEYS).encode() + b')":null')
_VERSION = re.compile(r"\d+\.\d+\.\d+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Location:
    """What a transcript's path (relative to ``projects/``) says: project dir and session."""

    project_dir: str
    session_id: str


def locate(relative: str) -> Location | None:
    """The (project directory, session) a file under ``projects/`` counts towards.

    ``P/S.jsonl`` → (P, S); ``P/S/subagents/x.jsonl`` and ``P/S/x.jsonl`` → (P, S); deeper
    files belong to the directory that holds them (or to the one above ``subagents``).
    """
    parts = PurePosixPath(relative).parts
    if len(parts) < 2:
        return None
    dirs = parts[:-1]
    if len(dirs) == 1:
        project, session = dirs[0], PurePosixPath(parts[-1]).stem
    elif dirs[-1] == "subagents":
        project, session = "/".join(dirs[:-2]), dirs[-2]
    else:
        project, session = "/".join(dirs[:-1]), dirs[-1]
    # Interned: every entry of every file of a session shares the two strings.
    return Location(sys.intern(project), sys.intern(session))


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One counted line: who, when, which model, how many tokens, and its recorded cost."""

    session_id: str
    """The session of the file (:func:`locate`)."""
    project_dir: str
    """The encoded project directory the file is in (what ccusage calls ``projectPath``)."""
    cwd: str | None
    at_ms: int
    """Timestamp, milliseconds since the epoch (UTC)."""
    model: str | None
    """``message.model``; None when absent or ``<synthetic>``."""
    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    cost_usd: Decimal | None
    """The line's own ``costUSD`` when it has one."""
    fast: bool
    """``usage.speed == "fast"`` (priced with the model's fast multiplier)."""
    sidechain: bool
    message_id: str | None
    request_id: str | None
    line_session: str | None
    """The line's ``sessionId`` (used only in de-duplication keys)."""

    @property
    def cache_creation(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    @property
    def model_name(self) -> str | None:
        """The model as reports name it (``-fast`` appended for fast-mode lines)."""
        if self.model is None:
            return None
        return f"{self.model}-fast" if self.fast else self.model


def timestamp_ms(value: object) -> int | None:
    """An ISO-8601 timestamp (``Z`` or an offset; naive means UTC) → epoch milliseconds."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // _MS


def iso_ms(at_ms: int) -> str:
    """Epoch milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return (_EPOCH + at_ms * _MS).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _opt_count(usage: dict[str, object], key: str) -> int | None:
    """A count that may be missing (0); None when present but not an integer."""
    if key not in usage:
        return 0
    return _int(usage[key])


def _interned(value: object, keep: Callable[[str], bool] = bool) -> str | None:
    """A string worth keeping, interned (model, cwd and session names repeat on every line)."""
    return sys.intern(value) if isinstance(value, str) and keep(value) else None


def _nonempty(value: object) -> bool:
    """Absent is fine; present must be a non-empty string."""
    return value is None or (isinstance(value, str) and value != "")


def parse_entry(raw: bytes, location: Location) -> UsageEntry | None:
    """The usage entry of one transcript line, or None when the line does not count."""
    if USAGE_MARK not in raw:
        return None
    if _NULL_KEY.search(raw):
        return None
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(line) is not dict:
        return None
    message = line.get("message")
    if type(message) is not dict:
        return None
    usage = message.get("usage")
    at_ms = timestamp_ms(line.get("timestamp"))
    if type(usage) is not dict or at_ms is None:
        return None
    inp, out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    read = _opt_count(usage, "cache_read_input_tokens")
    flat = _opt_count(usage, "cache_creation_input_tokens")
    if inp is None or out is None or read is None or flat is None:
        return None
    version = line.get("version")
    if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
        return None
    session, request = line.get("sessionId"), line.get("requestId")
    message_id, model = message.get("id"), message.get("model")
    if not (
        _nonempty(session) and _nonempty(request) and _nonempty(message_id) and _nonempty(model)
    ):
        return None
    nested = usage.get("cache_creation")
    if type(nested) is dict:
        five = _int(nested.get("ephemeral_5m_input_tokens", 0))
        hour = _int(nested.get("ephemeral_1h_input_tokens", 0))
        if five is None or hour is None:
            return None
    else:
        five, hour = flat, 0
    cost = line.get("costUSD")
    return UsageEntry(
        session_id=location.session_id,
        project_dir=location.project_dir,
        cwd=_interned(line.get("cwd")),
        at_ms=at_ms,
        model=_interned(model, lambda m: m != SYNTHETIC_MODEL),
        input=inp,
        output=out,
        cache_write_5m=five,
        cache_write_1h=hour,
        cache_read=read,
        cost_usd=Decimal(repr(cost)) if type(cost) in (int, float) else None,
        fast=usage.get("speed") == "fast",
        sidechain=line.get("isSidechain") is True,
        message_id=message_id if isinstance(message_id, str) else None,
        request_id=request if isinstance(request, str) else None,
        line_session=_interned(session, lambda _: True),
    )


class DedupMode(StrEnum):
    """ccusage's two loaders: ``session`` (sessions, blocks) and ``daily``."""

    SESSION = "session"
    DAILY = "daily"


DedupKey = tuple[str, ...]


class Deduplicator:
    """Keeps one entry per response (see the module docstring). Mutable; not thread-safe.

    :meth:`prune` forgets the entries older than a time (the daemon's usage horizon); a copy of
    a forgotten response that arrives later is judged as if it were the first.
    """

    def __init__(self, mode: DedupMode = DedupMode.SESSION) -> None:
        self.mode = mode
        self._keyed: dict[DedupKey, UsageEntry] = {}
        self._unkeyed: list[UsageEntry] = []
        # (message id, session[, timestamp]) → request ids of kept entries, for replays; a
        # tuple, not a set: there is almost always exactly one.
        self._replays: dict[tuple[str, str, int], tuple[str | None, ...]] = {}
        self.seen = 0
        self.replaced = 0

    def _key(self, entry: UsageEntry) -> DedupKey | None:
        if entry.message_id is None:
            return None
        if entry.request_id is not None:
            return ("r", entry.message_id, entry.request_id)
        session = entry.line_session or entry.session_id
        if self.mode is DedupMode.DAILY:
            return ("s", entry.message_id, session, str(entry.at_ms))
        return ("s", entry.message_id, session)

    def _replay_key(self, entry: UsageEntry, message_id: str) -> tuple[str, str, int]:
        at = -1 if self.mode is DedupMode.DAILY else entry.at_ms
        return (message_id, entry.session_id, at)

    def _is_replay(self, entry: UsageEntry) -> bool:
        if not entry.sidechain or entry.message_id is None:
            return False
        kept = self._replays.get(self._replay_key(entry, entry.message_id), ())
        return any(r != entry.request_id for r in kept)

    def _remember(self, entry: UsageEntry) -> None:
        if entry.message_id is not None:
            key = self._replay_key(entry, entry.message_id)
            kept = self._replays.get(key, ())
            if entry.request_id not in kept:
                self._replays[key] = (*kept, entry.request_id)

    def add(self, entry: UsageEntry) -> bool:
        """Offer an entry in processing order; True when it is (now) counted."""
        self.seen += 1
        if self._is_replay(entry):
            return False
        key = self._key(entry)
        if key is None:
            self._unkeyed.append(entry)
            self._remember(entry)
            return True
        kept = self._keyed.get(key)
        if kept is not None:
            # Same chain: the larger total wins; otherwise the main-chain line always does.
            same = kept.sidechain == entry.sidechain
            wins = entry.total > kept.total if same else kept.sidechain
            if not wins:
                return False
            self.replaced += 1
        self._keyed[key] = entry
        self._remember(entry)
        return True

    def prune(self, before_ms: int) -> list[UsageEntry]:
        """Forget the counted entries stamped before ``before_ms``; the ones forgotten."""
        dropped = [e for e in self.entries() if e.at_ms < before_ms]
        if not dropped:
            return dropped
        self._keyed = {k: e for k, e in self._keyed.items() if e.at_ms >= before_ms}
        self._unkeyed = [e for e in self._unkeyed if e.at_ms >= before_ms]
        self._replays = {}
        for entry in self.entries():
            self._remember(entry)
        return dropped

    def entries(self) -> list[UsageEntry]:
        """The counted entries (unordered)."""
        return [*self._keyed.values(), *self._unkeyed]

    def __len__(self) -> int:
        return len(self._keyed) + len(self._unkeyed)
