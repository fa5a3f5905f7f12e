"""De-duplication of API responses seen more than once.

Claude Code writes one transcript line per content block of a streamed response, each with the
same ``message.id``/``requestId`` and the same usage (``output_tokens`` growing towards the
last line); older builds copied whole histories into a new file on ``--resume``. The ledger
counts each response once, credits it to the session that showed it first, and adds only the
growth of ``output_tokens`` when a later line of the same response reports more.

Storage is injected (:class:`LedgerBackend`): a dict in tests, SQLite in the daemon, so that
what was counted is committed together with the state it produced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from contextd.models import TokenCounts

_TOOL_MARK = -1


def ledger_key(*parts: str) -> int:
    """A stable signed 64-bit key for ``parts`` (fits an SQLite INTEGER PRIMARY KEY)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def response_key(message_id: str | None, request_id: str | None) -> int | None:
    """The de-duplication key of a response, or None when the line has no message id."""
    if not message_id:
        return None
    return ledger_key("r", message_id, request_id or "")


def tool_key(tool_use_id: str) -> int:
    """The key under which a tool-use id is remembered."""
    return ledger_key("t", tool_use_id)


class LedgerBackend(Protocol):
    def get(self, key: int) -> tuple[str, int] | None:
        """Return ``(session_id, counted_output_tokens)`` for a known key."""

    def put(self, key: int, session_id: str, output_tokens: int) -> None:
        """Record (or update) a key."""


class MemoryLedger:
    """A dict-backed :class:`LedgerBackend`."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, int]] = {}

    def get(self, key: int) -> tuple[str, int] | None:
        return self.rows.get(key)

    def put(self, key: int, session_id: str, output_tokens: int) -> None:
        self.rows[key] = (session_id, output_tokens)


@dataclass(frozen=True, slots=True)
class Counted:
    """What one observed line adds: to which session, how much, and whether it is new."""

    session_id: str
    usage: TokenCounts
    new_response: bool


class ResponseLedger:
    """Counts every response once; see the module docstring."""

    def __init__(self, backend: LedgerBackend) -> None:
        self._backend = backend

    def count(self, key: int | None, session_id: str, usage: TokenCounts) -> Counted | None:
        """Return what a line with ``usage`` adds, or None when it adds nothing."""
        if key is None:
            return Counted(session_id, usage, new_response=True)
        known = self._backend.get(key)
        if known is None:
            self._backend.put(key, session_id, usage.output)
            return Counted(session_id, usage, new_response=True)
        owner, counted_output = known
        if usage.output > counted_output:
            self._backend.put(key, owner, usage.output)
            return Counted(owner, TokenCounts(output=usage.output - counted_output), False)
        return None

    def first_sighting(self, tool_use_id: str, session_id: str) -> bool:
        """True the first time a tool-use id is seen (tool calls are counted once)."""
        return self.first_sighting_of(tool_key(tool_use_id), session_id)

    def first_sighting_of(self, key: int, session_id: str) -> bool:
        """:meth:`first_sighting` for a key made by :func:`tool_key` (or :func:`ledger_key`)."""
        if self._backend.get(key) is not None:
            return False
        self._backend.put(key, session_id, _TOOL_MARK)
        return True
