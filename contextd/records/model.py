"""The session-end record: what contextd keeps of a session once it is over (schema version 1).

One record per ended session, identified by ``(identity_hash, session_id_hash)``; a record is
never updated (a re-emit with the same key changes nothing). It holds **no raw identifier**:

=======================  =========================================================================
field                    meaning
=======================  =========================================================================
``schema_version``       record schema version (``1``)
``identity_hash``        the keyed user id (16 hex, :mod:`contextd.identity`)
``session_id_hash``      HMAC-SHA-256 of the session id with the install secret, first 32 hex
``project``              the project's directory name, or its keyed hash (``record_project``)
``project_hashed``       whether ``project`` is a hash
``started_at``           first activity, seconds since the epoch (UTC)
``ended_at``             the end (SessionEnd hook), or the last activity of an expired session
``status``               ``ended``, ``superseded`` (``/clear``) or ``expired`` (idle too long)
``end_reason``           Claude Code's SessionEnd reason (``clear``, ``logout``, …) or null
``models``               every model the session used, sorted; ``model``: the last one
``tool_calls``           tool uses in the session's responses
``responses``            API responses counted (each once)
``tokens``               ``input``, ``output``, ``cache_creation``, ``cache_read``
``cost_usd``             priced with the usage price table; null when a model is unknown
``window_tokens``        the context window at the end
``peak_percent``         highest context usage seen, percent of the window
``warn_crossings``       upward crossings of the first threshold (70 %)
``critical_crossings``   upward crossings of the second threshold (90 %)
``checkpoints``          compactions and explicit checkpoints
``tokens_saved``         context tokens the checkpoints removed
``branch_sha``           ``git rev-parse HEAD`` in the session's directory at the end, or null
``session_type``         how Claude Code was run (:mod:`contextd.environment`), or null
=======================  =========================================================================

Validation is strict (JSON types as written, no coercion, no unknown fields), so a record from
another machine that does not fit is refused with the offending field named.
"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

RECORD_SCHEMA = 1
MAX_BATCH = 1000

Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Count = Annotated[int, Field(ge=0, le=2**62)]
Seconds = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
# Names from a fixed vocabulary (models, end reasons, session types): no spaces, so no free
# text (a prompt, a message) can ride in them.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/@\[\]-]{1,128}$")]


class RecordTokens(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    input: Count = 0
    output: Count = 0
    cache_creation: Count = 0
    cache_read: Count = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read


class SessionRecord(BaseModel):
    """One ended session (see the module docstring for the fields)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    identity_hash: Hex16
    session_id_hash: Hex32
    project: Text | None = None
    project_hashed: bool = False
    started_at: Seconds
    ended_at: Seconds
    status: Literal["ended", "superseded", "expired"]
    end_reason: Name | None = None
    models: Annotated[list[Name], Field(max_length=50)] = []
    model: Name | None = None
    tool_calls: Count = 0
    responses: Count = 0
    tokens: RecordTokens = RecordTokens()
    cost_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    window_tokens: Count | None = None
    peak_percent: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] = 0.0
    warn_crossings: Count = 0
    critical_crossings: Count = 0
    checkpoints: Count = 0
    tokens_saved: Count = 0
    branch_sha: Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")] | None = None
    session_type: Name | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key."""
        return self.identity_hash, self.session_id_hash

    def as_json(self) -> dict[str, object]:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.as_json())


class RecordBatch(BaseModel):
    """``POST /v1/session-events`` with several records: ``{"records": [...]}``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    records: Annotated[list[SessionRecord], Field(min_length=1, max_length=MAX_BATCH)]


def record_from_bytes(data: bytes | str) -> SessionRecord:
    """A record as stored (trusted: it was validated on the way in)."""
    return SessionRecord.model_validate_json(data)
