"""The ``contextd`` command. The only module that prints or chooses exit codes.

Exit codes: 0 success; 1 a runtime failure (state database unusable); 2 bad arguments, bad
settings or an unreadable Claude Code directory, always with one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode

import orjson

from contextd import __version__
from contextd.config import Settings, apply_settings, http_url, load_settings
from contextd.daemon_client import daemon_get
from contextd.entry import LEAN_COMMANDS
from contextd.entry import main as lean_main
from contextd.errors import ConfigError, ContextdError, StoreLockedError
from contextd.identity import install_secret, local_user_id
from contextd.ingest.discovery import claude_roots, transcript_files
from contextd.ingest.scanner import ScanResult, TranscriptIngestor, default_jobs
from contextd.records.forward import events_url
from contextd.records.model import SessionRecord
from contextd.records.report import (
    history_table,
    parse_when,
    session_row,
    user_filter,
    write_report,
)
from contextd.records.store import RecordQuery, open_record_store
from contextd.sessions import SessionManager
from contextd.store import Store
from contextd.views import session_view, tokens_text


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
    serve.add_argument(
        "--proxy",
        action="store_true",
        default=None,
        help="also run the API proxy (ANTHROPIC_BASE_URL=http://127.0.0.1:7324)",
    )
    serve.add_argument("--proxy-port", type=int, help="the API proxy's port (default 7324)")
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="the API the proxy forwards to (default https://api.anthropic.com)",
    )
    serve.add_argument("--store", metavar="PATH|postgresql://…",
                       help="session records: a SQLite file (default: history.db by the state "
                       "db) or a PostgreSQL URL")  # fmt: skip
    serve.add_argument("--forward", metavar="URL", help="send session records to the central "
                       "contextd at URL (token: CONTEXTD_FORWARD_TOKEN)")  # fmt: skip
    serve.add_argument("--retention-days", metavar="DAYS",
                       help="delete session records older than this")  # fmt: skip
    mcp = sub.add_parser("mcp", help="serve the MCP tools over stdio (for `claude mcp add`)")
    _common(mcp, json=False)
    sessions = sub.add_parser("sessions", help="list sessions (after an incremental scan)")
    _common(sessions)
    sessions.add_argument("--all", action="store_true", help="include ended and expired sessions")
    sessions.add_argument("--user", metavar="ID|me", help="only this user's sessions")
    _history_commands(sub)
    stack = sub.add_parser("stack", help="a local VictoriaMetrics scraping the daemon "
                           "(the PromQL backend of `contextd monitor`)")  # fmt: skip
    stack.add_argument("action", choices=["start", "stop", "status"])
    _common(stack)
    stack.add_argument(
        "--listen",
        default="127.0.0.1:8428",
        metavar="HOST:PORT",
        help="VictoriaMetrics' address (loopback only; default 127.0.0.1:8428)",
    )
    monitor = sub.add_parser("monitor", help="live terminal view of the sessions (PromQL)")
    _common(monitor)
    monitor.add_argument("--prometheus", metavar="URL", help="PromQL backend (default "
                         "VictoriaMetrics at http://127.0.0.1:8428)")  # fmt: skip
    monitor.add_argument("--daemon", metavar="URL|SOCKET", help="the daemon, for the fallback")
    monitor.add_argument("--refresh", type=float, metavar="SECONDS", help="default 5")
    monitor.add_argument("--once", action="store_true", help="print one snapshot and exit")
    usage = sub.add_parser("usage", help="tokens, cost, 5-hour blocks and burn rate, live")
    _common(usage)
    _usage_arguments(usage)
    _integration_commands(sub)
    return parser


def _history_commands(sub: Any) -> None:
    """``contextd history`` and ``contextd report`` (session records, contextd.records)."""
    history = sub.add_parser("history", help="browse past sessions (session records)")
    _common(history)
    report = sub.add_parser("report", help="write a report of past sessions: FILE.json, "
                            "FILE.sessions.json, FILE.analytics.json (or CSV)")  # fmt: skip
    _common(report, json=False)
    for cmd in (history, report):
        cmd.add_argument("--store", metavar="PATH|postgresql://…", help="the record store")
        cmd.add_argument("--user", metavar="ID|me", help="only this user's sessions")
        cmd.add_argument("--project", metavar="NAME", help="only this project's sessions")
        cmd.add_argument("--since", metavar="DATE", help="sessions that ended from this day/time")
        cmd.add_argument("--until", metavar="DATE", help="… up to this day (inclusive)/time")
    history.add_argument("--limit", type=int, default=50, metavar="N", help="newest N (50)")
    report.add_argument("--out", type=Path, required=True, metavar="FILE.json")
    report.add_argument("--format", choices=["json", "csv"], help="json (default; csv when "
                        "FILE ends in .csv)")  # fmt: skip


def _usage_arguments(usage: argparse.ArgumentParser) -> None:
    """``contextd usage [live|daily|session|blocks]``; values are checked by
    contextd.usage.options."""
    usage.add_argument(
        "report",
        nargs="?",
        default="live",
        choices=["live", "daily", "session", "blocks"],
        help="live view (default), or a per-day, per-session or per-block report",
    )
    add = usage.add_argument
    add("--refresh-interval", default="2", metavar="SECONDS", help="live view refresh (2)")
    add("--token-limit", metavar="N|max", help="tokens per block to warn about")
    add("--session-duration", metavar="HOURS", help="block length (5)")
    add("--burn-window", metavar="MINUTES", help="burn-rate window (10)")
    add("--projects", metavar="A,B", help="only these projects (names or directories)")
    add("--exclude", metavar="A,B", help="leave out these projects")
    add("--cost-threshold", metavar="USD", help="block cost to warn about")
    add("--since", metavar="YYYY-MM-DD", help="only entries from this day")
    add("--until", metavar="YYYY-MM-DD", help="only entries up to this day")
    add("--mode", metavar="auto|calculate|display", help="costUSD or priced tokens (auto)")
    add("--timezone", metavar="IANA", help="for days (default: local)")
    add(
        "--pricing",
        type=Path,
        metavar="FILE",
        help="LiteLLM-format price file (reads the transcripts directly)",
    )
    add("--compact", action="store_true", help="fewer columns")


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
            f"{tokens_text(r['context_tokens'])}/{tokens_text(r['context_window'])}",
            f"{r['context_percent']:.1f}", r["threshold_state"].upper(), str(r["checkpoints"]),
            tokens_text(r["tokens_saved"]), tokens_text(r["tokens"]["total"]), r["status"],
            _ago(max(0.0, now - last)),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in lines)  # fmt: skip


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
    user = user_filter(args.user, lambda: _me(settings))
    rows = [r for r in rows if user is None or r.get("user") == user]
    rows.sort(key=lambda r: r["last_activity"], reverse=True)
    if args.json:
        _write(rows)
    elif rows:
        sys.stdout.write(_table(rows) + "\n")
    else:
        sys.stdout.write("no live sessions (use --all to include ended and expired ones)\n"
                         if not args.all else "no sessions found\n")  # fmt: skip
    return 0


def _proxy_options(settings: Settings, args: argparse.Namespace) -> Settings:
    if args.proxy:
        settings = replace(settings, proxy=True)
    if args.proxy_port is not None:
        if not 0 < args.proxy_port < 65536:
            raise ConfigError(f"--proxy-port: not a TCP port: {args.proxy_port}")
        settings = replace(settings, proxy_port=args.proxy_port)
    if args.upstream is not None:
        settings = replace(settings, proxy_upstream=http_url("--upstream", args.upstream))
    return settings


def _me(settings: Settings) -> str:
    return local_user_id(install_secret(settings.db.parent), settings.identity_hash)


def _records(args: argparse.Namespace, limit: int | None = None) -> tuple[
    list[SessionRecord], dict[str, object], str
]:  # fmt: skip
    """The records ``--store --user --project --since --until`` select, the filters, and this
    user's id."""
    settings = _history_settings(_settings(args), args)
    me = _me(settings)
    query = RecordQuery(
        identity=user_filter(args.user, lambda: me), project=args.project,
        since=parse_when("--since", args.since) if args.since else None,
        until=parse_when("--until", args.until, end=True) if args.until else None,
    )  # fmt: skip
    store = open_record_store(settings.store or settings.db.parent / "history.db")
    try:
        found = store.records(query)
    finally:
        store.close()
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    filters = {"user": query.identity, "project": query.project, "since": args.since,
               "until": args.until}  # fmt: skip
    return found, filters, me


