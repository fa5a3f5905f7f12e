"""A ``contextd serve`` child process for tests: own port, own state, stopped by PID."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """A ``contextd serve`` child process with its own state."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.root = tmp / "claude"
        (self.root / "projects").mkdir(parents=True, exist_ok=True)
        self.db = tmp / "state" / "contextd.db"
        self.socket = tmp / "run" / "contextd.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self,
        *,
        wait: bool = True,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
        log_file: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "OTEL_"))}
        env = {**base, "CONTEXTD_TICK_INTERVAL": "0.5", **(env or {})}
        argv = [sys.executable, "-m", "contextd", "serve", "--port", str(self.port),
                "--config-dir", str(self.root), "--db", str(self.db),
                "--socket", str(self.socket), "--log-level", log_level, *args]  # fmt: skip
        if log_file is None:
            self.proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
        else:
            with log_file.open("ab") as log:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(argv, env=env, stderr=log)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                _, err = self.proc.communicate()
                raise AssertionError(f"contextd serve exited {self.proc.returncode}: {err!r}")
            try:
                if self.get("/healthz")[1].get("ready"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("contextd serve did not become ready")

    def request(self, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"content-type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, object]]:
        return self.request("GET", path)

    def post(self, path: str, body: object) -> tuple[int, dict[str, object]]:
        return self.request("POST", path, body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        if self.proc.stderr:
            self.proc.stderr.close()
        return code
