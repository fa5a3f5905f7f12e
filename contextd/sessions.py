"""The session engine: pure state, injected time, immutable snapshots out.

:class:`SessionManager` takes observations (:mod:`contextd.events`) with the current time and
keeps, per session: context tokens, window, percent, threshold crossings, checkpoints and tokens
saved, token totals, status, and a bounded buffer of recent events. It does no I/O. Adapters
persist what :meth:`SessionManager.drain` hands them and rebuild the engine with
:meth:`SessionManager.adopt`.

Threshold rule: each threshold counts once per upward crossing; it re-arms when usage drops
below it or when a checkpoint is recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from contextd.events import (
    Activity,
    ApiError,
    Compaction,
    Observation,
    Origin,
    Response,
    SessionEnd,
    SessionStart,
    StatusLine,
)
from contextd.models import (
    EventKind,
    ModelUsage,
    SessionEvent,
    SessionSnapshot,
    SessionStatus,
    TokenCounts,
    WindowSource,
)
from contextd.windows import promoted_window, window_for_model

_WINDOW_RANK = {
    WindowSource.CONFIG: 0,
    WindowSource.MODEL: 1,
    WindowSource.OBSERVED: 2,
    WindowSource.STATUSLINE: 3,
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the session engine (times in seconds)."""

    warn_percent: float = 70.0
    critical_percent: float = 90.0
    idle_after: float = 300.0
    expire_after: float = 3600.0
    default_window: int = 200_000
    session_events: int = 500
    global_events: int = 2000
    default_user: str | None = None  # user id given to sessions no source names a user for
    checkpoint_merge_window: float = 300.0  # a hook and a transcript line on one compaction
    supersede_window: float = 60.0  # a /clear's end and the new session's start
    revive_after: float = 30.0  # activity this long after a session's end means it resumed

    def __post_init__(self) -> None:
        if not 0 < self.warn_percent < self.critical_percent <= 100:
            msg = "thresholds must satisfy 0 < warn < critical <= 100"
            raise ValueError(msg)
        if not 0 < self.idle_after <= self.expire_after:
            msg = "idle_after must be positive and not above expire_after"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the last :meth:`SessionManager.drain`: to be persisted together."""

    sessions: tuple[SessionSnapshot, ...]
    events: tuple[SessionEvent, ...]


def project_name(cwd: str | None) -> str | None:
    """The display name of a project: the last component of its directory (POSIX or Windows)."""
    if not cwd:
        return None
    trimmed = cwd.rstrip("/\\")
    if not trimmed:
        return cwd
    return trimmed.replace("\\", "/").rsplit("/", 1)[-1] or trimmed


def _ints(tokens: TokenCounts) -> list[int]:
    return [tokens.input, tokens.output, tokens.cache_creation, tokens.cache_read]


@dataclass(slots=True)
class _Session:
    """Mutable working state of one session; frozen into a :class:`SessionSnapshot`."""

    session_id: str
    status: SessionStatus
    started_at: float
    last_activity: float
    project: str | None = None
    cwd: str | None = None
    model: str | None = None
    user: str | None = None
    git_branch: str | None = None
    version: str | None = None
    entrypoint: str | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    context_tokens: int = 0
    context_at: float | None = None
    window_tokens: int = 200_000
    window_source: WindowSource = WindowSource.CONFIG
    session_type: str | None = None
    # Running totals as mutable integers [input, output, cache_creation, cache_read] (and, per
    # model, a fifth: responses); frozen into TokenCounts only when a snapshot is taken.
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    sidechain_tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    by_model: dict[str, list[int]] = field(default_factory=dict)
    responses: int = 0
    tool_calls: int = 0
    warn_crossings: int = 0
    critical_crossings: int = 0
    warn_armed: bool = True
    critical_armed: bool = True
    peak_percent: float = 0.0
    checkpoints: int = 0
    tokens_saved: int = 0
    pending_checkpoint: int | None = None
    last_checkpoint_at: float | None = None
    last_checkpoint_source: str | None = None
    last_checkpoint_saved: int | None = None
    superseded_by: str | None = None
    events: deque[SessionEvent] = field(default_factory=deque)
    origin: Origin | None = None  # the last origin taken in (not persisted)

    @property
    def percent(self) -> float:
        return 100.0 * self.context_tokens / self.window_tokens if self.window_tokens > 0 else 0.0

    def freeze(self) -> SessionSnapshot:
        return SessionSnapshot(
            session_id=self.session_id,
            status=self.status,
            started_at=self.started_at,
            last_activity=self.last_activity,
            project=self.project,
            cwd=self.cwd,
            model=self.model,
            user=self.user,
            git_branch=self.git_branch,
            version=self.version,
            entrypoint=self.entrypoint,
            ended_at=self.ended_at,
            end_reason=self.end_reason,
            context_tokens=self.context_tokens,
            context_at=self.context_at,
            window_tokens=self.window_tokens,
            window_source=self.window_source,
            session_type=self.session_type,
            tokens=TokenCounts(*self.tokens),
            sidechain_tokens=TokenCounts(*self.sidechain_tokens),
            by_model=tuple(
                ModelUsage(model, TokenCounts(*counts[:4]), counts[4])
                for model, counts in sorted(self.by_model.items())
            ),
            responses=self.responses,
            tool_calls=self.tool_calls,
            warn_crossings=self.warn_crossings,
            critical_crossings=self.critical_crossings,
            warn_armed=self.warn_armed,
            critical_armed=self.critical_armed,
            peak_percent=self.peak_percent,
            checkpoints=self.checkpoints,
            tokens_saved=self.tokens_saved,
            pending_checkpoint=self.pending_checkpoint,
            last_checkpoint_at=self.last_checkpoint_at,
            last_checkpoint_source=self.last_checkpoint_source,
            last_checkpoint_saved=self.last_checkpoint_saved,
            superseded_by=self.superseded_by,
        )

    @classmethod
    def thaw(cls, snap: SessionSnapshot, events: Iterable[SessionEvent], maxlen: int) -> _Session:
        return cls(
            session_id=snap.session_id,
            status=snap.status,
            started_at=snap.started_at,
            last_activity=snap.last_activity,
            project=snap.project,
            cwd=snap.cwd,
            model=snap.model,
            user=snap.user,
            git_branch=snap.git_branch,
            version=snap.version,
            entrypoint=snap.entrypoint,
            ended_at=snap.ended_at,
            end_reason=snap.end_reason,
            context_tokens=snap.context_tokens,
            context_at=snap.context_at,
            window_tokens=snap.window_tokens,
            window_source=snap.window_source,
            session_type=snap.session_type,
            tokens=_ints(snap.tokens),
            sidechain_tokens=_ints(snap.sidechain_tokens),
            by_model={m.model: [*_ints(m.tokens), m.responses] for m in snap.by_model},
            responses=snap.responses,
            tool_calls=snap.tool_calls,
            warn_crossings=snap.warn_crossings,
            critical_crossings=snap.critical_crossings,
            warn_armed=snap.warn_armed,
            critical_armed=snap.critical_armed,
            peak_percent=snap.peak_percent,
            checkpoints=snap.checkpoints,
            tokens_saved=snap.tokens_saved,
            pending_checkpoint=snap.pending_checkpoint,
            last_checkpoint_at=snap.last_checkpoint_at,
            last_checkpoint_source=snap.last_checkpoint_source,
            last_checkpoint_saved=snap.last_checkpoint_saved,
            superseded_by=snap.superseded_by,
            events=deque(events, maxlen=maxlen),
        )


class SessionManager:
    """Per-session context state. Synchronous, no I/O; ``now`` is always passed in."""

    def __init__(self, config: EngineConfig | None = None, *, next_seq: int = 1) -> None:
        self.config = config or EngineConfig()
        self._sessions: dict[str, _Session] = {}
        self._global: deque[SessionEvent] = deque(maxlen=self.config.global_events)
        self._next_seq = next_seq
        self._dirty: set[str] = set()
        self._new_events: list[SessionEvent] = []
        self._published: tuple[SessionSnapshot, ...] | None = ()
        self._frozen: dict[str, SessionSnapshot] = {}
        self._stale: set[str] = set()  # changed since their last freeze
        self._not_live: set[str] = set()  # candidates for eviction

    # -- restore ---------------------------------------------------------------------------

    def adopt(self, snapshot: SessionSnapshot, events: Iterable[SessionEvent] = ()) -> None:
        """Load a persisted session (and its recent events) without marking it changed."""
        self._sessions[snapshot.session_id] = _Session.thaw(
            snapshot, events, self.config.session_events
        )
        self._frozen[snapshot.session_id] = snapshot
        self._stale.discard(snapshot.session_id)
        if snapshot.status.live:
            self._not_live.discard(snapshot.session_id)
        else:
            self._not_live.add(snapshot.session_id)
        self._published = None

    def adopt_global_events(self, events: Iterable[SessionEvent]) -> None:
        self._global.extend(events)

    def knows(self, session_id: str) -> bool:
        return session_id in self._sessions

    @property
    def next_seq(self) -> int:
        return self._next_seq

    # -- input -----------------------------------------------------------------------------

    def apply(self, obs: Observation, now: float) -> tuple[SessionEvent, ...]:
        """Apply one observation; return the events it produced."""
        mark = len(self._new_events)
        session = self._session_for(obs.session_id, obs.at, now, obs.origin)
        self._touch(session, obs.at, now, obs.origin)
        if isinstance(obs, Response):
            self._apply_response(session, obs)
        elif isinstance(obs, Compaction):
            self._apply_compaction(session, obs)
        elif isinstance(obs, StatusLine):
            self._apply_status_line(session, obs)
        elif isinstance(obs, SessionStart):
            self._apply_start(session, obs, now)
        elif isinstance(obs, SessionEnd):
            self._apply_end(session, obs)
        elif isinstance(obs, ApiError):
            self._emit(session, obs.at, EventKind.API_ERROR, status=obs.status,
                       error_type=obs.error_type, retry_after=obs.retry_after,
                       rate_limits=dict(obs.rate_limits))  # fmt: skip
        else:
            assert isinstance(obs, Activity)
        self._changed(session)
        return tuple(self._new_events[mark:])

    def tick(self, now: float) -> tuple[SessionEvent, ...]:
        """Move live sessions to idle or expired as time passes; return the events."""
        mark = len(self._new_events)
        for session in self._sessions.values():
            if session.status.live:
                status = self._classify(session.last_activity, now)
                if status is not session.status:
                    self._set_status(session, status, now)
                    self._changed(session)
        return tuple(self._new_events[mark:])

    def evict(self, keep: int = 0) -> tuple[str, ...]:
        """Forget sessions that are no longer live and whose state was drained (persisted).

        The ``keep`` most recently active of them stay, for the next lines that name them.
        """
        if len(self._not_live) <= keep:
            return ()
        idle = [self._sessions[sid] for sid in self._not_live if sid not in self._dirty]
        if len(idle) <= keep:
            return ()
        idle.sort(key=lambda s: s.last_activity, reverse=True)
        gone = tuple(s.session_id for s in idle[keep:])
        for sid in gone:
            del self._sessions[sid]
            self._frozen.pop(sid, None)
            self._not_live.discard(sid)
        if gone:
            self._published = None
        return gone

    def drain(self) -> Changes:
        """Hand over (and forget) what changed since the last drain, for persistence."""
        sessions = tuple(self._snapshot_of(self._sessions[sid]) for sid in sorted(self._dirty))
        events = tuple(self._new_events)
        self._dirty.clear()
        self._new_events.clear()
        return Changes(sessions, events)

    # -- output ----------------------------------------------------------------------------

    def snapshot(self) -> tuple[SessionSnapshot, ...]:
        """All sessions held in memory, in no particular order (readers sort what they show).

        Immutable, and the same object until something changes; only the sessions that changed
        are frozen anew, so publishing after every small change stays cheap.
        """
        if self._published is None:
            for sid in self._stale:
                found = self._sessions.get(sid)
                if found is not None and sid not in self._frozen:  # drain() may have frozen it
                    self._frozen[sid] = found.freeze()
            self._stale.clear()
            self._published = tuple(self._frozen.values())
        return self._published

    def session(self, session_id: str) -> SessionSnapshot | None:
        found = self._sessions.get(session_id)
        return self._snapshot_of(found) if found is not None else None

    def events(self, session_id: str | None = None) -> tuple[SessionEvent, ...]:
        """Recent events of one session, or of all sessions when ``session_id`` is None."""
        if session_id is None:
            return tuple(self._global)
        found = self._sessions.get(session_id)
        return tuple(found.events) if found is not None else ()

    # -- internals -------------------------------------------------------------------------

    def _snapshot_of(self, session: _Session) -> SessionSnapshot:
        snap = self._frozen.get(session.session_id)
        if snap is None:
            snap = session.freeze()
            self._frozen[session.session_id] = snap
        return snap

    def _changed(self, session: _Session) -> None:
        self._dirty.add(session.session_id)
        self._stale.add(session.session_id)
        self._frozen.pop(session.session_id, None)
        self._published = None

    def _classify(self, last_activity: float, now: float) -> SessionStatus:
        age = now - last_activity
        if age >= self.config.expire_after:
            return SessionStatus.EXPIRED
        if age >= self.config.idle_after:
            return SessionStatus.IDLE
        return SessionStatus.ACTIVE

    def _emit(self, session: _Session, at: float, kind: EventKind, **data: object) -> None:
        event = SessionEvent(self._next_seq, session.session_id, at, kind, data)
        self._next_seq += 1
        session.events.append(event)
        self._global.append(event)
        self._new_events.append(event)

    def _session_for(
        self, session_id: str, at: float, now: float, origin: Origin | None
    ) -> _Session:
        session = self._sessions.get(session_id)
        if session is not None:
            return session
        cwd = origin.cwd if origin else None
        session = _Session(
            session_id=session_id,
            status=self._classify(at, now),
            started_at=at,
            last_activity=at,
            project=project_name(cwd),
            cwd=cwd,
            user=self.config.default_user,
            window_tokens=self.config.default_window,
            events=deque(maxlen=self.config.session_events),
        )
        self._sessions[session_id] = session
        if not session.status.live:
            self._not_live.add(session_id)
        self._emit(session, at, EventKind.SESSION_STARTED, project=session.project)
        return session

    def _touch(self, session: _Session, at: float, now: float, origin: Origin | None) -> None:
        # Where the session runs is what its newest line says, and its project is named by its
        # earliest line: the same answer whatever order files and lines are applied in.
        earliest = at <= session.started_at
        newest = at >= session.last_activity
        session.started_at = min(session.started_at, at)
        session.last_activity = max(session.last_activity, at)
        if origin is not None and origin is not session.origin:
            if newest:
                session.origin = origin
                session.cwd = origin.cwd or session.cwd
                session.git_branch = origin.git_branch or session.git_branch
                session.version = origin.version or session.version
                session.entrypoint = origin.entrypoint or session.entrypoint
            if origin.cwd and (earliest or session.project is None):
                session.project = project_name(origin.cwd)
            if origin.session_type and session.session_type is None:
                session.session_type = origin.session_type
            if origin.user and session.user in (None, self.config.default_user):
                session.user = origin.user  # a reported user beats the default, once
        if session.status in (SessionStatus.ENDED, SessionStatus.SUPERSEDED):
            # Lines written around the end (another clock than the hook's) do not revive it;
            # a SessionStart does (see _apply_start), and so does activity well after the end.
            if session.ended_at is not None and at > session.ended_at + self.config.revive_after:
                self._revive(session, now, at)
        else:
            status = self._classify(session.last_activity, now)
            if status is not session.status:
                self._set_status(session, status, at)

    def _revive(self, session: _Session, now: float, at: float) -> None:
        session.ended_at = None
        session.end_reason = None
        session.superseded_by = None
        self._set_status(session, self._classify(session.last_activity, now), at)

    def _set_status(self, session: _Session, status: SessionStatus, at: float) -> None:
        before = session.status
        session.status = status
        if status.live:
            self._not_live.discard(session.session_id)
        else:
            self._not_live.add(session.session_id)
        self._emit(session, at, EventKind.STATUS_CHANGED, before=before.value, after=status.value)

    def _apply_response(self, session: _Session, obs: Response) -> None:
        usage = obs.usage
        totals = session.tokens
        totals[0] += usage.input
        totals[1] += usage.output
        totals[2] += usage.cache_creation
        totals[3] += usage.cache_read
        if not obs.main_chain:
            side = session.sidechain_tokens
            side[0] += usage.input
            side[1] += usage.output
            side[2] += usage.cache_creation
            side[3] += usage.cache_read
        per_model = session.by_model.get(obs.model)
        if per_model is None:
            per_model = session.by_model[obs.model] = [0, 0, 0, 0, 0]
        per_model[0] += usage.input
        per_model[1] += usage.output
        per_model[2] += usage.cache_creation
        per_model[3] += usage.cache_read
        per_model[4] += obs.new_response
        session.tool_calls += obs.tool_calls
        if obs.new_response:
            session.responses += 1
        if not (obs.main_chain and obs.new_response):
            return
        if session.context_at is not None and obs.at < session.context_at:
            return  # an older response (replayed history) never overrides newer context
        self._set_model(session, obs.model, obs.at)
        session.context_tokens = obs.context_tokens
        session.context_at = obs.at
        wider = promoted_window(session.window_tokens, obs.context_tokens)
        if wider != session.window_tokens and session.window_source is not WindowSource.STATUSLINE:
            self._set_window(session, wider, WindowSource.OBSERVED, obs.at)
        self._measure_pending(session, obs.context_tokens, obs.at)
        if session.status.live:  # the context timeline of history is not worth keeping
            self._emit(
                session,
                obs.at,
                EventKind.RESPONSE,
                context_tokens=obs.context_tokens,
                percent=round(session.percent, 2),
                model=obs.model,
            )
        self._check_thresholds(session, obs.at)

    def _set_model(self, session: _Session, model: str, at: float) -> None:
        """Record the session's model (an event when it changes); unless a stronger source
        set the window, it follows the model's."""
        if model == session.model:
            return
        if session.model is not None:
            self._emit(session, at, EventKind.MODEL_CHANGED, before=session.model, after=model)
        session.model = model
        if _WINDOW_RANK[session.window_source] <= _WINDOW_RANK[WindowSource.MODEL]:
            window = window_for_model(model, self.config.default_window)
            self._set_window(session, window, WindowSource.MODEL, at)

    def _set_window(self, session: _Session, window: int, source: WindowSource, at: float) -> None:
        if window != session.window_tokens:
            self._emit(
                session,
                at,
                EventKind.WINDOW_CHANGED,
                before=session.window_tokens,
                after=window,
                source=source.value,
            )
        session.window_tokens = window
        session.window_source = source

    def _apply_compaction(self, session: _Session, obs: Compaction) -> None:
        pre = obs.pre_tokens if obs.pre_tokens is not None else session.context_tokens
        saved = max(0, pre - obs.post_tokens) if obs.post_tokens is not None else None
        last_at = session.last_checkpoint_at
        near = last_at is not None and abs(obs.at - last_at) <= self.config.checkpoint_merge_window
        if near and session.last_checkpoint_source == obs.source == "hook":
            return  # the same hook delivered again
        if near and session.last_checkpoint_source != obs.source:
            self._merge_checkpoint(session, obs, pre, saved)
            return
        session.checkpoints += 1
        session.warn_armed = True
        session.critical_armed = True
        session.last_checkpoint_at = obs.at
        session.last_checkpoint_source = obs.source
        session.last_checkpoint_saved = saved
        if obs.post_tokens is not None and saved is not None:
            session.tokens_saved += saved
            session.pending_checkpoint = None
            self._set_context(session, obs.post_tokens, obs.at)
        else:
            session.pending_checkpoint = pre
        self._emit(
            session,
            obs.at,
            EventKind.CHECKPOINT,
            trigger=obs.trigger,
            source=obs.source,
            pre_tokens=pre,
            post_tokens=obs.post_tokens,
            tokens_saved=saved,
        )
        if obs.post_tokens is not None:
            # Without it the context figure is the stale pre-compaction one: the thresholds
            # wait for the next real figure instead of counting that again.
            self._check_thresholds(session, obs.at)

    def _merge_checkpoint(
        self, session: _Session, obs: Compaction, pre: int, saved: int | None
    ) -> None:
        """A second source on the last checkpoint: keep one count, take the better figures.

        A transcript boundary knows ``preTokens`` exactly (and, in newer builds, the tokens
        after); a hook only knows that the compaction happened.
        """
        if obs.source != "transcript":
            return
        if obs.post_tokens is not None and saved is not None:
            if session.last_checkpoint_saved is not None:
                session.tokens_saved += saved - session.last_checkpoint_saved
            else:
                session.tokens_saved += saved
                session.pending_checkpoint = None
            session.last_checkpoint_saved = saved
            self._set_context(session, obs.post_tokens, obs.at)
        elif session.last_checkpoint_saved is None:
            session.pending_checkpoint = pre
        session.last_checkpoint_source = obs.source

    def _measure_pending(self, session: _Session, context: int, at: float) -> None:
        """The first context reported after a checkpoint without its after-figure measures it."""
        if session.pending_checkpoint is None:
            return
        saved = max(0, session.pending_checkpoint - context)
        session.tokens_saved += saved
        session.last_checkpoint_saved = saved
        self._emit(
            session,
            at,
            EventKind.CHECKPOINT_MEASURED,
            pre_tokens=session.pending_checkpoint,
            post_tokens=context,
            tokens_saved=saved,
        )
        session.pending_checkpoint = None

    def _set_context(self, session: _Session, tokens: int, at: float) -> None:
        if session.context_at is None or at >= session.context_at:
            session.context_tokens = tokens
            session.context_at = at

    def _apply_status_line(self, session: _Session, obs: StatusLine) -> None:
        if obs.model:
            self._set_model(session, obs.model, obs.at)
        if obs.window_tokens:
            self._set_window(session, obs.window_tokens, WindowSource.STATUSLINE, obs.at)
        if obs.context_tokens is not None and (
            session.context_at is None or obs.at >= session.context_at
        ):
            self._set_context(session, obs.context_tokens, obs.at)
            self._measure_pending(session, obs.context_tokens, obs.at)
        self._check_thresholds(session, obs.at)

    def _apply_start(self, session: _Session, obs: SessionStart, now: float) -> None:
        if (
            session.status in (SessionStatus.ENDED, SessionStatus.SUPERSEDED)
            and session.ended_at is not None
            and obs.at >= session.ended_at
        ):
            self._revive(session, now, obs.at)  # resumed
        if obs.model and session.model is None:
            self._set_model(session, obs.model, obs.at)
        if obs.source != "clear":
            return
        # /clear: the session Claude Code just ended with reason "clear" is replaced by this one.
        for other in self._sessions.values():
            if (
                other is not session
                and other.status is SessionStatus.SUPERSEDED
                and other.superseded_by is None
                and other.ended_at is not None
                and abs(obs.at - other.ended_at) <= self.config.supersede_window
                and (session.cwd is None or other.cwd is None or other.cwd == session.cwd)
            ):
                other.superseded_by = session.session_id
                self._changed(other)
                break

    def _apply_end(self, session: _Session, obs: SessionEnd) -> None:
        status = SessionStatus.SUPERSEDED if obs.reason == "clear" else SessionStatus.ENDED
        session.ended_at = obs.at
        session.end_reason = obs.reason
        if session.status is not status:
            self._set_status(session, status, obs.at)

    def _check_thresholds(self, session: _Session, at: float) -> None:
        percent = session.percent
        session.peak_percent = max(session.peak_percent, percent)
        warn, critical = self.config.warn_percent, self.config.critical_percent
        if session.warn_armed and percent >= warn:
            session.warn_armed = False
            session.warn_crossings += 1
            self._emit(session, at, EventKind.THRESHOLD_CROSSED, threshold=warn, percent=percent)
        elif not session.warn_armed and percent < warn:
            session.warn_armed = True
        if session.critical_armed and percent >= critical:
            session.critical_armed = False
            session.critical_crossings += 1
            self._emit(
                session, at, EventKind.THRESHOLD_CROSSED, threshold=critical, percent=percent
            )
        elif not session.critical_armed and percent < critical:
            session.critical_armed = True