def _cmd_history(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise ConfigError(f"--limit: expected a count >= 0, got {args.limit}")
    found, _, me = _records(args, args.limit)
    rows = [session_row(r, me) for r in reversed(found)]  # newest first
    if args.json:
        _write(rows)
    elif rows:
        sys.stdout.write(history_table(rows) + "\n")
    else:
        sys.stdout.write("no session records (sessions are recorded when they end)\n")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    fmt = args.format or ("csv" if args.out.suffix == ".csv" else "json")
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out: no such directory: {args.out.parent}")
    found, filters, me = _records(args)
    paths = write_report(args.out, fmt, found, me=me, filters=filters, now=time.time())
    sys.stdout.write(f"{len(found)} sessions: {', '.join(str(p) for p in paths)}\n")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.host:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port: not a TCP port: {args.port}")
        settings = replace(settings, port=args.port)
    settings = _proxy_options(settings, args)
    settings = _history_settings(settings, args)
    claude_roots(settings.config_dirs)  # bad dirs fail here, before anything listens
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    from contextd.server import serve  # noqa: PLC0415 (keeps the other commands light)

    return serve(settings)


def _history_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """``--store``, ``--forward`` and ``--retention-days`` over the settings (checked like them)."""
    given = {"store": getattr(args, "store", None), "forward": getattr(args, "forward", None),
             "retention_days": getattr(args, "retention_days", None)}  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    try:
        settings = apply_settings(settings, given, "--") if given else settings
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--retention_days", "--retention-days")) from None
    if settings.forward is not None:
        events_url(settings.forward)  # a bad URL fails here, before anything starts
    return settings


def _cmd_mcp(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Lazily: the MCP SDK is heavy, and only this command needs it.
    from contextd.mcp.stdio import serve_stdio  # noqa: PLC0415

    return serve_stdio(settings)


def _cmd_stack(args: argparse.Namespace) -> int:
    from contextd import stack  # noqa: PLC0415 (only this command needs it)

    settings = _settings(args)
    listen = stack.parse_listen(args.listen)
    if args.action == "status":
        report = stack.status(settings)
        if args.json:
            _write(report)
        elif report["running"]:
            sys.stdout.write(f"running (pid {report['pid']}) at {report['url']}, data in "
                             f"{report['home']}\n")  # fmt: skip
            targets = report.get("targets")
            for target in targets if isinstance(targets, list) else ():
                error = f" ({target['last_error']})" if target["last_error"] else ""
                sys.stdout.write(f"  scrapes {target['url']}: {target['health']}{error}\n")
        else:
            sys.stdout.write(f"not running (contextd stack start; data in {report['home']})\n")
        return 0 if report["running"] else 3
    line = stack.start(settings, listen) if args.action == "start" else stack.stop(settings)
    if args.json:
        _write({"action": args.action, "result": line})
    else:
        sys.stdout.write(line + "\n")
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from contextd.monitor import command, text  # noqa: PLC0415 (only this command needs it)

    opts = command.options(_settings(args), prometheus=args.prometheus, daemon=args.daemon,
                           refresh=args.refresh)  # fmt: skip
    if args.json and not args.once:
        raise ConfigError("--json: only with --once")
    if not args.once:
        return command.run_ui(opts)
    snap = command.source(opts).snapshot()
    if args.json:
        _write(snap.as_json())
    else:
        sys.stdout.write(text.plain(snap))
    return 1 if snap.source is command.SourceKind.NONE else 0


def _usage_fetch(settings: Settings, args: argparse.Namespace) -> tuple[Callable[[], Any], str]:
    """Where the figures come from: the daemon when it answers, else the transcripts."""
    from contextd.usage.options import KEYS, parse_options, parse_report  # noqa: PLC0415
    from contextd.usage.service import UsageService, load_prices  # noqa: PLC0415

    params = {key: getattr(args, key) for key in KEYS if getattr(args, key, None)}
    options, report = parse_options(params), parse_report(params.get("report"))
    pricing = args.pricing or settings.pricing
    if pricing is None and settings.socket.exists():
        path = "/api/usage?" + urlencode(params)
        try:
            daemon_get(settings.socket, path)
        except ContextdError:
            pass  # no daemon (or an older one): read the transcripts
        else:
            return (lambda: daemon_get(settings.socket, path)), "daemon"
    service = UsageService(claude_roots(settings.config_dirs), load_prices(pricing))

    def local() -> Any:
        service.refresh()
        return service.report(report, options)

    return local, "transcripts"


def _cmd_usage(args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415 (only this command draws)
    from rich.live import Live  # noqa: PLC0415

    from contextd.usage import live  # noqa: PLC0415

    settings = _settings(args)
    try:
        interval = float(args.refresh_interval)
    except ValueError:
        interval = 0.0
    if not 0 < interval < float("inf"):
        raise ConfigError(
            f"--refresh-interval: expected seconds > 0, got {args.refresh_interval!r}"
        )
    fetch, source = _usage_fetch(settings, args)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a pipe or file: no terminal width to fit
    if args.json:
        _write(fetch())
        return 0
    if args.report != "live":
        console.print(live.report_table(args.report, fetch()))
        return 0
    compact = args.compact or console.width < live.FULL_WIDTH
    screen = live.LiveUsage(fetch, source=source, compact=compact)
    if not console.is_terminal:
        console.print(screen.step())
        return 0
    with Live(screen.step(), console=console, auto_refresh=False) as view:
        try:
            while True:
                time.sleep(interval)
                view.update(screen.step(), refresh=True)
        except KeyboardInterrupt:
            return 0


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
             "mcp": _cmd_mcp, "monitor": _cmd_monitor, "stack": _cmd_stack,
             "usage": _cmd_usage, "install": _cmd_install, "uninstall": _cmd_install,
             "doctor": _cmd_doctor, "statusline": _cmd_lean, "hook": _cmd_lean,
             "history": _cmd_history, "report": _cmd_report}  # fmt: skip


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
