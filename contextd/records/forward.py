"""``contextd serve --forward URL``: this machine's records, delivered to a central contextd.

Records wait in the spool's outbox (:mod:`contextd.records.spool`) and are sent in batches to
``URL/v1/session-events`` (with ``Authorization: Bearer <forward_token>`` when one is set). A
batch leaves the outbox only once the central answered 202, so nothing is lost while it is
down; a batch whose answer was lost is sent again, and the central's idempotent store counts it
as duplicates, so every record is stored exactly once. Failures back off exponentially
(``base_delay`` doubling up to ``max_delay``, with jitter); each attempt has a timeout. A
record the central refuses as invalid (400/413/422) is set aside (``dead``), not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import random
from collections.abc import Sequence
from urllib.parse import urlsplit

from contextd.errors import ConfigError, QueryError, SourceError, SourceUnreachableError
from contextd.records.spool import Spool

log = logging.getLogger("contextd.forward")
PATH = "/v1/session-events"
_REFUSED = frozenset({400, 413, 422})


def events_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of the central's session-events endpoint."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--forward: expected an http(s) URL, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"--forward: bad port in {url!r}") from None
    path = parts.path.rstrip("/")
    if not path.endswith(PATH):
        path += PATH
    return parts.scheme, parts.hostname, port, path


class Forwarder:
    """Sends the outbox to one central instance."""

    def __init__(
        self,
        spool: Spool,
        url: str,
        token: str | None = None,
        *,
        batch: int = 200,
        timeout: float = 10.0,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
    ) -> None:
        self.spool = spool
        self.scheme, self.host, self.port, self.path = events_url(url)
        self.token = token
        self.batch = batch
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.failures = 0
        self.sent = 0
        self.wake = asyncio.Event()

    def _post(self, body: bytes) -> int:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            raise SourceUnreachableError(f"forward to {self.host}:{self.port}: {exc}") from exc
        finally:
            conn.close()

    def _deliver(self, batch: Sequence[tuple[int, bytes]]) -> int:
        body = b'{"records":[' + b",".join(b for _, b in batch) + b"]}"
        status = self._post(body)
        seqs = [seq for seq, _ in batch]
        if status == 202:
            self.spool.delivered(seqs)
            return len(seqs)
        if status in _REFUSED:
            if len(batch) > 1:  # find the record it refuses: send them one by one
                return sum(self._deliver([one]) for one in batch)
            log.error("the central refused a record (HTTP %d); set aside", status)
            self.spool.failed(seqs, f"HTTP {status}")
            return 0
        self.spool.failed(seqs)
        raise QueryError(f"forward to {self.host}:{self.port}: HTTP {status}")

    def send_pending(self) -> int:
        """Send everything queued (blocking); the number of records delivered. Raises
        :class:`~contextd.errors.SourceError` when the central is down or failing."""
        delivered = 0
        while True:
            batch = self.spool.pending(self.batch)
            if not batch:
                return delivered
            done = self._deliver(batch)
            delivered += done
            self.sent += done

    def delay(self) -> float:
        """The wait before the next attempt after ``failures`` failures in a row."""
        if self.failures == 0:
            return 0.0
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(self.failures - 1, 30))
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not security)

    async def run(self, idle: float = 30.0) -> None:
        """Deliver forever: when woken (new records), after a backoff, or every ``idle``."""
        while True:
            # Cleared before reading the outbox, not after: records queued while a send runs
            # set it again, and are sent next instead of waiting out ``idle``.
            self.wake.clear()
            try:
                await asyncio.to_thread(self.send_pending)
            except SourceError as exc:
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.warning("%s (attempt %d; records kept in the outbox)", exc, self.failures)
            else:
                self.failures = 0
            wait = self.delay() if self.failures else idle
            if self.failures:  # a backoff is not cut short by new records
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
