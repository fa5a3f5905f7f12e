"""The monitor's usage view as a typed snapshot: the active 5-hour block and costs.

From PromQL, the block comes from the ``contextd_block_*`` gauges and the costs from
``contextd_session_cost_usd_total`` (each live session's cost so far, summed per project by the
backend); the burn-rate severity is judged on the non-cache rate gauge with the thresholds
the daemon uses (:class:`~contextd.usage.blocks.BurnThresholds`). From the daemon's JSON API
(``GET /api/usage``, the fallback), the same block figures, and the costs of the sessions and
projects *within the active block* (that is what the live view breaks down): the snapshot's
``scope`` says which. :func:`read_usage` takes the monitor's source and tries PromQL first,
like :class:`~contextd.monitor.data.FallbackSource`; it never raises.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from contextd.daemon_client import DaemonClient
from contextd.errors import QueryError, SourceError
from contextd.exporters import names
from contextd.monitor import queries
from contextd.monitor.data import (
    DaemonSource,
    FallbackSource,
    PromQLSource,
    Source,
    SourceKind,
)
from contextd.monitor.promql import PromQLClient, Sample
from contextd.usage.blocks import DEFAULT_THRESHOLDS, Severity

SCOPE_SESSION = "cost so far of each live session"
SCOPE_BLOCK = "cost within the active block"


@dataclass(frozen=True, slots=True)
class BlockFigures:
    """The active 5-hour block."""

    tokens: int
    cost_usd: float | None
    """None when no entry of the block has a known price."""
    burn_rate: float
    """Tokens (all types) per minute over the recent window."""
    non_cache_rate: float
    """Input + output tokens per minute: what ``severity`` is judged on."""
    severity: Severity
    projected_tokens: int
    projected_cost_usd: float | None
    remaining_seconds: float


@dataclass(frozen=True, slots=True)
class CostRow:
    name: str
    """A session id, or a project name."""
    project: str
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    taken_at: float
    source: SourceKind
    address: str
    backend: str
    block: BlockFigures | None = None
    sessions: tuple[CostRow, ...] = ()
    """Costliest first."""
    projects: tuple[CostRow, ...] = ()
    scope: str = ""
    """What the costs cover (:data:`SCOPE_SESSION` or :data:`SCOPE_BLOCK`)."""
    missing: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def _costliest(rows: Iterable[CostRow]) -> tuple[CostRow, ...]:
    return tuple(sorted(rows, key=lambda r: (-(r.cost_usd or 0.0), r.name)))


# -- PromQL ----------------------------------------------------------------------------------


def _gauges(samples: Iterable[Sample]) -> dict[str, float]:
    return {s.labels.get("__name__", ""): s.value for s in samples}


def _block_from_gauges(gauges: Mapping[str, float]) -> BlockFigures | None:
    if gauges.get(names.BLOCK_ACTIVE.name, 0.0) != 1.0:
        return None

    def value(metric: names.Metric) -> float:
        return gauges.get(metric.name, 0.0)

    non_cache = value(names.BLOCK_NON_CACHE_BURN_RATE)
    return BlockFigures(
        tokens=int(value(names.BLOCK_TOKENS)), cost_usd=value(names.BLOCK_COST),
        burn_rate=value(names.BLOCK_BURN_RATE), non_cache_rate=non_cache,
        severity=DEFAULT_THRESHOLDS.severity(non_cache),
        projected_tokens=int(value(names.BLOCK_PROJECTED_TOKENS)),
        projected_cost_usd=value(names.BLOCK_PROJECTED_COST),
        remaining_seconds=value(names.BLOCK_REMAINING),
    )  # fmt: skip


def promql_usage(source: PromQLSource) -> UsageSnapshot:
    """Raises :class:`SourceError` when the backend cannot be read."""
    client: PromQLClient = source.client
    now = source.clock()
    backend = client.backend()
    gauges = _gauges(client.query(queries.USAGE_BLOCK, at=now))
    sessions = _costliest(
        CostRow(s.labels.get("session_id", ""), s.labels.get("project", ""), s.value)
        for s in client.query(queries.SESSION_COSTS, at=now)
    )
    projects = _costliest(
        CostRow(s.labels.get("project", ""), s.labels.get("project", ""), s.value)
        for s in client.query(queries.PROJECT_COSTS, at=now)
    )
    missing = () if names.BLOCK_ACTIVE.name in gauges else (
        f"no {names.BLOCK_ACTIVE.name} series in {backend} at {client.url}: "
        "is it scraping a daemon with usage accounting?",
    )  # fmt: skip
    return UsageSnapshot(
        taken_at=now, source=SourceKind.PROMQL, address=client.url, backend=backend,
        block=_block_from_gauges(gauges), sessions=sessions, projects=projects,
        scope=SCOPE_SESSION, missing=missing,
    )  # fmt: skip


# -- the daemon's JSON API --------------------------------------------------------------------


def _money(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _block_from_view(block: Mapping[str, Any] | None) -> BlockFigures | None:
    if block is None:
        return None
    rate = block["burn_rate"]
    return BlockFigures(
        tokens=int(block["tokens"]["total"]), cost_usd=_money(block["cost_usd"]),
        burn_rate=float(rate["tokens_per_minute"]),
        non_cache_rate=float(rate["non_cache_tokens_per_minute"]),
        severity=Severity(rate["severity"]),
        projected_tokens=int(block["projection"]["tokens"]),
        projected_cost_usd=_money(block["projection"]["cost_usd"]),
        remaining_seconds=float(block["remaining_seconds"]),
    )  # fmt: skip


def daemon_usage(source: DaemonSource) -> UsageSnapshot:
    """Raises :class:`SourceError` when the daemon cannot be read or answers something else
    than its API promises."""
    daemon: DaemonClient = source.daemon
    now = source.clock()
    view = daemon.get("/api/usage")
    try:
        return UsageSnapshot(
            taken_at=now, source=SourceKind.DAEMON, address=daemon.address,
            backend="contextd daemon", block=_block_from_view(view["block"]),
            sessions=_costliest(CostRow(str(s["session_id"]), str(s["project"]),
                                        _money(s["cost_usd"])) for s in view["sessions"]),
            projects=_costliest(CostRow(str(p["project"]), str(p["project"]),
                                        _money(p["cost_usd"])) for p in view["projects"]),
            scope=SCOPE_BLOCK,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise QueryError(f"unexpected answer from {daemon.address}: {exc!r}") from None


# -- either -------------------------------------------------------------------------------


def read_usage(source: Source) -> UsageSnapshot:
    """The usage snapshot from what ``source`` reads: PromQL first, then the daemon; a
    ``NONE`` snapshot saying why when neither answers (or the source has no usage)."""
    tries: list[tuple[str, PromQLSource | DaemonSource]] = []
    clock = getattr(source, "clock", time.time)
    if isinstance(source, FallbackSource):
        tries = [("PromQL", source.promql), ("daemon", source.daemon)]
    elif isinstance(source, PromQLSource | DaemonSource):
        tries = [("PromQL" if isinstance(source, PromQLSource) else "daemon", source)]
    problems: list[str] = []
    for name, each in tries:
        try:
            snap = promql_usage(each) if isinstance(each, PromQLSource) else daemon_usage(each)
        except SourceError as exc:
            problems.append(f"{name}: {exc}")
            continue
        return replace(snap, problems=tuple(problems))
    if not tries:
        problems.append("this data source has no usage figures")
    return UsageSnapshot(clock(), SourceKind.NONE, "", "", problems=tuple(problems))
