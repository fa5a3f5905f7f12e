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
from contextd.config import Settings, http_url, load_settings
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
    mcp = sub.add_parser("mcp", help="serve the MCP tools over stdio (for `claude mcp add`)")
    _common(mcp, json=False)
    sessions = sub.add_parser("sessions", help="list sessions (after an incremental scan)")
    _common(sessions)
    sessions.add_argument("--all", action="store_true", help="include ended and expired sessions")
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
    return parser


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
    header = ("SESSION", "PROJECT", "MODEL", "CONTEXT", "USE%", "STATE", "CKPT", "SAVED",
              "TOKENS", "STATUS", "LAST")  # fmt: skip
    lines = [header]
    for r in rows:
        last = datetime.fromisoformat(r["last_activity"]).timestamp()
        lines.append((
            r["session_id"][:8], (r["project"] or "-")[:24], (r["model"] or "-")[:26],
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


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.host:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port: not a TCP port: {args.port}")
        settings = replace(settings, port=args.port)
    settings = _proxy_options(settings, args)
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


_COMMANDS = {"scan": _cmd_scan, "sessions": _cmd_sessions, "serve": _cmd_serve,
             "mcp": _cmd_mcp, "stack": _cmd_stack}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
