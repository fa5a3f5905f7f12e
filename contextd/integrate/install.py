"""``contextd install`` / ``uninstall``: wire contextd into Claude Code's settings.

What is written (``scope`` user; ``$CLAUDE_CONFIG_DIR`` replaces ``~/.claude`` and moves
``.claude.json`` inside it, as Claude Code itself does):

* ``<config>/settings.json`` → ``hooks``: for each of :data:`HOOK_EVENTS` one matcher group
  holding contextd's handler. ``SessionStart`` runs ``contextd hook`` (a command hook with
  ``async: true``: only a command sees the session's environment and can hash the API key);
  every other event is a ``type: "http"`` hook POSTing to the daemon's ``/hooks`` with a
  short ``timeout``. With ``hook_type="command"`` (Claude Code before 2.1.63, which has no
  http hooks) every event runs ``contextd hook``. contextd's http handlers carry the header
  :data:`MARK_HEADER`; its command handlers run ``contextd hook``: that is how uninstall
  finds exactly them.
* ``<config>/settings.json`` → ``statusLine``: ``{"type": "command", "command":
  "<abs path>/contextd statusline"}``; a status line of the user's own is replaced only with
  ``force``.
* ``~/.claude.json`` (``$CLAUDE_CONFIG_DIR/.claude.json``) → ``mcpServers.contextd``: the
  stdio server ``<abs path>/contextd mcp``.

``scope`` project writes ``<project>/.claude/settings.json`` (hooks, status line, and
``enabledMcpjsonServers`` gains ``contextd`` so the project server loads without a prompt) and
``<project>/.mcp.json`` (``mcpServers.contextd``).

Running install twice changes nothing; uninstall removes contextd's entries and nothing else.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contextd.config import Settings
from contextd.errors import ConfigError, ContextdError
from contextd.integrate.jsonfile import JsonFile

HOOK_EVENTS = ("SessionStart", "SessionEnd", "PreCompact", "PostCompact", "PreToolUse", "Stop",
               "UserPromptSubmit")  # fmt: skip
ENV_EVENT = "SessionStart"  # delivered by ``contextd hook`` even with http hooks
MARK_HEADER = "X-Contextd-Hook"
HTTP_TIMEOUT = 1  # seconds: a hook must never slow Claude Code down
COMMAND_TIMEOUT = 5
SERVER_NAME = "contextd"
Scope = Literal["user", "project"]
HookType = Literal["http", "command"]


@dataclass(frozen=True, slots=True)
class Targets:
    """The files one scope's wiring lives in."""

    scope: Scope
    settings: Path
    mcp: Path

    @classmethod
    def for_scope(
        cls, scope: Scope, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Targets:
        env = os.environ if env is None else env
        if scope == "project":
            root = cwd or Path.cwd()
            return cls(scope, root / ".claude" / "settings.json", root / ".mcp.json")
        config = env.get("CLAUDE_CONFIG_DIR")
        if config:
            base = Path(config).expanduser()
            return cls(scope, base / "settings.json", base / ".claude.json")
        home = Path.home()
        return cls(scope, home / ".claude" / "settings.json", home / ".claude.json")


def contextd_program() -> list[str]:
    """The absolute command that runs this contextd (Claude Code's PATH may not have it)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "contextd" and argv0.exists():
        return [str(argv0.resolve())]
    found = shutil.which("contextd")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "contextd"]


@dataclass(frozen=True, slots=True)
class Wiring:
    """What contextd wants in Claude Code's settings."""

    hook_url: str
    program: tuple[str, ...]
    extra_args: tuple[str, ...] = ()  # options every contextd command gets (``--config``...)
    hook_type: HookType = "http"
    statusline: bool = True
    token: bool = False  # the daemon wants a bearer token: sent from $CONTEXTD_TOKEN

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Wiring:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        return cls(f"http://{host}:{settings.port}/hooks", token=settings.token is not None,
                   **kwargs)  # fmt: skip

    def command(self, sub: str) -> str:
        return shlex.join([*self.program, sub, *self.extra_args])

    def handler(self, event: str) -> dict[str, Any]:
        if self.hook_type == "command" or event == ENV_EVENT:
            entry: dict[str, Any] = {"type": "command", "command": self.command("hook"),
                                     "timeout": COMMAND_TIMEOUT}  # fmt: skip
            if self.hook_type == "http":
                entry["async"] = True  # nothing to wait for: it only reports the session
            return entry
        headers = {MARK_HEADER: "1"}
        entry = {"type": "http", "url": self.hook_url, "timeout": HTTP_TIMEOUT}
        if self.token:
            headers["Authorization"] = "Bearer $CONTEXTD_TOKEN"
            entry["allowedEnvVars"] = ["CONTEXTD_TOKEN"]
        entry["headers"] = headers
        return entry

    def status_line(self) -> dict[str, Any]:
        return {"type": "command", "command": self.command("statusline")}

    def mcp_server(self) -> dict[str, Any]:
        return {"type": "stdio", "command": self.program[0],
                "args": [*self.program[1:], "mcp", *self.extra_args], "env": {}}  # fmt: skip


# -- recognising contextd's entries ---------------------------------------------------------


def contextd_args(command: object) -> list[str] | None:
    """The arguments given to contextd by a command line (list or shell string), or None when
    it does not run contextd."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:
            return None
    elif isinstance(command, list) and all(isinstance(a, str) for a in command):
        argv = command
    else:
        return None
    if argv and Path(argv[0]).name == "contextd":
        return argv[1:]
    if len(argv) >= 3 and argv[1:3] == ["-m", "contextd"]:
        return argv[3:]
    return None


def is_contextd_handler(handler: object) -> bool:
    if not isinstance(handler, dict):
        return False
    if handler.get("type") == "http":
        headers = handler.get("headers")
        return isinstance(headers, dict) and MARK_HEADER in headers
    if handler.get("type") == "command":
        args = contextd_args(handler.get("command"))
        return bool(args) and args[0] == "hook"  # type: ignore[index]
    return False


def is_contextd_status_line(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    args = contextd_args(value.get("command"))
    return bool(args) and args[0] == "statusline"  # type: ignore[index]


def is_contextd_server(value: object) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("args", []), list):
        return False
    args = contextd_args([value.get("command"), *value.get("args", [])])
    return bool(args) and args[0] == "mcp"  # type: ignore[index]


def _strip_groups(groups: list[Any]) -> list[Any]:
    """An event's matcher groups without contextd's handlers (a group left empty by that goes)."""
    out = []
    for group in groups:
        if isinstance(group, dict) and isinstance(group.get("hooks"), list):
            kept = [h for h in group["hooks"] if not is_contextd_handler(h)]
            if len(kept) != len(group["hooks"]):
                if kept:
                    out.append({**group, "hooks": kept})
                continue
        out.append(group)
    return out


# -- the edits ------------------------------------------------------------------------------


@dataclass(slots=True)
class Edit:
    """One file's planned change: new data and what it does, in words."""

    file: JsonFile
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    new_mode: int = 0o644

    @property
    def changed(self) -> bool:
        return self.data != self.file.data


def _object(data: dict[str, Any], key: str, where: Path) -> dict[str, Any]:
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key!r} is not a JSON object; nothing was changed")
    return value


