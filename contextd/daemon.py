"""The daemon's runtime: one engine thread, published snapshots, background tasks.

Every change to the engine and the store runs on one dedicated thread (a single-worker
executor), in arrival order: hooks, the status line, transcript reads, the idle ticker. Each
step commits before it is acknowledged (an HTTP 2xx means committed) and then publishes
immutable values — the sessions in memory, recent events, counters — that HTTP handlers, the
Prometheus collector and the OTLP reader read without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import watchfiles

from contextd.config import Settings
from contextd.errors import ContextdError, StoreError
from contextd.events import Observation
from contextd.identity import ToolUseIndex, install_secret, local_user_id
from contextd.ingest.discovery import claude_roots, transcript_files
from contextd.ingest.scanner import ScanResult, TranscriptIngestor, default_jobs
from contextd.ingest.transcripts import ParseStats, RecordResolver, ResponseLine
from contextd.ledger import ResponseLedger
from contextd.models import SessionEvent, SessionSnapshot
from contextd.records.service import History, HistoryConfig, usage_costs
from contextd.sessions import SessionManager
from contextd.store import Store
from contextd.usage.gauges import EMPTY_USAGE, UsageMetrics
from contextd.usage.report import UsageOptions
from contextd.usage.service import UsageService, load_prices

if TYPE_CHECKING:
    from contextd.exporters.otlp import OtlpExporter

log = logging.getLogger("contextd")
T = TypeVar("T")
Observed = Observation | ResponseLine
"""What :meth:`Daemon.observe` takes: a ResponseLine (the API proxy's view of a response) is
de-duplicated by the ledger with the transcripts' lines, so a response seen twice counts once."""
_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def settle_heap() -> None:
    """Collect once, then move every object alive now (modules, the MCP SDK, the scan's
    results) out of the cyclic GC's reach (``gc.freeze``). Without it the oldest generation
    holds ~100k long-lived objects, and each full collection under load stopped the daemon
    for 60-90 ms (measured: one per ~10 s at 500 hooks/s), far beyond a hook's budget; after
    it, full collections walk only what was made since (a few ms)."""
    gc.collect()
    gc.freeze()


class Daemon:
    """Owns the store, the engine and the transcript source of one ``contextd serve``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        settle: bool = False,
    ) -> None:
        """``settle``: :func:`settle_heap` once the initial scan is done (the ``contextd serve``
        process; not a daemon embedded in another program, such as the tests)."""
        self.settings = settings
        self.settle = settle
        self.clock = clock
        self.started_at = clock()
        self.roots: list[Path] = claude_roots(settings.config_dirs)
        self.user = local_user_id(install_secret(settings.db.parent), settings.identity_hash)
        self.tool_uses = ToolUseIndex()
        # Published values (replaced whole, never mutated).
        self.sessions: tuple[SessionSnapshot, ...] = ()
        self.events: tuple[SessionEvent, ...] = ()
        self.counters: Mapping[str, int] = {}
        self.ready = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contextd-engine")
        self._ingestor: TranscriptIngestor | None = None
        self._store: Store | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_counts: Counter[str] = Counter()
        self._otlp: OtlpExporter | None = None
        self._inbox: list[tuple[Sequence[Observed], str, asyncio.Future[None]]] = []
        self._inbox_lock = threading.Lock()
        # Usage accounting reads the transcripts on its own (read-only, ccusage's rules) and
        # keeps only the last usage_horizon_hours of entries (contextd.usage.service).
        self.usage = UsageService(
            self.roots, load_prices(settings.pricing), clock=clock,
            horizon_hours=settings.usage_horizon_hours,
        )  # fmt: skip
        self.usage_metrics: UsageMetrics = EMPTY_USAGE
        self.history: History | None = None  # session records (contextd.records), from start()

    # -- engine thread -------------------------------------------------------------------------

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the engine thread and wait for it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    @property
    def ingestor(self) -> TranscriptIngestor:
        if self._ingestor is None:
            raise ContextdError("the daemon has not started")
        return self._ingestor

    def _open(self) -> None:
        engine = self.settings.engine
        if engine.default_user is None:
            engine = replace(engine, default_user=self.user)
        self._store = Store(self.settings.db, keep_events=engine.session_events,
                            autocheckpoint=False)  # see _checkpointer  # fmt: skip
        manager = SessionManager(engine, next_seq=self._store.next_seq())
        self._ingestor = TranscriptIngestor.open(
            self._store, manager, max_line=self.settings.max_line_bytes
        )
        self._publish()

    def _publish(self) -> None:
        ingestor = self.ingestor
        self.sessions = ingestor.manager.snapshot()
        self.events = ingestor.manager.events()
        self.counters = ingestor.store.counters()

    def _commit(self) -> None:
        extra = dict(self._pending_counts)
        try:
            self.ingestor.commit(extra)
        except StoreError:
            self._recover()
            raise
        self._pending_counts.clear()
        self._publish()

    def _recover(self) -> None:
        """After a failed commit, rebuild the engine from the store: memory must never hold
        what was not committed (the transcripts' lines are read again from their cursors)."""
        log.error("commit failed; reloading state from %s", self.settings.db)
        self._pending_counts.clear()
        store = self.ingestor.store
        manager = SessionManager(self.ingestor.manager.config, next_seq=store.next_seq())
        self._ingestor = TranscriptIngestor.open(
            store, manager, max_line=self.settings.max_line_bytes
        )
        self._publish()

    def _scan(self, jobs: int) -> ScanResult:
        result = self.ingestor.scan(transcript_files(self.roots), self.clock(), jobs=jobs)
        self._publish()
        return result

    def _ingest(self, paths: Iterable[str]) -> int:
        ingestor, now, lines = self.ingestor, self.clock(), 0
        for path in paths:
            lines += ingestor.ingest_file(path, now, commit=False)
        self._commit()
        return lines

    def _observe_batch(self) -> None:
        """Apply every observation waiting in the inbox and commit them together.

        HTTP payloads that arrive while the engine thread is busy wait in the inbox; taking
        them all at once makes one transaction of them (group commit). Each request is
        answered only after that commit, with its outcome.
        """
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        if not batch:
            return
        now = self.clock()
        error: BaseException | None = None
        try:
            for observations, counter, _ in batch:
                self.ingestor.apply(self._resolved(observations), now)
                self._pending_counts[counter] += 1
            self._commit()
        except StoreError as exc:
            error = exc
        for _, _, future in batch:
            loop = future.get_loop()
            loop.call_soon_threadsafe(_settle, future, error)

    def _resolved(self, observations: Sequence[Observed]) -> list[Observation]:
        """Observations with each ResponseLine resolved through the ledger (as a transcript's)."""
        if not any(type(o) is ResponseLine for o in observations):
            return list(observations)  # type: ignore[arg-type]  # no ResponseLine in it
        resolver = RecordResolver(ResponseLedger(self.ingestor.store.ledger), ParseStats())
        out: list[Observation] = []
        for obs in observations:
            if type(obs) is ResponseLine:
                out.extend(resolver.resolve([obs]))
            else:
                out.append(obs)  # type: ignore[arg-type]  # an Observation
        return out

    def _tick(self) -> None:
        self.ingestor.manager.tick(self.clock())
        self._commit()

    def _close(self) -> None:
        if self._ingestor is not None:
            self._commit()
            self.ingestor.store.close()

    # -- public, async ---------------------------------------------------------------------

    async def observe(
        self, observations: Sequence[Observed], event: str, *, counter: str | None = None
    ) -> None:
        """Apply and commit observations from an HTTP source; returns once committed (and
        raises :class:`~contextd.errors.StoreError` when the commit failed). Each call counts
        one ``counter`` (default ``hook_events_<event>``)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._inbox_lock:
            self._inbox.append((observations, counter or f"hook_events_{event}", future))
            first = len(self._inbox) == 1
        if first:  # otherwise a batch is already scheduled and will take this one too
            self._executor.submit(self._observe_batch)
        await future

    async def ingest(self, paths: Iterable[str]) -> int:
        paths = list(paths)
        return await self.run(lambda: self._ingest(paths))

    def transcript_under_roots(self, path: str) -> str | None:
        """``path`` if it is a transcript inside a watched Claude root, else None (a hook must
        not make the daemon read arbitrary files)."""
        if not path.endswith(".jsonl"):
            return None
        try:
            resolved = Path(path).resolve()
        except (OSError, RuntimeError):
            return None
        for root in self.roots:
            if resolved.is_relative_to((root / "projects").resolve()):
                return str(resolved)
        return None

    async def start(self) -> None:
        """Open the store, then catch up on transcripts in the background (``ready`` turns
        true when done; hooks that arrive meanwhile queue behind it on the engine thread)."""
        await self.run(self._open)
        self.history = await asyncio.to_thread(self._open_history)
        self._start_otlp()
        self._tasks = [asyncio.create_task(self._catch_up(), name="contextd-catch-up")]
        self._tasks.append(asyncio.create_task(self._usage_refresher(), name="contextd-usage"))

    def _open_history(self) -> History:
        return History(HistoryConfig.from_settings(self.settings),
                       secret=install_secret(self.settings.db.parent), local_user=self.user,
                       costs=usage_costs(self.usage))  # fmt: skip

    def _history_tasks(self) -> list[asyncio.Task[None]]:
        """Record ended sessions (after the catch-up scan), and forward them when asked."""
        history = self.history
        if history is None:
            return []

        def stored() -> list[SessionSnapshot]:
            return [s for s in self.ingestor.store.sessions() if not s.live]

        tasks = [asyncio.create_task(
            history.run(lambda: self.sessions, lambda: self.run(stored), self.clock,
                        self.settings.tick_interval), name="contextd-history")]  # fmt: skip
        if history.forwarder is not None:
            tasks.append(asyncio.create_task(history.forwarder.run(), name="contextd-forward"))
        return tasks

    def _start_otlp(self) -> None:
        """Push the metrics over OTLP when the standard OTEL_* environment asks for it."""
        if not any(os.environ.get(k) for k in _OTLP_ENDPOINTS):
            return  # the OpenTelemetry SDK is not even imported
        from contextd.exporters import otlp  # noqa: PLC0415 (heavy, and only when asked)

        self._otlp = otlp.from_env(
            lambda: self.sessions, lambda: self.counters, max_series=self.settings.max_series,
            usage=lambda: self.usage_metrics,
        )  # fmt: skip
        if self._otlp is not None:
            self._otlp.start()
            log.info("pushing metrics over OTLP")

    async def _catch_up(self) -> None:
        # Watch first, then scan: a file written meanwhile is seen by one or the other. The
        # watcher registers its watches synchronously on its first step, before it awaits.
        self._tasks.append(asyncio.create_task(self._watcher(), name="contextd-watch"))
        await asyncio.sleep(0)
        result = await self.run(lambda: self._scan(default_jobs()))
        log.info("initial scan: %d files, %d lines in %.2fs", result.files, result.lines,
                 result.seconds)  # fmt: skip
        if self.settle:
            settle_heap()
        self.ready = True
        self._tasks += [
            asyncio.create_task(self._ticker(), name="contextd-ticker"),
            asyncio.create_task(self._rescanner(), name="contextd-rescan"),
            asyncio.create_task(self._checkpointer(), name="contextd-checkpoint"),
            *self._history_tasks(),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.run(self._close)
        self._executor.shutdown(wait=True)
        if self.history is not None:
            self.history.close()
        if self._otlp is not None:
            exporter = self._otlp
            await asyncio.to_thread(exporter.shutdown, 5.0)  # one bounded last export

    # -- background tasks -------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_interval)
            await self._guarded(self._tick)

    async def _checkpointer(self) -> None:
        """Checkpoint the WAL every second on a thread of its own: its fsync never lands on a
        hook's commit (about 30 ms here, against well under 1 ms for the commit itself)."""
        store = self.ingestor.store
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(store.checkpoint)
            except StoreError as exc:
                log.warning("%s", exc)

    def refresh_usage(self) -> None:
        """Read new usage lines and publish the usage metrics (on any thread)."""
        self.usage.refresh()
        live = [s.session_id for s in self.sessions if s.live]
        self.usage_metrics = self.usage.metrics(live, UsageOptions())

    async def _usage_refresher(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh_usage)
            except Exception:  # a top-level loop: log and go on
                log.exception("usage refresh failed")
            await asyncio.sleep(self.settings.usage_interval)

    async def _rescanner(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rescan_interval)
            await self._guarded(lambda: self._scan(1))

    async def _watcher(self) -> None:
        watched = [str(p) for p in self._watch_paths()]
        if not watched:
            return
        async for changes in watchfiles.awatch(
            *watched, watch_filter=_transcript_or_directory, debounce=50, step=20,
            recursive=True,
        ):  # fmt: skip
            paths = sorted(_transcripts_in(changes))
            if paths:
                await self._guarded(lambda paths=paths: self._ingest(paths))  # type: ignore[misc]

    def _watch_paths(self) -> list[Path]:
        paths = []
        for root in self.roots:
            projects = root / "projects"
            paths.append(projects if projects.is_dir() else root)
        return [p for p in paths if p.is_dir()]

    async def _guarded(self, fn: Callable[[], object]) -> None:
        """Background work logs its failures and carries on (the daemon never goes down)."""
        try:
            await self.run(fn)
        except ContextdError as exc:
            log.error("%s", exc)
        except Exception:  # a top-level loop: log and go on
            log.exception("background ingest failed")


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return  # the request was cancelled (client gone); its observations are committed
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _transcript_or_directory(change: watchfiles.Change, path: str) -> bool:
    return path.endswith(".jsonl") or (change is watchfiles.Change.added and "." not in
                                       os.path.basename(path))  # fmt: skip


def _transcripts_in(changes: set[tuple[watchfiles.Change, str]]) -> set[str]:
    """The transcripts a batch of changes touches. A new directory (a new project, a session's
    ``subagents/``) may have had files written before its watch was in place: take those too."""
    found: set[str] = set()
    for _, path in changes:
        if path.endswith(".jsonl"):
            found.add(path)
        elif os.path.isdir(path):
            found.update(str(p) for p in Path(path).rglob("*.jsonl"))
    return found
