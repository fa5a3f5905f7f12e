"""An MCP client of the daemon's unix socket in a process of its own (for peer-pid tests).

``python -m tests.mcp.socket_client SOCKET OUT [--orphan]`` connects to ``/mcp`` over
``SOCKET`` with the official client, calls ``list_sessions`` and ``context_status`` and writes
their structured results (or the error text) to ``OUT`` as JSON, atomically.

The daemon resolves a caller without hints through the peer's process tree (SO_PEERCRED), so
what such a call resolves to depends on the client's ancestors. With ``--orphan`` the process
double-forks first: the client then runs with no ancestor but init, whatever environment the
test run itself has (say, inside a Claude Code session), and resolves to its connection.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

URL = "http://localhost/mcp"


def _result(result: Any) -> dict[str, Any]:
    if result.is_error:
        return {"error": " ".join(getattr(c, "text", "") for c in result.content)}
    data: dict[str, Any] = result.structured_content or {}
    return data


async def _calls(socket: Path) -> dict[str, Any]:
    transport = httpx2.AsyncHTTPTransport(uds=str(socket))
    async with (
        httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(10.0)) as http,
        Client(streamable_http_client(URL, http_client=http)) as client,
    ):
        listed = await client.session.call_tool("list_sessions", {})
        status = await client.session.call_tool("context_status", {})
        return {"pid": os.getpid(), "list_sessions": _result(listed),
                "context_status": _result(status)}  # fmt: skip


def main(argv: list[str]) -> int:
    socket, out = Path(argv[0]), Path(argv[1])
    if "--orphan" in argv[2:]:
        if os.fork():
            os._exit(0)  # the parent returns at once; the child is re-parented to init
        os.setsid()
        if os.fork():
            os._exit(0)
    try:
        data = anyio.run(_calls, socket)
    except Exception as exc:  # noqa: BLE001 (reported to the test through the file)
        data = {"failure": repr(exc)}
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(data))
    partial.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