def _install_hooks(data: dict[str, Any], wiring: Wiring, where: Path) -> list[str]:
    had_hooks = "hooks" in data
    hooks = _object(data, "hooks", where)
    added: list[str] = []
    updated: list[str] = []
    for event in HOOK_EVENTS:
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise ConfigError(f"{where}: hooks.{event} is not a list; nothing was changed")
        desired = {"hooks": [wiring.handler(event)]}
        others = _strip_groups(groups)
        if groups.count(desired) == 1 and [g for g in groups if g != desired] == others:
            continue  # already there, exactly once
        (updated if len(others) != len(groups) else added).append(event)
        hooks[event] = [*others, desired]
    if not had_hooks and not hooks:
        del data["hooks"]
    notes = []
    for verb, events in (("added", added), ("updated", updated)):
        by_target: dict[str, list[str]] = {}
        for event in events:
            handler = wiring.handler(event)
            target = handler.get("url") or "contextd hook"
            by_target.setdefault(target, []).append(event)
        notes += [f"{verb} hooks {', '.join(names)} → {target}"
                  for target, names in by_target.items()]  # fmt: skip
    return notes


def _uninstall_hooks(data: dict[str, Any]) -> list[str]:
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return []
    removed = []
    for event, groups in list(hooks.items()):
        if not isinstance(groups, list):
            continue
        kept = _strip_groups(groups)
        if kept != groups:
            removed.append(event)
            if kept:
                hooks[event] = kept
            else:
                del hooks[event]
    if removed and not hooks:
        del data["hooks"]
    return [f"removed contextd hooks {', '.join(removed)}"] if removed else []


