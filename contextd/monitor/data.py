"""What the monitor shows, as typed snapshots, from PromQL or from the daemon's JSON API.

The UI, ``contextd monitor --once [--json]`` and the tests all read a :class:`MonitorSnapshot`
from a source; none of them knows which queries made it. Three sources:

* :class:`PromQLSource`: Prometheus or VictoriaMetrics, through the metric contract. History
  (sparklines, the detail chart) comes from range queries; crossing rates from ``rate()``.
* :class:`DaemonSource`: the daemon's ``/api/*``. Current values are the same, but history is
  only what the daemon keeps in memory (its recent ``response`` events), and there are no rates.
* :class:`FallbackSource`: PromQL first, the daemon when no PromQL backend answers, and a
  snapshot of kind ``NONE`` (never an exception) when neither does.

Time is injected (``clock``), so a snapshot of fixed data is the same every time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

from contextd.daemon_client import DaemonClient
from contextd.errors import QueryError, SourceError
from contextd.exporters import names
from contextd.monitor import queries
from contextd.monitor.promql import PromQLClient, Sample

Clock = Callable[[], float]

HISTORY_SECONDS = 1800.0  # the sparklines' span: the last 30 minutes
HISTORY_STEP = 60.0
DETAIL_SECONDS = 3600.0  # the detail chart's span
DETAIL_STEP = 30.0
EVENTS_LIMIT = 500  # daemon events read for the fallback's history


class State(StrEnum):
    """A session's badge: at or above the first threshold WARNING, the second CRITICAL."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Thresholds:
    warn: float = 70.0
    critical: float = 90.0

    def state(self, percent: float) -> State:
        if percent >= self.critical:
            return State.CRITICAL
        if percent >= self.warn:
            return State.WARNING
        return State.OK


DEFAULT_THRESHOLDS = Thresholds()


class SourceKind(StrEnum):
    PROMQL = "promql"
    DAEMON = "daemon"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    project: str
    model: str
    context_tokens: int
    window_tokens: int
    percent: float
    state: State
    checkpoints: int = 0
    tokens_saved: int = 0
    duration_seconds: float = 0.0
    warn_crossings: int = 0
    critical_crossings: int = 0
    history: tuple[float, ...] = ()  # usage percent, oldest first

    @property
    def average_saved(self) -> float | None:
        """Tokens one checkpoint saved on average; None before the first checkpoint."""
        return self.tokens_saved / self.checkpoints if self.checkpoints else None


@dataclass(frozen=True, slots=True)
class Aggregate:
    active_sessions: int = 0
    total_context_tokens: int = 0
    average_percent: float = 0.0
    warn_crossings: int = 0
    critical_crossings: int = 0
    checkpoints: int = 0
    tokens_saved: int = 0
    # Upward crossings per hour over the last 5 minutes; None where the source has no rates.
    warn_rate_per_hour: float | None = None
    critical_rate_per_hour: float | None = None
    history: tuple[float, ...] = ()  # total context tokens, oldest first

    @property
    def average_tokens(self) -> float:
        return self.total_context_tokens / self.active_sessions if self.active_sessions else 0.0


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """Everything one refresh shows. ``sessions`` are fullest first."""

    taken_at: float
    source: SourceKind
    address: str  # where the data came from (URL or socket); "" for NONE
    backend: str  # "VictoriaMetrics", "Prometheus 2.42.0", "contextd daemon"
    sessions: tuple[SessionRow, ...] = ()
    aggregate: Aggregate = field(default_factory=Aggregate)
    uptime_seconds: float | None = None  # the daemon's, when it answers
    missing: tuple[str, ...] = ()  # what this source cannot show
    problems: tuple[str, ...] = ()  # sources that failed, and why

    @property
    def top(self) -> tuple[SessionRow, ...]:
        return self.sessions[: queries.TOP]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["top"] = [row.session_id for row in self.top]
        for row, raw in zip(self.sessions, data["sessions"], strict=True):
            raw["average_saved"] = row.average_saved
        data["aggregate"]["average_tokens"] = self.aggregate.average_tokens
        finite: dict[str, Any] = _finite(data)
        return finite


@dataclass(frozen=True, slots=True)
class EventRow:
    at: str  # ISO-8601 UTC, as the daemon gives it
    kind: str
    summary: str


