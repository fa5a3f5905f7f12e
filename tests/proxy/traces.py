"""Everything a daemon left behind, to search for a key that must not be there."""

from __future__ import annotations

import hashlib
import http.client
import signal
from collections.abc import Iterable
from pathlib import Path

from tests.served import Served


def exposition(daemon: Served) -> bytes:
    """The daemon's ``/metrics`` page."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read()
    finally:
        conn.close()


def stop_for_log(daemon: Served) -> bytes:
    """Stop the daemon (SIGTERM, exit 0 expected) and return its whole stderr."""
    proc = daemon.proc
    assert proc is not None
    assert proc.stderr is not None
    proc.send_signal(signal.SIGTERM)
    log = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=15) == 0
    return log


def state_files(daemon: Served) -> list[bytes]:
    """Every file in the daemon's state directory (database, WAL, install secret…)."""
    return [p.read_bytes() for p in Path(daemon.db.parent).iterdir() if p.is_file()]


def assert_key_absent(key: str, blobs: Iterable[bytes]) -> None:
    """Neither ``key`` nor its unsalted SHA-256 (whole or the 16-hex prefix) is in any blob."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    for blob in blobs:
        for secret in (key.encode(), digest.encode(), digest[:16].encode()):
            assert secret not in blob