def _settings_edit(targets: Targets, wiring: Wiring, *, force: bool) -> Edit:
    file = JsonFile.read(targets.settings)
    data = deepcopy(file.data)
    edit = Edit(file, data)
    edit.notes += _install_hooks(data, wiring, targets.settings)
    if wiring.statusline:
        current = data.get("statusLine")
        desired = wiring.status_line()
        if current is not None and not is_contextd_status_line(current) and not force:
            shown = current.get("command") if isinstance(current, dict) else current
            raise ContextdError(
                f"{targets.settings} already has a status line ({shown!r}): run again with "
                "--force to replace it (the backup keeps it) or --no-statusline to keep it"
            )
        if current != desired:
            data["statusLine"] = desired
            edit.notes.append(f"set statusLine → {desired['command']}")
    if targets.scope == "project":
        enabled = data.get("enabledMcpjsonServers", [])
        if not isinstance(enabled, list):
            raise ConfigError(f"{targets.settings}: enabledMcpjsonServers is not a list")
        if SERVER_NAME not in enabled:
            data["enabledMcpjsonServers"] = [*enabled, SERVER_NAME]
            edit.notes.append(f"enabled the project MCP server {SERVER_NAME!r}")
    return edit


def _mcp_edit(targets: Targets, wiring: Wiring) -> Edit:
    file = JsonFile.read(targets.mcp)
    data = deepcopy(file.data)
    edit = Edit(file, data, new_mode=0o600 if targets.scope == "user" else 0o644)
    servers = _object(data, "mcpServers", targets.mcp)
    desired = wiring.mcp_server()
    if servers.get(SERVER_NAME) != desired:
        verb = "updated" if SERVER_NAME in servers else "added"
        servers[SERVER_NAME] = desired
        edit.notes.append(f"{verb} mcpServers.{SERVER_NAME} → "
                          f"{shlex.join([desired['command'], *desired['args']])}")  # fmt: skip
    return edit


def plan_install(targets: Targets, wiring: Wiring, *, force: bool = False) -> list[Edit]:
    """The edits ``contextd install`` makes (nothing is written here)."""
    return [_settings_edit(targets, wiring, force=force), _mcp_edit(targets, wiring)]


def plan_uninstall(targets: Targets) -> list[Edit]:
    """The edits ``contextd uninstall`` makes: contextd's entries out, nothing else."""
    settings = JsonFile.read(targets.settings)
    data = deepcopy(settings.data)
    edit = Edit(settings, data, notes=_uninstall_hooks(data))
    if is_contextd_status_line(data.get("statusLine")):
        del data["statusLine"]
        edit.notes.append("removed statusLine")
    enabled = data.get("enabledMcpjsonServers")
    if isinstance(enabled, list) and SERVER_NAME in enabled:
        rest = [name for name in enabled if name != SERVER_NAME]
        if rest:
            data["enabledMcpjsonServers"] = rest
        else:
            del data["enabledMcpjsonServers"]
        edit.notes.append(f"disabled the project MCP server {SERVER_NAME!r}")
    mcp = JsonFile.read(targets.mcp)
    mcp_data = deepcopy(mcp.data)
    mcp_edit = Edit(mcp, mcp_data)
    servers = mcp_data.get("mcpServers")
    if isinstance(servers, dict) and is_contextd_server(servers.get(SERVER_NAME)):
        del servers[SERVER_NAME]
        if not servers:
            del mcp_data["mcpServers"]
        mcp_edit.notes.append(f"removed mcpServers.{SERVER_NAME}")
    return [edit, mcp_edit]


def apply(edits: Sequence[Edit], *, dry_run: bool, say: Callable[[str], None]) -> bool:
    """Write the edits that change something (unless ``dry_run``); report each file in one
    line. Returns whether anything changed (or would)."""
    changed = False
    for edit in edits:
        path = edit.file.path
        if not edit.changed:
            say(f"{path}: unchanged")
            continue
        changed = True
        what = "; ".join(edit.notes)
        if dry_run:
            say(f"{path}: {what} (dry run: not written)")
            continue
        backup = edit.file.write(edit.data, new_mode=edit.new_mode)
        kept = f" (backup: {backup.name})" if backup is not None else " (new file)"
        say(f"{path}: {what}{kept}")
    return changed


def install(
    settings: Settings,
    targets: Targets,
    *,
    say: Callable[[str], None],
    dry_run: bool = False,
    force: bool = False,
    statusline: bool = True,
    hook_type: HookType = "http",
    extra_args: Sequence[str] = (),
) -> bool:
    """``contextd install``: plan, then write (or only report, with ``dry_run``)."""
    wiring = Wiring.from_settings(settings, program=tuple(contextd_program()),
                                  extra_args=tuple(extra_args), hook_type=hook_type,
                                  statusline=statusline)  # fmt: skip
    return apply(plan_install(targets, wiring, force=force), dry_run=dry_run, say=say)


def uninstall(targets: Targets, *, say: Callable[[str], None], dry_run: bool = False) -> bool:
    """``contextd uninstall``: remove contextd's entries (or only report, with ``dry_run``)."""
    return apply(plan_uninstall(targets), dry_run=dry_run, say=say)
