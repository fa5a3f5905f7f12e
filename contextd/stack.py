"""``contextd stack``: a local VictoriaMetrics scraping the daemon, so ``contextd monitor`` and
Grafana have a PromQL backend with one command.

It runs the ``victoria-metrics`` binary the Debian package installs (or any on ``PATH``) as a
background process on ``127.0.0.1`` (port 8428, the monitor's default), with its data, its
scrape configuration, its log and its pid file under ``<state dir>/victoria-metrics`` (next to
contextd's database). The scrape configuration is :func:`scrape_config` for the daemon's
address, the same text as ``deploy/victoriametrics/scrape.yml`` for the defaults.

``start`` is idempotent (a running stack is reported, not started twice), ``stop`` signals only
the process the pid file names and only if it still is that VictoriaMetrics, and ``status``
reports the scrape target's health as VictoriaMetrics sees it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from contextd.config import Settings
from contextd.errors import ConfigError, ContextdError

BINARY = "victoria-metrics"
DEFAULT_LISTEN = "127.0.0.1:8428"
SCRAPE_INTERVAL = "5s"
RETENTION = "90d"
LATENCY_OFFSET = "2s"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def scrape_config(target: str, *, token: str | None = None) -> str:
    """The VictoriaMetrics ``-promscrape.config`` scraping the daemon at ``target``
    (``host:port``); with ``token``, sent as a bearer token."""
    auth = f"    authorization:\n      credentials: {json.dumps(token)}\n" if token else ""
    return (
        "scrape_configs:\n"
        "  - job_name: contextd\n"
        f"    scrape_interval: {SCRAPE_INTERVAL}\n"
        f"    scrape_timeout: {SCRAPE_INTERVAL}\n"
        "    metrics_path: /metrics\n"
        f"{auth}"
        "    static_configs:\n"
        f"      - targets: [{json.dumps(target)}]\n"
    )


def daemon_target(settings: Settings) -> str:
    """``host:port`` of the daemon's HTTP listener, as a scraper reaches it."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "localhost") else settings.host  # noqa: S104 (a wildcard bind is reached on loopback)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.port}"


def parse_listen(value: str) -> str:
    """``host:port`` for ``-httpListenAddr``; loopback hosts only (the stack has no auth)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen: expected HOST:PORT, got {value!r}")
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise ConfigError(f"--listen: the stack binds loopback only, not {host!r}")
    return value


@dataclass(frozen=True)
class Stack:
    """The files of one stack: ``<state dir>/victoria-metrics``."""

    home: Path

    @classmethod
    def of(cls, settings: Settings) -> Stack:
        return cls(settings.db.parent / "victoria-metrics")

    @property
    def pid_file(self) -> Path:
        return self.home / "victoria-metrics.pid"

    @property
    def config(self) -> Path:
        return self.home / "scrape.yml"

    @property
    def log(self) -> Path:
        return self.home / "victoria-metrics.log"

    @property
    def storage(self) -> Path:
        return self.home / "data"

    def running(self) -> tuple[int, str] | None:
        """``(pid, listen address)`` of this stack's VictoriaMetrics while it runs."""
        try:
            pid_text, _, listen = self.pid_file.read_text().partition(" ")
            pid = int(pid_text)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # The pid may have been reused by another process since: only ours counts.
        ours = f"-storageDataPath={self.storage}".encode()
        if not cmdline or not cmdline[0].endswith(BINARY.encode()) or ours not in cmdline:
            return None
        return pid, listen.strip() or DEFAULT_LISTEN


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 (a loopback http URL built here)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(settings: Settings, listen: str = DEFAULT_LISTEN, *, binary: str | None = None) -> str:
    """Start the stack (unless it runs already) and return a line saying where it is."""
    stack = Stack.of(settings)
    found = stack.running()
    if found is not None:
        return f"already running (pid {found[0]}) at http://{found[1]}"
    exe = binary or shutil.which(BINARY)
    if exe is None:
        raise ContextdError(
            f"{BINARY} is not installed: `apt install victoria-metrics` (Debian/Ubuntu) or put "
            "the single-node binary on PATH"
        )
    stack.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    stack.config.write_text(
        scrape_config(daemon_target(settings), token=settings.token), encoding="utf-8"
    )
    stack.config.chmod(0o600)  # it may hold the daemon's token
    argv = [exe, f"-httpListenAddr={listen}", f"-storageDataPath={stack.storage}",
            f"-retentionPeriod={RETENTION}", f"-promscrape.config={stack.config}",
            # One local scraper: a scrape is complete when it lands, so show it almost at
            # once (the default hides the last 30 s, meant for many concurrent writers).
            f"-search.latencyOffset={LATENCY_OFFSET}", "-loggerLevel=WARN"]  # fmt: skip
    with stack.log.open("ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
    stack.pid_file.write_text(f"{proc.pid} {listen}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stack.pid_file.unlink(missing_ok=True)
            tail = stack.log.read_text(errors="replace").strip().splitlines()[-1:]
            last = tail[0] if tail else "no output"
            raise ContextdError(
                f"{BINARY} exited at start ({proc.returncode}): {last} (log: {stack.log})"
            )
        with contextlib.suppress(OSError):
            if _get(f"http://{listen}/health", timeout=0.5)[0] == 200:
                return (f"started VictoriaMetrics (pid {proc.pid}) at http://{listen}, scraping "
                        f"contextd at {daemon_target(settings)}; data in {stack.home}")  # fmt: skip
        time.sleep(0.1)
    _terminate(proc.pid)
    stack.pid_file.unlink(missing_ok=True)
    raise ContextdError(f"{BINARY} did not answer at http://{listen} within "
                        f"{START_TIMEOUT:.0f}s (log: {stack.log})")  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie until its parent reaps it counts as gone
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    return True


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(settings: Settings) -> str:
    """Stop the stack if it runs; a line saying what happened."""
    stack = Stack.of(settings)
    found = stack.running()
    if found is None:
        stack.pid_file.unlink(missing_ok=True)  # a stale one, if any
        return "not running"
    _terminate(found[0])
    stack.pid_file.unlink(missing_ok=True)
    return f"stopped VictoriaMetrics (pid {found[0]})"


def status(settings: Settings) -> dict[str, object]:
    """Where the stack is and whether VictoriaMetrics scrapes the daemon successfully."""
    stack = Stack.of(settings)
    found = stack.running()
    report: dict[str, object] = {"running": found is not None, "home": str(stack.home),
                                 "daemon": daemon_target(settings)}  # fmt: skip
    if found is None:
        return report
    pid, listen = found
    report |= {"pid": pid, "url": f"http://{listen}"}
    try:
        code, body = _get(f"http://{listen}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"] if code == 200 else []
    except (OSError, ValueError, KeyError, TypeError):
        targets = []
    report["targets"] = [{"url": t.get("scrapeUrl"), "health": t.get("health"),
                          "last_error": t.get("lastError") or None}
                         for t in targets if isinstance(t, dict)]  # fmt: skip
    return report
