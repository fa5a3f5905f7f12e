"""``contextd statusline`` and ``contextd hook``: on Claude Code's hot path, so lean.

Claude Code runs ``contextd statusline`` after every assistant message with its status-line
JSON on stdin, and (as a command hook) ``contextd hook`` with a hook payload on stdin. Both
forward the payload to the daemon — ``POST /api/statusline`` or ``POST /hooks``, over its unix
socket, else over HTTP — with a ``contextd_env`` object added::

    "contextd_env": {"session_type": "ssh", "entrypoint": "cli", "user_id": "<16 hex>"}

(see :mod:`contextd.environment` and :mod:`contextd.identity`; the raw key never leaves this
process), and without the fields that carry what the session said or did
(:data:`CONTENT_FIELDS`: prompts, tool inputs and outputs, messages, summaries). The
forwarding runs in a detached child process, so neither command ever waits for the daemon:
``statusline`` prints its line and exits, and the line is the same whether the
daemon is up, slow or down. ``hook`` prints nothing and always exits 0, whatever happens: a
command hook's exit code 2 would block Claude Code's action, and its stdout would be added to
the conversation on some events.

The line: model, context tokens/window and percent (green, yellow from the first threshold,
red from the second), session cost, and the 5-hour block when known: Claude Code's own
``rate_limits.five_hour`` when it sends one, else the file the daemon may keep at
``<state dir>/usage-block.json`` (written by the usage accounting; read only when updated in
the last 15 minutes)::

    {"updated_at": 1763870000.0,
     "five_hour": {"used_percentage": 42.0, "cost_usd": 3.21, "resets_at": "…"}}

Imports: the standard library only, and from contextd only the stdlib-only modules
(:mod:`contextd.paths`, :mod:`contextd.environment`, :mod:`contextd.identity`, the last two
in the child). Settings come from ``CONTEXTD_*`` variables and ``--config FILE`` (TOML) like
everywhere else, read here without :mod:`contextd.config`.
"""

from __future__ import annotations

import json
import os
import sys
import time

from contextd.paths import runtime_home, state_home

TYPE_CHECKING = False  # typing, collections.abc and pathlib cost milliseconds to import
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, BinaryIO

    StrPath = str | os.PathLike[str]

USAGE_FILE = "usage-block.json"
USAGE_MAX_AGE = 900.0
CONNECT_TIMEOUT = 0.1  # seconds; the child waits at most REPLY_TIMEOUT for the daemon's answer
REPLY_TIMEOUT = 2.0
GREEN, YELLOW, RED, DIM, RESET = "\033[32m", "\033[33m", "\033[31m", "\033[2m", "\033[0m"
SEPARATOR = " │ "
# What a session said and did: the daemon never keeps it, so it is not even sent (and a large
# tool input would only push a payload over the daemon's body cap).
CONTENT_FIELDS = frozenset({
    "prompt", "tool_input", "tool_response", "last_assistant_message", "compact_summary",
    "custom_instructions", "delta", "tool_calls",
})  # fmt: skip


class UsageError(Exception):
    """A bad option or setting of these commands (exit 2 for ``statusline``)."""


# -- settings ----------------------------------------------------------------------------------


def options(argv: Sequence[str]) -> dict[str, str]:
    """``--config``, ``--db`` and ``--socket`` (what ``contextd install`` passes along)."""
    found: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, _, value = arg.partition("=")
        if name not in ("--config", "--db", "--socket"):
            raise UsageError(f"unknown option {arg!r}")
        if not value:
            if not args:
                raise UsageError(f"{name} needs a value")
            value = args.pop(0)
        found[name[2:]] = value
    return found


