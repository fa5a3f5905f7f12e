"""``contextd doctor``: is contextd wired into Claude Code, and does the daemon answer?

One line per check, ``OK`` or ``FAIL``, each failure saying what to do. Checks: the settings
file parses and hooks are not disabled; contextd's hooks are there for every event and point
at the daemon these settings configure; the status line is contextd's; the MCP server is
registered; the programs those entries run exist; the daemon answers over HTTP and over its
unix socket, with this version; the state database can be written; the versions. Exit 0
when every check is OK, else 1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contextd import __version__
from contextd.config import Settings
from contextd.errors import ConfigError
from contextd.integrate.install import (
    ENV_EVENT,
    HOOK_EVENTS,
    SERVER_NAME,
    Targets,
    Wiring,
    contextd_args,
    is_contextd_handler,
    is_contextd_server,
    is_contextd_status_line,
)
from contextd.integrate.jsonfile import JsonFile
from contextd.statusline import http_request

FIX = "run `contextd install`"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _read(path: Path) -> tuple[dict[str, Any] | None, Check | None]:
    try:
        return JsonFile.read(path).data, None
    except ConfigError as exc:
        return None, Check(path.name, False, f"{exc}: fix the file by hand")


def _handlers(settings: dict[str, Any], event: str) -> list[dict[str, Any]]:
    groups = settings.get("hooks", {}).get(event, []) if isinstance(settings.get("hooks"),
                                                                     dict) else []  # fmt: skip
    found = []
    for group in groups if isinstance(groups, list) else []:
        hooks = group.get("hooks", []) if isinstance(group, dict) else []
        found += [h for h in hooks if is_contextd_handler(h)] if isinstance(hooks, list) else []
    return found


def _program_exists(argv0: str) -> bool:
    path = Path(argv0)
    return os.access(path, os.X_OK) if path.is_absolute() else shutil.which(argv0) is not None


def _hook_check(settings: Settings, targets: Targets, data: dict[str, Any]) -> Check:
    url = Wiring.from_settings(settings, program=("contextd",)).hook_url
    missing = [e for e in HOOK_EVENTS if not _handlers(data, e)]
    elsewhere = sorted({h.get("url", "?") for e in HOOK_EVENTS for h in _handlers(data, e)
                        if h.get("type") == "http" and h.get("url") != url})  # fmt: skip
    if data.get("disableAllHooks") is True:
        return Check("hooks", False, f"{targets.settings} sets disableAllHooks: remove it")
    if missing:
        return Check("hooks", False, f"no contextd hook for {', '.join(missing)} in "
                     f"{targets.settings}: {FIX}")  # fmt: skip
    if elsewhere:
        return Check("hooks", False, f"hooks post to {', '.join(elsewhere)} but the daemon is "
                     f"configured at {url}: {FIX} again")  # fmt: skip
    return Check("hooks", True, f"{len(HOOK_EVENTS)} events → {url} "
                 f"({ENV_EVENT} through `contextd hook`)")  # fmt: skip


def _status_line_check(status: object) -> Check:
    if is_contextd_status_line(status):
        assert isinstance(status, dict)
        return Check("status line", True, str(status["command"]))
    if status is None:
        return Check("status line", False, f"none set (contextd gets no window sizes): {FIX}")
    shown = status.get("command") if isinstance(status, dict) else status
    return Check("status line", False, f"another one is set ({shown!r}): "
                 "`contextd install --force` replaces it (a backup keeps yours)")  # fmt: skip


def _server(targets: Targets) -> tuple[Check, dict[str, Any] | None]:
    mcp, problem = _read(targets.mcp)
    if problem is not None or mcp is None:
        return problem or Check("mcp server", False, "unreadable"), None
    servers = mcp.get("mcpServers")
    server = servers.get(SERVER_NAME) if isinstance(servers, dict) else None
    if isinstance(server, dict) and is_contextd_server(server):
        return Check("mcp server", True, f"{SERVER_NAME!r} in {targets.mcp}"), server
    return Check("mcp server", False, f"{SERVER_NAME!r} not registered in {targets.mcp}: "
                 f"{FIX}"), None  # fmt: skip


def wiring_checks(settings: Settings, targets: Targets) -> Iterator[Check]:
    data, problem = _read(targets.settings)
    if problem is not None or data is None:
        yield problem or Check("settings", False, "unreadable")
        return
    yield _hook_check(settings, targets, data)
    status = data.get("statusLine")
    yield _status_line_check(status)
    server_check, server = _server(targets)
    yield server_check
    programs: list[object] = [
        h.get("command", "") for e in HOOK_EVENTS for h in _handlers(data, e)
        if h.get("type") == "command"
    ]  # fmt: skip
    if is_contextd_status_line(status):
        programs.append(status["command"])  # type: ignore[index]
    if server is not None:
        programs.append([server["command"], *server.get("args", [])])
    gone = sorted({str(p) for p in programs if (args := _argv0(p)) and not _program_exists(args)})
    if gone:
        yield Check("programs", False, f"{', '.join(gone)} not found: {FIX} again")
    elif programs:
        yield Check("programs", True, "every contextd command in the settings exists")


def _argv0(command: object) -> str | None:
    if contextd_args(command) is None:
        return None
    if isinstance(command, list):
        return str(command[0])
    return shlex.split(str(command))[0]


def daemon_checks(settings: Settings) -> Iterator[Check]:
    token = settings.token
    for name, address in (("daemon (http)", (settings.host, settings.port)),
                          ("daemon (socket)", str(settings.socket))):  # fmt: skip
        try:
            status, body = http_request(address, "GET", "/healthz", token=token, timeout=3.0,
                                        connect_timeout=1.0)  # fmt: skip
        except OSError as exc:
            where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            yield Check(name, False, f"nothing answers at {where} ({exc}): start `contextd "
                        "serve`")  # fmt: skip
            continue
        if status != 200:
            yield Check(name, False, f"/healthz answered {status}: {body[:120]!r}")
            continue
        health = json.loads(body)
        version = health.get("version")
        if version != __version__:
            yield Check(name, False, f"the daemon runs contextd {version}, this is "
                        f"{__version__}: restart `contextd serve`")  # fmt: skip
        else:
            ready = "ready" if health.get("ready") else "still reading transcripts"
            yield Check(name, True, f"contextd {version}, {ready}, "
                        f"{health.get('live_sessions')} live sessions")  # fmt: skip


def storage_checks(settings: Settings) -> Iterator[Check]:
    db = settings.db
    folder = next((p for p in (db.parent, *db.parent.parents) if p.exists()), None)
    if db.exists() and not os.access(db, os.W_OK):
        yield Check("database", False, f"{db} is not writable: fix its permissions")
    elif folder is None or not os.access(folder, os.W_OK):
        yield Check("database", False, f"cannot create {db}: {folder} is not writable")
    else:
        yield Check("database", True, f"{db} {'writable' if db.exists() else 'can be created'}")
    secret = db.parent / "install.secret"
    if secret.exists() and secret.stat().st_mode & 0o077:
        yield Check("install secret", False, f"{secret} is readable by others: chmod 600 it")


def version_check(claude: str | None = None) -> Check:
    claude = claude or shutil.which("claude")
    found = "Claude Code not on PATH (not checked)"
    if claude:
        try:
            done = subprocess.run([claude, "--version"], capture_output=True, text=True,
                                  timeout=10, check=False)  # fmt: skip
            found = f"Claude Code {done.stdout.strip() or done.stderr.strip()[:60]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            found = f"`claude --version` failed: {exc}"
    python = ".".join(map(str, sys.version_info[:3]))
    return Check("versions", True, f"contextd {__version__}, Python {python}, {found}")


def run(settings: Settings, targets: Targets, *, say: Callable[[str], None]) -> int:
    checks = [*wiring_checks(settings, targets), *daemon_checks(settings),
              *storage_checks(settings), version_check()]  # fmt: skip
    for check in checks:
        say(check.line())
    return 0 if all(c.ok for c in checks) else 1
