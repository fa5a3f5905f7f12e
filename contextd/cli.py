"""The ``contextd`` command. The only module that prints or chooses exit codes.

Exit codes: 0 success; 1 a runtime failure (state database unusable); 2 bad arguments, bad
settings or an unreadable Claude Code directory, always with one line on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from contextd import __version__
from contextd.config import Settings, load_settings
from contextd.entry import LEAN_COMMANDS
from contextd.entry import main as lean_main
from contextd.errors import ConfigError, ContextdError, StoreLockedError
from contextd.ingest.discovery import claude_roots, transcript_files
from contextd.ingest.scanner import ScanResult, TranscriptIngestor, default_jobs
from contextd.sessions import SessionManager
from contextd.store import Store
from contextd.views import session_view


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser, *, json: bool = True) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file")
    parser.add_argument("--db", type=Path, metavar="PATH", help="state database (SQLite)")
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="Claude Code config dir to scan (repeatable or comma-separated; "
        "default: $CLAUDE_CONFIG_DIR, ~/.claude, ~/.config/claude)",
    )
    parser.add_argument("--socket", type=Path, metavar="PATH", help="the daemon's unix socket")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="contextd", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"contextd {__version__}")
    # The common options are also taken before the command (``contextd --config F install``).
    parser.add_argument("--config", dest="g_config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", dest="g_db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config-dir", dest="g_config_dir", action="append", default=[],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--socket", dest="g_socket", type=Path, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    scan = sub.add_parser("scan", help="ingest new transcript lines once and exit")
    _common(scan)
    serve = sub.add_parser("serve", help="run the daemon (HTTP on 127.0.0.1 and a unix socket)")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 7323)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    mcp = sub.add_parser("mcp", help="serve the MCP tools over stdio (for `claude mcp add`)")
    _common(mcp, json=False)
    sessions = sub.add_parser("sessions", help="list sessions (after an incremental scan)")
    _common(sessions)
    sessions.add_argument("--all", action="store_true", help="include ended and expired sessions")
    _integration_commands(sub)
    return parser


def _integration_commands(sub: Any) -> None:
    for name, text in (
        ("install", "wire hooks, the MCP server and the status line into Claude Code's settings"),
        ("uninstall", "remove contextd's entries from Claude Code's settings"),
    ):
        cmd = sub.add_parser(name, help=text)
        _common(cmd, json=False)
        cmd.add_argument(
            "--scope",
            choices=["user", "project"],
            default="user",
            help="user: $CLAUDE_CONFIG_DIR or ~/.claude (default); project: ./.claude",
        )
        cmd.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
        if name == "install":
            cmd.add_argument(
                "--force", action="store_true", help="replace a status line of your own"
            )
            cmd.add_argument(
                "--no-statusline", action="store_true", help="leave the status line alone"
            )
            cmd.add_argument(
                "--hook-type",
                choices=["http", "command"],
                default="http",
                help="command: for Claude Code versions without http hooks",
            )
    helps = {
        "statusline": "print a status line from Claude Code's JSON on stdin and forward "
        "it to the daemon",
        "hook": "forward a command hook's payload on stdin to the daemon",
    }
    for name in sorted(LEAN_COMMANDS):  # normally run by contextd.entry, before this parser
        cmd = sub.add_parser(name, help=helps[name])
        for option in ("--config", "--db", "--socket"):
            cmd.add_argument(option)
    doctor = sub.add_parser("doctor", help="check the Claude Code wiring and the daemon")
    _common(doctor, json=False)
    doctor.add_argument("--scope", choices=["user", "project"], default="user")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.db is not None:
        settings = replace(settings, db=args.db)
    if args.config_dir:
        settings = replace(settings, config_dirs=tuple(args.config_dir))
    if args.socket is not None:
        settings = replace(settings, socket=args.socket)
    return settings


def _scan(settings: Settings) -> tuple[Store, ScanResult]:
    roots = claude_roots(settings.config_dirs)
    store = Store(settings.db, keep_events=settings.engine.session_events)
    manager = SessionManager(settings.engine, next_seq=store.next_seq())
    ingestor = TranscriptIngestor.open(store, manager, max_line=settings.max_line_bytes)
    result = ingestor.scan(transcript_files(roots), jobs=default_jobs())
    return store, result


def _write(data: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)}s ago"
    if seconds < 5400:
        return f"{int(seconds // 60)}m ago"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table of session views (:func:`contextd.views.session_view` dicts)."""
    now = time.time()
    header = ("SESSION", "PROJECT", "MODEL", "TYPE", "CONTEXT", "USE%", "STATE", "CKPT",
              "SAVED", "TOKENS", "STATUS", "LAST")  # fmt: skip
    lines = [header]
    for r in rows:
        last = datetime.fromisoformat(r["last_activity"]).timestamp()
        lines.append((
            r["session_id"][:8], (r["project"] or "-")[:24], (r["model"] or "-")[:26],
            r.get("session_type") or "unknown",
            f"{_tokens(r['context_tokens'])}/{_tokens(r['context_window'])}",
            f"{r['context_percent']:.1f}", r["threshold_state"].upper(), str(r["checkpoints"]),
            _tokens(r["tokens_saved"]), _tokens(r["tokens"]["total"]), r["status"],
            _ago(max(0.0, now - last)),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in lines)  # fmt: skip


def daemon_get(socket_path: Path, path: str, timeout: float = 5.0) -> Any:
    """GET ``path`` from the daemon over its unix socket; the decoded JSON."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise ContextdError(f"cannot reach the daemon at {socket_path}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise ContextdError(f"the daemon answered {response.status} for {path}")
    return orjson.loads(body)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def _cmd_scan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store, result = _scan(settings)
    counters = store.counters()
    sessions = store.sessions()
    store.close()
    summary = {
        "files": result.files,
        "files_read": result.files_read,
        "lines": result.lines,
        "file_resets": result.resets,
        "seconds": round(result.seconds, 3),
        "sessions": len(sessions),
        "live_sessions": sum(1 for s in sessions if s.live),
        "malformed_lines_total": counters.get("transcript_malformed", 0),
        "oversize_lines_total": counters.get("transcript_oversize", 0),
    }
    if args.json:
        _write(summary)
    else:
        sys.stdout.write(
            f"scanned {result.files} files ({result.files_read} with new lines), "
            f"{result.lines} lines in {result.seconds:.2f}s; {summary['sessions']} sessions, "
            f"{summary['live_sessions']} live\n"
        )
    return 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        store, _ = _scan(settings)
    except StoreLockedError:
        # The daemon owns the database and keeps it current: ask it instead.
        query = "/api/sessions?all=1" if args.all else "/api/sessions"
        rows: list[dict[str, Any]] = daemon_get(settings.socket, query)["sessions"]
    else:
        snaps = store.sessions(live_only=not args.all)
        store.close()
        rows = [session_view(s, settings.engine) for s in snaps]
    rows.sort(key=lambda r: r["last_activity"], reverse=True)
    if args.json:
        _write(rows)
    elif rows:
        sys.stdout.write(_table(rows) + "\n")
    else:
        sys.stdout.write("no live sessions (use --all to include ended and expired ones)\n"
                         if not args.all else "no sessions found\n")  # fmt: skip
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.host:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port: not a TCP port: {args.port}")
        settings = replace(settings, port=args.port)
    claude_roots(settings.config_dirs)  # bad dirs fail here, before anything listens
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    from contextd.server import serve  # noqa: PLC0415 (keeps the other commands light)

    return serve(settings)


def _cmd_mcp(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Lazily: the MCP SDK is heavy, and only this command needs it.
    from contextd.mcp.stdio import serve_stdio  # noqa: PLC0415

    return serve_stdio(settings)


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options given here that the commands Claude Code runs must get too."""
    out: list[str] = []
    for option, value in (("--config", args.config), ("--db", args.db),
                          ("--socket", args.socket)):  # fmt: skip
        if value is not None:
            out += [option, str(value.expanduser().absolute())]
    return out


def _cmd_install(args: argparse.Namespace) -> int:
    from contextd.integrate import install  # noqa: PLC0415

    targets = install.Targets.for_scope(args.scope)
    if args.command == "uninstall":
        install.uninstall(targets, say=_say, dry_run=args.dry_run)
        return 0
    install.install(_settings(args), targets, say=_say, dry_run=args.dry_run, force=args.force,
                    statusline=not args.no_statusline, hook_type=args.hook_type,
                    extra_args=_forwarded(args))  # fmt: skip
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from contextd.integrate import doctor, install  # noqa: PLC0415

    return doctor.run(_settings(args), install.Targets.for_scope(args.scope), say=_say)


def _cmd_lean(args: argparse.Namespace) -> int:
    """``statusline``/``hook`` reached through this parser (options before the command)."""
    argv = [args.command]
    for name in ("config", "db", "socket"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    return lean_main(argv)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


_COMMANDS = {"scan": _cmd_scan, "sessions": _cmd_sessions, "serve": _cmd_serve,
             "mcp": _cmd_mcp, "install": _cmd_install, "uninstall": _cmd_install,
             "doctor": _cmd_doctor, "statusline": _cmd_lean, "hook": _cmd_lean}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("config", "db", "socket"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(args, f"g_{name}"))
    args.config_dir = [*args.g_config_dir, *getattr(args, "config_dir", [])]
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"contextd: error: {exc}\n")
        return 2
    except ContextdError as exc:
        sys.stderr.write(f"contextd: error: {exc}\n")
        return 1
    except BrokenPipeError:
        return 0
