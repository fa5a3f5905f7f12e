"""The stdio server's backend: the daemon while it answers, the transcripts while it does not.

Claude Code spawns ``contextd mcp`` once per ``claude`` process and keeps it for the whole
session, often hours. The daemon may start after it (the user runs ``contextd serve`` later),
stop, or restart meanwhile; choosing once at start-up would leave the server read-only for
good, or failing for good. :class:`FallbackBackend` decides per request instead:

* while serving from the daemon, a request the daemon does not answer
  (:class:`~contextd.mcp.remote.DaemonUnavailableError`) is served again from the transcripts,
  and the server stays on them;
* while serving from the transcripts, the daemon's ``/healthz`` is probed before a request, at
  most every :data:`PROBE_SECONDS`; when it answers, the server goes back to it.

The read-only transcript backend is built on first need only (its first scan reads every
transcript). ``source`` and ``writable`` describe the backend that served the latest request,
which is what :class:`~contextd.mcp.stdio.SourceNote` reports on each tool result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from contextd.events import Observation
from contextd.mcp.remote import DaemonClient, DaemonUnavailableError, RemoteBackend
from contextd.models import SessionEvent, SessionSnapshot
from contextd.sessions import EngineConfig

if TYPE_CHECKING:  # imported by the caller on first need (it pulls in the whole ingest path)
    from contextd.mcp.local import LocalBackend

log = logging.getLogger("contextd.mcp")
PROBE_SECONDS = 2.0
PROBE_TIMEOUT = 0.25
T = TypeVar("T")


class FallbackBackend:
    """A :class:`~contextd.mcp.backend.Backend` that serves from ``remote`` while the daemon
    answers and from a :class:`LocalBackend` (made by ``make_local``) while it does not."""

    def __init__(
        self,
        client: DaemonClient,
        remote: RemoteBackend,
        make_local: Callable[[], LocalBackend],
        *,
        on_daemon: bool,
        probe_seconds: float = PROBE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.remote = remote
        self._make_local = make_local
        self._local: LocalBackend | None = None
        self._on_daemon = on_daemon
        self._probe_seconds = probe_seconds
        self._monotonic = monotonic
        self._probed_at = monotonic()

    # -- which backend ---------------------------------------------------------------------

    @property
    def local(self) -> LocalBackend:
        if self._local is None:
            self._local = self._make_local()
        return self._local

    @property
    def on_daemon(self) -> bool:
        """Whether the latest request was served by the daemon."""
        return self._on_daemon

    async def _daemon_back(self) -> bool:
        """While on the transcripts: whether the daemon answers again (probed at most every
        ``probe_seconds``)."""
        now = self._monotonic()
        if now - self._probed_at < self._probe_seconds:
            return False
        self._probed_at = now
        if await self.client.answers(timeout=PROBE_TIMEOUT):
            log.warning("the contextd daemon answers at %s again: serving from it",
                        self.client.socket)  # fmt: skip
            self._on_daemon = True
        return self._on_daemon

    async def _serve(self, call: Callable[[RemoteBackend | LocalBackend], Awaitable[T]]) -> T:
        """``call`` on the daemon's backend if it answers, else on the transcripts'."""
        if self._on_daemon or await self._daemon_back():
            try:
                return await call(self.remote)
            except DaemonUnavailableError as exc:
                log.warning("%s: serving read-only from the transcripts", exc)
                self._on_daemon = False
                self._probed_at = self._monotonic()
        return await call(self.local)

    # -- the Backend protocol --------------------------------------------------------------

    @property
    def source(self) -> str:
        return self.remote.source if self._on_daemon else self.local.source

    @property
    def writable(self) -> bool:
        return self._on_daemon

    @property
    def engine(self) -> EngineConfig:
        return self.remote.engine

    @property
    def local_user(self) -> str:
        return self.remote.local_user

    def now(self) -> float:
        return self.remote.now()

    async def sessions(self) -> Sequence[SessionSnapshot]:
        return await self._serve(lambda b: b.sessions())

    async def session(self, session_id: str) -> SessionSnapshot | None:
        return await self._serve(lambda b: b.session(session_id))

    async def events(self, session_id: str) -> Sequence[SessionEvent]:
        return await self._serve(lambda b: b.events(session_id))

    async def tool_use_session(self, tool_use_id: str) -> str | None:
        return await self._serve(lambda b: b.tool_use_session(tool_use_id))

    async def observe(self, observations: list[Observation], source: str) -> None:
        await self._serve(lambda b: b.observe(observations, source))
