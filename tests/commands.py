"""Running ``contextd statusline`` / ``contextd hook`` as Claude Code does, against a
:class:`tests.served.Served` daemon (or none), and waiting for what they forwarded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.served import Served, free_port

SCRIPT = Path(sys.executable).with_name("contextd")
_SCRUBBED = ("CONTEXTD_", "SSH_", "TMUX", "STY", "VSCODE", "TERM_PROGRAM", "CLAUDE_",
             "ANTHROPIC_")  # fmt: skip


def command_env(served: Served | None, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a command Claude Code runs: this one without contextd settings,
    session markers or keys from outside, pointed at ``served`` (None: at nothing)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env = {**base, "HOME": str(tmp / "home"), "CLAUDE_CONFIG_DIR": str(tmp / "claude-cfg")}
    if served is not None:
        env |= {"CONTEXTD_DB": str(served.db), "CONTEXTD_SOCKET": str(served.socket),
                "CONTEXTD_PORT": str(served.port)}  # fmt: skip
    else:  # nothing listens there
        env |= {"CONTEXTD_DB": str(tmp / "down" / "c.db"),
                "CONTEXTD_SOCKET": str(tmp / "down" / "c.sock"),
                "CONTEXTD_PORT": str(free_port())}  # fmt: skip
    return {**env, **extra}


def run(
    command: str, stdin: bytes, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(SCRIPT), command, *args], input=stdin, env=env,
                          capture_output=True, timeout=30, check=False)  # fmt: skip


def wait_for_session(
    served: Served, sid: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """The daemon's view of session ``sid`` once ``predicate`` holds for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = served.get("/api/sessions")[1]["sessions"]
        assert isinstance(sessions, list)
        found = [s for s in sessions if s["session_id"] == sid]
        if found and predicate(found[0]):
            return dict(found[0])
        time.sleep(0.02)
    raise AssertionError(f"the daemon never showed the forwarded session {sid}")
