"""Building a :class:`~contextd.records.model.SessionRecord` from an ended session.

The raw session id never leaves this module: the record carries its HMAC with the install
secret. The project is its directory name or, with ``record_project = "hash"``, a keyed hash
of it. The branch SHA comes from ``git rev-parse HEAD`` in the session's directory (no shell,
bounded time; any failure gives null). The cost prices the session's usage entries with the
usage price table; it is null when any of them cannot be priced, never a made-up 0.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

from contextd.identity import USER_ID
from contextd.models import SessionSnapshot, SessionStatus
from contextd.records.model import RecordTokens, SessionRecord
from contextd.usage.entries import SYNTHETIC_MODEL, UsageEntry
from contextd.usage.pricing import CostMode, PriceTable, entry_cost

ProjectMode = Literal["name", "hash"]
PROJECT_MODES: tuple[ProjectMode, ...] = ("name", "hash")
ENDED = frozenset({SessionStatus.ENDED, SessionStatus.SUPERSEDED, SessionStatus.EXPIRED})
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_NAME = re.compile(r"^[A-Za-z0-9._:/@\[\]-]{1,128}$")  # contextd.records.model.Name
_TEXT_MAX = 200
MAX_PERCENT = 10_000.0  # the record's bound (a tiny reported window can give absurd figures)


def session_id_hash(secret: bytes, session_id: str) -> str:
    """The keyed hash a record names its session by (128 bits, hex)."""
    return hmac.new(secret, b"session:" + session_id.encode(), hashlib.sha256).hexdigest()[:32]


def project_hash(secret: bytes, project: str) -> str:
    return hmac.new(secret, b"project:" + project.encode(), hashlib.sha256).hexdigest()[:16]


def git_head(cwd: str | None, timeout: float = 2.0) -> str | None:
    """The commit checked out in ``cwd`` when it is a git work tree, else None."""
    if not cwd or not os.path.isdir(cwd):
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.decode(errors="replace").strip()
    return sha if done.returncode == 0 and _SHA.match(sha) else None


def session_costs(
    entries: Iterable[UsageEntry], table: PriceTable, session_ids: Iterable[str]
) -> dict[str, Decimal | None]:
    """The cost of each of ``session_ids`` (None: some entry has an unknown price), in one
    pass over the usage entries. Sessions with no entry are left out."""
    wanted = set(session_ids)
    costs: dict[str, Decimal | None] = {}
    for entry in entries:
        sid = entry.session_id
        if sid not in wanted:
            continue
        before = costs.get(sid, Decimal(0))
        if before is None:
            continue  # already unknown
        cost = entry_cost(entry, table, CostMode.AUTO)
        costs[sid] = None if cost is None else before + cost
    return costs


def _text(value: str | None) -> str | None:
    return value[:_TEXT_MAX] if value else None


def _name(value: str | None, otherwise: str | None = None) -> str | None:
    """A vocabulary word as records hold it; anything else (free text) is not recorded."""
    return value if value and _NAME.match(value) else otherwise if value else None


def build_record(
    snap: SessionSnapshot,
    *,
    secret: bytes,
    fallback_identity: str,
    project_mode: ProjectMode = "name",
    branch_sha: str | None = None,
    cost: Decimal | None = None,
) -> SessionRecord:
    """The record of an ended (``ended``/``superseded``/``expired``) session.

    ``cost`` is the priced usage of the session (None: unknown). A session that used no
    tokens costs 0.
    """
    if snap.status not in ENDED:
        msg = f"session is {snap.status.value}, not ended"
        raise ValueError(msg)
    identity = snap.user if snap.user and USER_ID.match(snap.user) else fallback_identity
    project = _text(snap.project)
    if project is not None and project_mode == "hash":
        project = project_hash(secret, project)
    models = sorted({m.model for m in snap.by_model
                     if _name(m.model) and m.model != SYNTHETIC_MODEL})[:50]  # fmt: skip
    if cost is None and snap.tokens.total == 0:
        cost = Decimal(0)
    ended = snap.ended_at if snap.ended_at is not None else snap.last_activity
    return SessionRecord(
        identity_hash=identity,
        session_id_hash=session_id_hash(secret, snap.session_id),
        project=project,
        project_hashed=project is not None and project_mode == "hash",
        started_at=float(snap.started_at),
        ended_at=float(max(ended, snap.started_at)),
        status=snap.status.value,  # type: ignore[arg-type]  # one of ENDED
        end_reason=_name(snap.end_reason, "other"),
        models=models,
        model=_name(snap.model),
        tool_calls=snap.tool_calls,
        responses=snap.responses,
        tokens=RecordTokens(**snap.tokens.as_dict()),
        cost_usd=float(round(cost, 6)) if cost is not None else None,
        window_tokens=snap.window_tokens,
        peak_percent=min(round(float(snap.peak_percent), 2), MAX_PERCENT),
        warn_crossings=snap.warn_crossings,
        critical_crossings=snap.critical_crossings,
        checkpoints=snap.checkpoints,
        tokens_saved=snap.tokens_saved,
        branch_sha=branch_sha if branch_sha and _SHA.match(branch_sha) else None,
        session_type=_name(snap.session_type),
    )