@dataclass(frozen=True, slots=True)
class SessionDetail:
    session: SessionRow | None
    history: tuple[tuple[float, float], ...] = ()  # (unix seconds, percent)
    events: tuple[EventRow, ...] = ()
    notes: tuple[str, ...] = ()


class Source(Protocol):
    """What the UI and ``--once`` read."""

    def snapshot(self) -> MonitorSnapshot: ...

    def detail(self, session_id: str) -> SessionDetail: ...


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _number(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _scalar(samples: list[Sample]) -> float:
    """The value of a one-sample aggregate; 0 when the vector is empty (no sessions)."""
    return _number(samples[0].value) if samples else 0.0


# -- the daemon's event list, shared by both sources (details, fallback history) -------------


def _summary(kind: str, data: Mapping[str, Any]) -> str:
    if kind == "response":
        return f"{data.get('context_tokens', '?')} tokens ({data.get('percent', '?')} %)"
    if kind == "threshold_crossed":
        return f"crossed {data.get('threshold')} % at {data.get('percent')} %"
    if kind in ("model_changed", "status_changed"):
        return f"{data.get('before')} → {data.get('after')}"
    return ", ".join(f"{key}={value}" for key, value in data.items() if value is not None)


def _event_rows(raw: Iterable[Mapping[str, Any]]) -> tuple[EventRow, ...]:
    return tuple(EventRow(str(e["at"]), str(e["kind"]), _summary(str(e["kind"]), e["data"]))
                 for e in raw)  # fmt: skip


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _percent_points(raw: Iterable[Mapping[str, Any]]) -> tuple[tuple[float, float], ...]:
    """``(time, percent)`` of the daemon's events that carry a usage percent (responses,
    threshold crossings): the only history the daemon keeps."""
    return tuple((_iso_seconds(str(e["at"])), float(e["data"]["percent"])) for e in raw
                 if isinstance(e.get("data", {}).get("percent"), int | float))  # fmt: skip


# -- PromQL ----------------------------------------------------------------------------------


def _row_from_series(
    sid: str, by_metric: Mapping[str, Sample], thresholds: Thresholds
) -> SessionRow:
    def value(metric: names.Metric) -> float:
        sample = by_metric.get(metric.name)
        return _number(sample.value) if sample is not None else 0.0

    labels = next(iter(by_metric.values())).labels
    percent = value(names.CONTEXT_PERCENT)
    return SessionRow(
        session_id=sid, project=labels.get("project", ""), model=labels.get("model", ""),
        context_tokens=int(value(names.CONTEXT_TOKENS)),
        window_tokens=int(value(names.CONTEXT_WINDOW)), percent=percent,
        state=thresholds.state(percent), checkpoints=int(value(names.CHECKPOINTS)),
        tokens_saved=int(value(names.TOKENS_SAVED)),
        duration_seconds=value(names.DURATION),
        warn_crossings=int(value(names.THRESHOLD_70)),
        critical_crossings=int(value(names.THRESHOLD_90)),
    )  # fmt: skip


def _ranked(rows: Iterable[SessionRow], top_ids: list[str]) -> tuple[SessionRow, ...]:
    """Fullest first: the backend's ``topk`` set leads, the rest follow; ties by session id."""
    first = {sid: i for i, sid in enumerate(top_ids)}
    return tuple(sorted(rows, key=lambda r: (r.session_id not in first, -r.percent,
                                             r.session_id)))  # fmt: skip


class PromQLSource:
    """A snapshot from a PromQL backend; the daemon (optional) adds uptime and events."""

    def __init__(
        self,
        client: PromQLClient,
        *,
        daemon: DaemonClient | None = None,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        clock: Clock = time.time,
    ) -> None:
        self.client = client
        self.daemon = daemon
        self.thresholds = thresholds
        self.clock = clock
        self._backend: str | None = None

    def _uptime(self) -> float | None:
        if self.daemon is None:
            return None
        try:
            health = self.daemon.get("/healthz")
        except SourceError:
            return None
        uptime = health.get("uptime_seconds") if isinstance(health, dict) else None
        return float(uptime) if isinstance(uptime, int | float) else None

    def _sessions(self, now: float) -> tuple[SessionRow, ...]:
        grouped: dict[str, dict[str, Sample]] = {}
        for sample in self.client.query(queries.SESSIONS, at=now):
            sid = sample.labels.get("session_id")
            if sid is not None:
                grouped.setdefault(sid, {})[sample.labels.get("__name__", "")] = sample
        top = [s.labels.get("session_id", "") for s in
               self.client.query(queries.TOP_SESSIONS, at=now)]  # fmt: skip
        rows = _ranked((_row_from_series(sid, m, self.thresholds) for sid, m in grouped.items()),
                       top)  # fmt: skip
        if not rows:
            return rows
        histories = {
            series.labels.get("session_id", ""): series.values
            for series in self.client.query_range(
                queries.percent_history(r.session_id for r in rows[: queries.TOP]),
                now - HISTORY_SECONDS, now, HISTORY_STEP,
            )
        }  # fmt: skip
        return tuple(replace(r, history=histories.get(r.session_id, ())) for r in rows)

    def _aggregate(self, now: float, rows: tuple[SessionRow, ...]) -> Aggregate:
        hour = 3600.0
        totals = self.client.query_range(queries.TOTAL_CONTEXT, now - HISTORY_SECONDS, now,
                                         HISTORY_STEP)  # fmt: skip
        return Aggregate(
            active_sessions=int(_scalar(self.client.query(queries.ACTIVE_SESSIONS, at=now))),
            total_context_tokens=int(_scalar(self.client.query(queries.TOTAL_CONTEXT, at=now))),
            average_percent=_scalar(self.client.query(queries.AVERAGE_PERCENT, at=now)),
            warn_crossings=sum(r.warn_crossings for r in rows),
            critical_crossings=sum(r.critical_crossings for r in rows),
            checkpoints=sum(r.checkpoints for r in rows),
            tokens_saved=sum(r.tokens_saved for r in rows),
            warn_rate_per_hour=_scalar(self.client.query(queries.WARN_RATE, at=now)) * hour,
            critical_rate_per_hour=_scalar(self.client.query(queries.CRITICAL_RATE, at=now)) * hour,
            history=totals[0].values if totals else (),
        )

    def snapshot(self) -> MonitorSnapshot:
        """Raises :class:`SourceError` when the backend cannot be read."""
        now = self.clock()
        if self._backend is None:
            self._backend = self.client.backend()
        rows = self._sessions(now)
        missing = () if rows else (
            f"no contextd series in {self._backend} at {self.client.url}: "
            "is it scraping the daemon's /metrics?",
        )  # fmt: skip
        return MonitorSnapshot(
            taken_at=now, source=SourceKind.PROMQL, address=self.client.url,
            backend=self._backend, sessions=rows, aggregate=self._aggregate(now, rows),
            uptime_seconds=self._uptime(), missing=missing,
        )  # fmt: skip

    def detail(self, session_id: str) -> SessionDetail:
        now = self.clock()
        rows = {r.session_id: r for r in self._sessions(now)}
        series = self.client.query_range(queries.percent_history([session_id]),
                                         now - DETAIL_SECONDS, now, DETAIL_STEP)  # fmt: skip
        history = series[0].points if series else ()
        events: tuple[EventRow, ...] = ()
        notes: tuple[str, ...] = ()
        if self.daemon is None:
            notes = ("recent events come from the daemon: none configured",)
        else:
            try:
                path = f"/api/sessions/{quote(session_id, safe='')}"
                events = _event_rows(self.daemon.get(path)["events"])
            except SourceError as exc:
                notes = (f"recent events come from the daemon: {exc}",)
            except (KeyError, TypeError, ValueError) as exc:
                notes = (f"recent events: unexpected answer from the daemon: {exc!r}",)
        return SessionDetail(rows.get(session_id), history, events[::-1], notes)


# -- the daemon's JSON API --------------------------------------------------------------------


def _row_from_view(view: Mapping[str, Any], thresholds: Thresholds) -> SessionRow:
    percent = float(view["context_percent"])
    return SessionRow(
        session_id=str(view["session_id"]), project=str(view.get("project") or ""),
        model=str(view.get("model") or ""), context_tokens=int(view["context_tokens"]),
        window_tokens=int(view["context_window"]), percent=percent,
        state=thresholds.state(percent), checkpoints=int(view["checkpoints"]),
        tokens_saved=int(view["tokens_saved"]),
        duration_seconds=float(view["duration_seconds"]),
        warn_crossings=int(view["threshold_warn_crossings"]),
        critical_crossings=int(view["threshold_critical_crossings"]),
    )  # fmt: skip


DAEMON_MISSING = (
    "history: only the daemon's recent events (no range queries)",
    "crossing rates: need PromQL (totals shown instead)",
)


class DaemonSource:
    """A snapshot from the daemon's JSON API (the fallback when no PromQL backend answers)."""

    def __init__(
        self, daemon: DaemonClient, *, thresholds: Thresholds = DEFAULT_THRESHOLDS,
        clock: Clock = time.time,
    ) -> None:  # fmt: skip
        self.daemon = daemon
        self.thresholds = thresholds
        self.clock = clock

    def _get(self, path: str) -> dict[str, Any]:
        answer = self.daemon.get(path)
        if not isinstance(answer, dict):
            raise QueryError(f"the daemon answered {path} with {type(answer).__name__}")
        return answer

    def snapshot(self) -> MonitorSnapshot:
        """Raises :class:`SourceError` when the daemon cannot be read, or answers something
        other than its API promises (another program on that port, say)."""
        try:
            return self._snapshot()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise QueryError(f"unexpected answer from {self.daemon.address}: {exc!r}") from None

    def detail(self, session_id: str) -> SessionDetail:
        try:
            return self._detail(session_id)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise QueryError(f"unexpected answer from {self.daemon.address}: {exc!r}") from None

    def _snapshot(self) -> MonitorSnapshot:
        now = self.clock()
        listing = self._get("/api/sessions")
        stats = self._get("/api/stats")
        events = self._get(f"/api/events?limit={EVENTS_LIMIT}")["events"]
        history: dict[str, list[float]] = {}
        for event in events:
            for _, percent in _percent_points([event]):
                history.setdefault(str(event["session_id"]), []).append(percent)
        rows = _ranked((replace(_row_from_view(v, self.thresholds),
                                history=tuple(history.get(str(v["session_id"]), ())))
                        for v in listing["sessions"]), [])  # fmt: skip
        context = stats["context"]
        aggregate = Aggregate(
            active_sessions=int(stats["sessions"]["live"]),
            total_context_tokens=int(context["total_tokens"]),
            average_percent=float(context["average_percent"]),
            warn_crossings=int(stats["thresholds"]["warn_crossings"]),
            critical_crossings=int(stats["thresholds"]["critical_crossings"]),
            checkpoints=int(stats["checkpoints"]), tokens_saved=int(stats["tokens_saved"]),
        )  # fmt: skip
        return MonitorSnapshot(
            taken_at=now, source=SourceKind.DAEMON, address=self.daemon.address,
            backend="contextd daemon", sessions=rows, aggregate=aggregate,
            uptime_seconds=float(stats["uptime_seconds"]), missing=DAEMON_MISSING,
        )  # fmt: skip

    def _detail(self, session_id: str) -> SessionDetail:
        view = self._get(f"/api/sessions/{quote(session_id, safe='')}")
        events = view.get("events", [])
        return SessionDetail(
            _row_from_view(view, self.thresholds), _percent_points(events),
            _event_rows(events)[::-1], ("history: only the daemon's recent events",),
        )  # fmt: skip


class FallbackSource:
    """PromQL when it answers, else the daemon, else a ``NONE`` snapshot saying why."""

    def __init__(self, promql: PromQLSource, daemon: DaemonSource) -> None:
        self.promql = promql
        self.daemon = daemon
        self.clock = promql.clock

    def snapshot(self) -> MonitorSnapshot:
        try:
            return self.promql.snapshot()
        except SourceError as exc:
            promql_problem = f"PromQL: {exc}"
        try:
            snap = self.daemon.snapshot()
        except SourceError as exc:
            return MonitorSnapshot(
                taken_at=self.clock(), source=SourceKind.NONE, address="", backend="",
                problems=(promql_problem, f"daemon: {exc}"),
            )  # fmt: skip
        return replace(snap, problems=(promql_problem,))

    def detail(self, session_id: str) -> SessionDetail:
        try:
            return self.promql.detail(session_id)
        except SourceError:
            pass
        try:
            return self.daemon.detail(session_id)
        except SourceError as exc:
            return SessionDetail(None, notes=(f"no data source answered: {exc}",))
