"""``contextd mcp``: the stdio MCP server Claude Code spawns (``claude mcp add contextd --
contextd mcp``).

* While a daemon answers on its unix socket, the tools are served from it
  (:class:`~contextd.mcp.remote.RemoteBackend`); while none does, read-only from the
  transcripts (:class:`~contextd.mcp.local.LocalBackend`), re-decided as the daemon comes and
  goes (:class:`~contextd.mcp.fallback.FallbackBackend`). Every tool output says which in
  ``source`` (``"daemon"`` or ``"transcripts (read-only, no daemon)"``), and read-only
  ``record_checkpoint`` is a tool error saying no daemon runs.
* A ``tools/call``'s ``claudecode/toolUseId`` is joined through the daemon's ``PreToolUse``
  index (``GET /api/tool-uses/{id}``) before the parent process is consulted.
* The caller is the parent process (Claude Code spawns one server per ``claude`` process):
  ``<config>/sessions/<ppid>.json`` names the session it runs now, so ``/clear`` and
  ``--continue`` resolve right although ``CLAUDE_CODE_SESSION_ID`` in this process's
  environment keeps the id it was spawned with (:func:`contextd.mcp.resolve.process_session`).
* stdout carries only JSON-RPC: logging goes to stderr, and while serving the SDK points fd 1
  at stderr so stray output cannot reach the wire. The process exits when stdin closes, and on
  SIGINT or SIGTERM (Claude Code sends both, ~100 ms apart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from contextd.config import Settings
from contextd.identity import hashed_id, identity_material, install_secret
from contextd.ingest.discovery import claude_roots
from contextd.mcp.fallback import FallbackBackend
from contextd.mcp.remote import DaemonClient, RemoteBackend
from contextd.mcp.resolve import process_session
from contextd.mcp.server import build_mcp

if TYPE_CHECKING:
    from contextd.mcp.local import LocalBackend

log = logging.getLogger("contextd.mcp")
READ_ONLY_REFUSAL = (
    "no contextd daemon is running, so this MCP server only reads the transcripts and cannot "
    "record a checkpoint. Start the daemon (`contextd serve`); Claude Code starts a new MCP "
    "server with each session, which then records through it."
)


class SourceNote:
    """MCP middleware: marks every tool result with where its figures came from (``source``),
    and, when nothing can be recorded, turns whatever ``record_checkpoint`` answered into an
    error saying so.

    It edits the wire form of the result (the SDK shapes it inside the chain), leaving the
    envelope the SDK made for the negotiated protocol version as it is.
    """

    def __init__(self, backend: FallbackBackend) -> None:
        self.backend = backend

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or not isinstance(result, dict):
            return result
        name = ctx.params.get("name") if ctx.params is not None else None
        if not self.backend.writable and name == "record_checkpoint":
            result.pop("structuredContent", None)
            return {**result, "isError": True,
                    "content": [{"type": "text", "text": READ_ONLY_REFUSAL}]}  # fmt: skip
        structured = result.get("structuredContent")
        if result.get("isError") or not isinstance(structured, dict):
            return result
        marked = {**structured, "source": self.backend.source}
        content = [_remarked(item, structured, marked) for item in result.get("content") or ()]
        return {**result, "structuredContent": marked, "content": content}


def _remarked(item: object, structured: dict[str, Any], marked: dict[str, Any]) -> object:
    """A text block that serializes ``structured`` (the SDK adds one for clients without
    structured content) re-made from ``marked``; any other block as it is."""
    if not isinstance(item, dict) or item.get("type") != "text":
        return item
    try:
        same = json.loads(item.get("text", "")) == structured
    except ValueError:
        same = False
    return {**item, "text": json.dumps(marked, indent=2, ensure_ascii=False)} if same else item


def local_user(state_dir: Path, mode: str = "hmac", env: Mapping[str, str] | None = None) -> str:
    """The user's id as ``contextd hook`` computes it in the same Claude Code environment (API
    key, account, else OS user; :mod:`contextd.identity`), when the install secret exists;
    else an id for this process only (nothing is written to the state directory)."""
    material = identity_material(os.environ if env is None else env)
    if (state_dir / "install.secret").is_file():
        return hashed_id(material, install_secret(state_dir), mode)
    return hashed_id(material, secrets.token_bytes(32), mode)


def _log_to_stderr() -> None:
    # Before the SDK configures logging (its basicConfig is then a no-op): stderr only.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="contextd mcp: %(levelname)s %(name)s: %(message)s")  # fmt: skip


def _exit_now() -> None:
    """SIGINT/SIGTERM: exit at once. Nothing is held that needs saving (the daemon commits
    what it was sent; the read-only store lives in memory), and an orderly stop would wait for
    the SDK's stdin reader, a thread blocked in ``read`` until stdin closes."""
    sys.stderr.flush()
    os._exit(0)


def serve_stdio(settings: Settings) -> int:
    """Serve the MCP tools over stdin/stdout until stdin closes or a signal; the exit code."""
    _log_to_stderr()
    roots = claude_roots(settings.config_dirs)  # bad --config-dir fails here, before serving
    return asyncio.run(_serve(settings, roots))


async def _serve(settings: Settings, roots: list[Path]) -> int:
    client = DaemonClient(settings.socket, token=settings.token)
    user = local_user(settings.db.parent, settings.identity_hash)

    def make_local() -> LocalBackend:
        from contextd.mcp.local import LocalBackend  # noqa: PLC0415 (only without a daemon)

        return LocalBackend(roots, settings.engine, user, max_line=settings.max_line_bytes)

    on_daemon = await client.answers()
    if not on_daemon:
        log.warning("no contextd daemon answers at %s: serving read-only from the transcripts "
                    "until one does", settings.socket)  # fmt: skip
    remote = RemoteBackend(client, settings.engine, user)
    backend = FallbackBackend(client, remote, make_local, on_daemon=on_daemon)
    session_dirs = [root / "sessions" for root in roots]
    parent = os.getppid()  # the claude process (taken now: it would be 1 once claude is gone)
    server = build_mcp(backend, process=lambda: process_session(parent, os.environ, session_dirs))
    server.middleware.append(SourceNote(backend))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _exit_now)
    await server.run_stdio_async()
    return 0
