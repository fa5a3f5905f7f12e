"""A small client of the daemon's JSON API, over its unix socket or over HTTP.

The CLI and the monitor read the daemon through this module, with the standard library only:
a status line or ``contextd sessions`` must not pay for an HTTP library, and the monitor runs
its reads in a worker thread anyway.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import orjson

from contextd.errors import QueryError, SourceUnreachableError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DaemonClient:
    """GET JSON from the daemon at ``address``: ``http://host:port`` or a unix socket path.

    Raises :class:`SourceUnreachableError` when nothing answers there and
    :class:`QueryError` for a non-200 answer or a body that is not JSON.
    """

    def __init__(
        self, address: str | Path, *, token: str | None = None, timeout: float = 5.0
    ) -> None:
        self.address = str(address)
        self.token = token
        self.timeout = timeout
        parts = urllib.parse.urlsplit(self.address)
        self._tcp = parts if parts.scheme in ("http", "https") else None

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        """A connection and the Host header the daemon accepts on it."""
        if self._tcp is None:
            return _UnixConnection(Path(self.address), self.timeout), "localhost"
        cls = (
            http.client.HTTPSConnection
            if self._tcp.scheme == "https"
            else http.client.HTTPConnection
        )
        host = self._tcp.hostname or "127.0.0.1"
        return cls(host, self._tcp.port, timeout=self.timeout), self._tcp.netloc

    def get(self, path: str) -> Any:
        """The decoded JSON body of ``GET path``."""
        conn, host = self._connection()
        headers = {"Host": host}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        prefix = self._tcp.path.rstrip("/") if self._tcp is not None else ""
        try:
            conn.request("GET", prefix + path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise SourceUnreachableError(
                f"cannot reach the daemon at {self.address}: {exc}"
            ) from None
        finally:
            conn.close()
        if response.status != 200:
            raise QueryError(f"the daemon answered {response.status} for {path}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise QueryError(f"the daemon answered {path} with a body that is not JSON") from None


def daemon_get(socket_path: Path, path: str, timeout: float = 5.0) -> Any:
    """GET ``path`` from the daemon over its unix socket; the decoded JSON."""
    return DaemonClient(socket_path, timeout=timeout).get(path)