def lean_settings(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """The few settings these commands need: defaults ← TOML file ← environment ← options."""
    opts = options(argv)
    values: dict[str, Any] = {}
    if "config" in opts:
        import tomllib  # noqa: PLC0415 (only when a file is given)

        try:
            with open(opts["config"], "rb") as fh:
                values.update(tomllib.load(fh))
        except (OSError, ValueError) as exc:
            raise UsageError(f"config file {opts['config']}: {exc}") from None
    for key in ("db", "socket", "host", "port", "token", "identity_hash", "warn_percent",
                "critical_percent"):  # fmt: skip
        value = env.get(f"CONTEXTD_{key.upper()}")
        if value:
            values[key] = value
    values.update({k: v for k, v in opts.items() if k != "config"})
    try:
        return {
            "db": os.path.expanduser(
                values.get("db") or os.path.join(state_home(env), "contextd.db")
            ),
            "socket": os.path.expanduser(
                values.get("socket") or os.path.join(runtime_home(env), "contextd.sock")
            ),
            "host": str(values.get("host", "127.0.0.1")),
            "port": int(values.get("port", 7323)),
            "token": values.get("token"),
            "identity_hash": str(values.get("identity_hash", "hmac")),
            "warn": float(values.get("warn_percent", 70.0)),
            "critical": float(values.get("critical_percent", 90.0)),
        }
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad setting: {exc}") from None


# -- the line ----------------------------------------------------------------------------------


def _tokens(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(int(n))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _get(data: object, *path: str) -> object:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _paint(text: str, colour: str, color: bool) -> str:
    return f"{colour}{text}{RESET}" if color else text


def context_part(payload: Mapping[str, Any], warn: float, critical: float, color: bool) -> str:
    window = _number(_get(payload, "context_window", "context_window_size"))
    usage = _get(payload, "context_window", "current_usage")
    used: float | None = None
    if isinstance(usage, dict):
        used = sum(_number(usage.get(k)) or 0.0 for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))  # fmt: skip
    percent = _number(_get(payload, "context_window", "used_percentage"))
    if percent is None and used is not None and window:
        percent = 100.0 * used / window
    size = _tokens(window) if window else "?"
    if used is None:
        return f"ctx -/{size}"
    text = f"ctx {_tokens(used)}/{size}"
    if percent is None:
        return text
    colour = RED if percent >= critical else YELLOW if percent >= warn else GREEN
    return f"{text} {_paint(f'{percent:.0f}%', colour, color)}"


def block_part(payload: Mapping[str, Any], usage_file: StrPath | None, now: float) -> str | None:
    """The 5-hour block: Claude Code's figure, else the daemon's file, else nothing."""
    used = _number(_get(payload, "rate_limits", "five_hour", "used_percentage"))
    if used is not None:
        return f"5h {used:.0f}%"
    if usage_file is None:
        return None
    try:
        with open(usage_file, "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    updated = _number(_get(data, "updated_at"))
    if updated is None or now - updated > USAGE_MAX_AGE:
        return None
    used = _number(_get(data, "five_hour", "used_percentage"))
    if used is not None:
        return f"5h {used:.0f}%"
    cost = _number(_get(data, "five_hour", "cost_usd"))
    return f"5h ${cost:.2f}" if cost is not None else None


def status_text(
    payload: Mapping[str, Any],
    *,
    warn: float = 70.0,
    critical: float = 90.0,
    color: bool = True,
    usage_file: StrPath | None = None,
    now: float | None = None,
) -> str:
    """The status line for one status-line payload."""
    model = _get(payload, "model", "display_name") or _get(payload, "model", "id") or "?"
    parts = [str(model)[:40], context_part(payload, warn, critical, color)]
    cost = _number(_get(payload, "cost", "total_cost_usd"))
    if cost is not None:
        parts.append(f"${cost:.2f}")
    block = block_part(payload, usage_file, time.time() if now is None else now)
    if block:
        parts.append(block)
    return SEPARATOR.join(parts)


# -- forwarding --------------------------------------------------------------------------------


def http_request(
    address: str | tuple[str, int],
    method: str,
    path: str,
    body: bytes = b"",
    *,
    token: str | None = None,
    timeout: float = REPLY_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to the daemon (a unix socket path, or host and port); the status
    and body. Raises OSError when it cannot be reached or answers garbage."""
    import socket  # noqa: PLC0415 (not on the printing path)

    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        host = "localhost"
    else:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        host = f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    with sock:
        sock.settimeout(connect_timeout)
        sock.connect(address)
        sock.settimeout(timeout)
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close",
                f"Content-Length: {len(body)}", "Content-Type: application/json"]  # fmt: skip
        if token:
            head.append(f"Authorization: Bearer {token}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    status_line, _, rest = reply.partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {status_line[:60]!r}")
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


def forward(path: str, payload: dict[str, Any], settings: Mapping[str, Any],
            env: Mapping[str, str]) -> int | None:  # fmt: skip
    """Add ``contextd_env`` to ``payload`` and POST it to the daemon: the unix socket first,
    then TCP. The HTTP status, or None when no daemon answered."""
    from pathlib import Path  # noqa: PLC0415 (off the printing path, as the two below)

    from contextd.environment import describe  # noqa: PLC0415
    from contextd.identity import hashed_id, identity_material, install_secret  # noqa: PLC0415

    extra: dict[str, str] = describe(env)
    try:
        secret = install_secret(Path(settings["db"]).parent)
        extra["user_id"] = hashed_id(identity_material(env), secret, settings["identity_hash"])
    except OSError:
        pass  # no state directory to keep a secret in: the daemon's default user applies
    kept = {k: v for k, v in payload.items() if k not in CONTENT_FIELDS}
    body = json.dumps({**kept, "contextd_env": extra}).encode()
    token = settings["token"]
    for address in (str(settings["socket"]), (settings["host"], settings["port"])):
        try:
            return http_request(address, "POST", path, body, token=token)[0]
        except OSError:
            continue
    return None


def detached(work: Callable[[], object]) -> None:
    """Run ``work`` in a child that outlives this process and holds none of its stdio, so
    Claude Code sees this command finish at once. Without ``fork``: run it here."""
    try:
        pid = os.fork()
    except (AttributeError, OSError):
        work()
        return
    if pid:
        return
    try:
        os.setsid()
        os.nice(10)  # the command that forked this child is finishing: let it have the CPU
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        work()
    finally:
        os._exit(0)


# -- the commands ------------------------------------------------------------------------------


def _payload(stdin: BinaryIO) -> dict[str, Any]:
    try:
        data = json.loads(stdin.read())
    except ValueError as exc:
        raise UsageError(f"stdin is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("stdin must hold a JSON object")
    return data


def run_statusline(argv: Sequence[str], env: Mapping[str, str], stdin: BinaryIO,
                   stdout: BinaryIO, stderr: BinaryIO) -> int:  # fmt: skip
    try:
        settings = lean_settings(argv, env)
        payload = _payload(stdin)
    except UsageError as exc:
        stderr.write(f"contextd statusline: error: {exc}\n".encode())
        return 2
    line = status_text(payload, warn=settings["warn"], critical=settings["critical"],
                       color="NO_COLOR" not in env,
                       usage_file=os.path.join(os.path.dirname(settings["db"]),
                                               USAGE_FILE))  # fmt: skip
    stdout.write(line.encode() + b"\n")
    stdout.flush()
    if isinstance(payload.get("session_id"), str):
        detached(lambda: forward("/api/statusline", payload, settings, env))
    return 0


def run_hook(argv: Sequence[str], env: Mapping[str, str], stdin: BinaryIO) -> int:
    """Forward a command hook's payload; always 0 and silent (see the module docstring)."""
    try:
        settings = lean_settings(argv, env)
        payload = _payload(stdin)
    except UsageError:
        return 0
    detached(lambda: forward("/hooks", payload, settings, env))
    return 0


def main(argv: Sequence[str]) -> int:
    """``argv`` = ``[command, *options]`` with command ``statusline`` or ``hook``."""
    command, rest = argv[0], argv[1:]
    if command == "hook":
        return run_hook(rest, os.environ, sys.stdin.buffer)
    return run_statusline(rest, os.environ, sys.stdin.buffer, sys.stdout.buffer,
                          sys.stderr.buffer)  # fmt: skip


def exit_now(code: int) -> None:
    """End the process without the interpreter's clean-up (modules, GC: several ms of the
    status line's budget); everything it wrote is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
