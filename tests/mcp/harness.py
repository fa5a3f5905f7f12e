"""What the MCP tests share: connecting the official client, reading its results, and
making Claude Code's side of a tool call (the PreToolUse hook, the ``_meta`` it sends).

Clients connect in memory (``Client(server)``: the 2026-07-28 per-request path) or over
streamable HTTP to the daemon app's ``/mcp`` (through the same Guard as every other route).
Both run on the event loop the daemon lives on (:func:`run`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx2
import orjson
from mcp.client import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, RequestParamsMeta, TextContent
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from contextd.mcp import DaemonBackend, build_mcp
from contextd.server import Guard, Receive, Scope, Send
from tests.test_server import BASE, SID, hook

T = TypeVar("T")
TOOLS = {"context_status", "list_sessions", "session_stats", "session_events",
         "record_checkpoint", "usage_summary"}  # fmt: skip
OTHER_USER = "0123456789abcdef"
SID3 = "e0d1c2b3-0000-4000-8000-000000000003"


def run(api: TestClient, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` on the event loop the daemon and its app live on."""
    portal = api.portal
    assert portal is not None
    return portal.call(scenario)


@asynccontextmanager
async def in_memory(daemon: Daemon) -> AsyncIterator[ClientSession]:
    async with Client(build_mcp(DaemonBackend(daemon))) as client:
        yield client.session


@asynccontextmanager
async def over_http(
    app: Guard, *, headers: dict[str, str] | None = None, mode: str = "auto",
    base: str = BASE, peer: Callable[[Scope], None] | None = None,
) -> AsyncIterator[ClientSession]:  # fmt: skip
    """A client of the daemon app's ``/mcp``; ``peer`` may rewrite each request's scope."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if peer is not None:
            peer(scope)
        await app(scope, receive, send)

    transport = httpx2.ASGITransport(app=asgi)
    async with (
        httpx2.AsyncClient(transport=transport, base_url=base, headers=headers) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client.session


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    data: dict[str, Any] | None = result.structured_content
    assert data is not None
    return data


def text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def failed(result: CallToolResult) -> str:
    assert result.is_error
    assert result.structured_content is None
    return text(result)


def session(api: TestClient, sid: str = SID) -> dict[str, Any]:
    """The daemon's JSON view of a session (with its recent events)."""
    response = api.get(f"/api/sessions/{sid}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def announce(api: TestClient, tool_use_id: str, sid: str = SID) -> None:
    """What Claude Code does just before an MCP tool call: the PreToolUse hook."""
    assert hook(api, "PreToolUse", sid=sid, tool_name="mcp__contextd__context_status",
                tool_use_id=tool_use_id, tool_input={}) == 200  # fmt: skip


def use(tool_use_id: str) -> RequestParamsMeta:
    """``_meta`` as Claude Code sends it: the tool use id the PreToolUse hook announced."""
    return cast("RequestParamsMeta", {"claudecode/toolUseId": tool_use_id})


def claiming(sid: str) -> RequestParamsMeta:
    """``_meta`` naming the session itself (Claude Code 2.1.330 does not, others may)."""
    return cast("RequestParamsMeta", {"claudecode/sessionId": sid})


def write_response(root: Path, sid: str, usage: dict[str, int], message_id: str) -> Path:
    """Append one assistant response to a transcript under the watched root."""
    project = root / "projects" / "-home-u-proj"
    project.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    line = {"type": "assistant", "sessionId": sid, "cwd": "/home/u/proj", "timestamp": stamp,
            "requestId": f"req_{message_id}", "message": {"id": message_id, "content": [],
                                                         "model": "claude-opus-4-6",
                                                         "usage": usage}}  # fmt: skip
    path = project / f"{sid}.jsonl"
    with path.open("ab") as fh:
        fh.write(orjson.dumps(line) + b"\n")
    return path
