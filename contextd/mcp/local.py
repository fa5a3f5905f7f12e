"""The MCP tools without a daemon: :class:`LocalBackend` reads the transcripts itself.

When no ``contextd serve`` answers, ``contextd mcp`` still answers every read tool: it ingests
the transcripts under the Claude config roots into a private in-memory store (never the user's
state database, whose writer lock belongs to the daemon) and rescans them incrementally before
a read when the last scan is more than :data:`REFRESH_SECONDS` old. It records nothing:
``writable`` is False, and there are no hooks, so no ``PreToolUse`` index either.

Scans run on a daemon thread of their own, one at a time, so the event loop keeps reading
stdin and a long first scan never holds up the process's exit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from contextd.events import Observation
from contextd.ingest.discovery import transcript_files
from contextd.ingest.scanner import TranscriptIngestor
from contextd.mcp.backend import FixedSettingsBackend, ReadOnlyError
from contextd.models import SessionEvent, SessionSnapshot
from contextd.sessions import EngineConfig, SessionManager
from contextd.store import Store

SOURCE = "transcripts (read-only, no daemon)"
REFRESH_SECONDS = 2.0
T = TypeVar("T")


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new daemon thread and wait for its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 (handed to the awaiting task)
            loop.call_soon_threadsafe(_fail, future, exc)
        else:
            loop.call_soon_threadsafe(_succeed, future, result)

    threading.Thread(target=target, name="contextd-mcp-scan", daemon=True).start()
    return await future


class LocalBackend(FixedSettingsBackend):
    """A read-only :class:`~contextd.mcp.backend.Backend` over the transcripts of ``roots``."""

    source = SOURCE

    def __init__(
        self,
        roots: Sequence[Path],
        engine: EngineConfig,
        local_user: str,
        *,
        max_line: int,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if engine.default_user is None:
            engine = replace(engine, default_user=local_user)
        self.roots = list(roots)
        super().__init__(engine, local_user, clock)
        self.refresh_seconds = refresh_seconds
        self.store = Store(":memory:", keep_events=engine.session_events, writer=False)
        manager = SessionManager(engine, next_seq=self.store.next_seq())
        self.ingestor = TranscriptIngestor(self.store, manager, max_line=max_line, clock=clock)
        self._lock = asyncio.Lock()
        self._scanned_at: float | None = None
        self._published: tuple[SessionSnapshot, ...] = ()
        self._index: dict[str, SessionSnapshot] = {}

    @property
    def writable(self) -> bool:
        return False

    def _fresh(self) -> bool:
        scanned = self._scanned_at
        return scanned is not None and time.monotonic() - scanned < self.refresh_seconds

    def _scan(self) -> None:
        self.ingestor.scan(transcript_files(self.roots), self._clock(), jobs=1)
        published = self.ingestor.manager.snapshot()
        self._index = {s.session_id: s for s in published}
        self._published = published
        self._scanned_at = time.monotonic()

    async def refresh(self) -> None:
        """Read what the transcripts gained since the last scan (unless that was just now)."""
        if self._fresh():
            return
        async with self._lock:
            if not self._fresh():
                await _in_thread(self._scan)

    async def sessions(self) -> Sequence[SessionSnapshot]:
        await self.refresh()
        return self._published

    async def session(self, session_id: str) -> SessionSnapshot | None:
        await self.refresh()
        found = self._index.get(session_id)
        if found is not None:
            return found
        async with self._lock:  # an older session the engine no longer holds in memory
            return await _in_thread(lambda: self.store.session(session_id))

    async def events(self, session_id: str) -> Sequence[SessionEvent]:
        await self.refresh()
        keep = self._engine.session_events
        async with self._lock:
            return await _in_thread(lambda: self.store.events(session_id, keep))

    async def tool_use_session(self, tool_use_id: str) -> str | None:
        return None

    async def observe(self, observations: list[Observation], source: str) -> None:
        raise ReadOnlyError(
            "no contextd daemon is running, so nothing can be recorded: start `contextd serve`"
        )
