"""A real PostgreSQL server for tests: the Debian package's binaries, a temp cluster, a free
loopback port, stopped by PID.

PostgreSQL refuses to run as root; as root the cluster is made and run as ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.served import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _binary(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


@dataclass
class PostgresServer:
    proc: subprocess.Popen[bytes]
    port: int
    base: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, name: str) -> str:
        """A fresh database on this server; its URL."""
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _as_user() -> dict[str, int]:
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid}


def start_postgres(tmp: Path) -> PostgresServer:
    initdb, postgres = _binary("initdb"), _binary("postgres")
    if initdb is None or postgres is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries missing (scripts/bootstrap installs postgresql)")
        pytest.skip("PostgreSQL binaries missing (scripts/bootstrap installs postgresql)")
    who = _as_user()
    # As root the cluster belongs to nobody, who must be able to reach it: pytest's own temp
    # root is 0700, so the cluster goes to a directory of its own under the system temp dir.
    base = Path(tempfile.mkdtemp(prefix="contextd-pg-")) if who else tmp / "pg"
    data, sockets = base / "data", base / "run"
    sockets.mkdir(parents=True)
    if who:
        for path in (base, sockets):
            os.chown(path, who["user"], who["group"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    subprocess.run(
        [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, env=env, cwd=base, **who,  # type: ignore[call-overload]
    )  # fmt: skip
    port = free_port()
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        [postgres, "-D", str(data), "-k", str(sockets), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "logging_collector=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=base, **who,
    )  # fmt: skip
    server = PostgresServer(proc, port, base)
    import psycopg  # noqa: PLC0415

    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"postgres exited {proc.returncode}: {err!r}")
        try:
            psycopg.connect(server.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError("postgres did not accept connections") from None
            time.sleep(0.1)
        else:
            return server


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        if server.proc.stderr:
            server.proc.stderr.close()
        shutil.rmtree(server.base, ignore_errors=True)
