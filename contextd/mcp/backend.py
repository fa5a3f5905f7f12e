"""Where the MCP tools get their data: the :class:`Backend` protocol and its daemon implementation.

The tools only read engine values (frozen :class:`~contextd.models.SessionSnapshot`\\ s and
:class:`~contextd.models.SessionEvent`\\ s) and write observations, so one small protocol
serves every way of running them: inside ``contextd serve`` (:class:`DaemonBackend`, reading
the published values and writing through :meth:`~contextd.daemon.Daemon.observe`), and later a
stdio server reading the transcripts itself when no daemon runs (read-only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from contextd.daemon import Daemon
from contextd.errors import ContextdError
from contextd.events import Observation
from contextd.models import SessionEvent, SessionSnapshot
from contextd.sessions import EngineConfig


class ReadOnlyError(ContextdError):
    """The backend cannot record anything (no daemon owns the state)."""


class Backend(Protocol):
    """What the MCP tools need from whoever holds the sessions."""

    @property
    def engine(self) -> EngineConfig:
        """Thresholds and windows the sessions are judged by."""
        ...

    @property
    def local_user(self) -> str:
        """The user id of the OS user this backend runs as (the default scope)."""
        ...

    @property
    def writable(self) -> bool:
        """Whether :meth:`observe` records anything."""
        ...

    def now(self) -> float:
        """The backend's clock (seconds since the epoch)."""
        ...

    async def sessions(self) -> Sequence[SessionSnapshot]:
        """Every session held in memory (live and recent), in no particular order."""
        ...

    async def session(self, session_id: str) -> SessionSnapshot | None:
        """One session held in memory (live or recently ended); None if unknown. Cheap: the
        caller resolution asks this on every request."""
        ...

    async def events(self, session_id: str) -> Sequence[SessionEvent]:
        """The kept recent events of one session, oldest first."""
        ...

    async def tool_use_session(self, tool_use_id: str) -> str | None:
        """The session a ``PreToolUse`` hook announced ``tool_use_id`` for, if still known."""
        ...

    async def observe(self, observations: list[Observation], source: str) -> None:
        """Apply and persist observations (raises :class:`ReadOnlyError` when not writable)."""
        ...


class DaemonBackend:
    """The in-process :class:`~contextd.daemon.Daemon` as a :class:`Backend`.

    Reads take the daemon's published values without locks (an id index is rebuilt only when
    a new tuple is published); stored events are read on the engine thread;
    writes go through :meth:`Daemon.observe`, so they are committed before the tool answers.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._indexed: tuple[SessionSnapshot, ...] | None = None
        self._index: dict[str, SessionSnapshot] = {}

    @property
    def engine(self) -> EngineConfig:
        return self.daemon.settings.engine

    @property
    def local_user(self) -> str:
        return self.daemon.user

    @property
    def writable(self) -> bool:
        return True

    def now(self) -> float:
        return self.daemon.clock()

    async def sessions(self) -> Sequence[SessionSnapshot]:
        return self.daemon.sessions

    async def session(self, session_id: str) -> SessionSnapshot | None:
        published = self.daemon.sessions
        if published is not self._indexed:
            self._index = {s.session_id: s for s in published}
            self._indexed = published
        return self._index.get(session_id)

    async def events(self, session_id: str) -> Sequence[SessionEvent]:
        store, keep = self.daemon.ingestor.store, self.engine.session_events
        return await self.daemon.run(lambda: store.events(session_id, keep))

    async def tool_use_session(self, tool_use_id: str) -> str | None:
        return self.daemon.tool_uses.session(tool_use_id, self.daemon.clock())

    async def observe(self, observations: list[Observation], source: str) -> None:
        await self.daemon.observe(observations, source)


class FixedSettingsBackend:
    """The part of a backend that is plain values given at construction: the engine settings
    it judges thresholds by, the local user, and its clock (the stdio backends)."""

    def __init__(self, engine: EngineConfig, local_user: str, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._local_user = local_user
        self._clock = clock

    @property
    def engine(self) -> EngineConfig:
        return self._engine

    @property
    def local_user(self) -> str:
        return self._local_user

    def now(self) -> float:
        return self._clock()
