"""MCP over streamable HTTP on the daemon's own app: both protocol eras, the caller resolution
paths a request over HTTP can take, bad input on every transport, and the Host/Origin checks the
daemon's guard and the SDK must agree on.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from contextd.server import Guard, Scope
from tests.mcp.harness import (
    SID3,
    TOOLS,
    announce,
    claiming,
    failed,
    in_memory,
    ok,
    over_http,
    run,
    session,
    use,
)
from tests.test_server import SID, SID2, status_line

# -- resolution paths --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Claude-Session-ID", "X-Claude-Code-Session-Id"])
def test_over_http_a_session_header_names_the_caller(
    api: TestClient, app: Guard, header: str
) -> None:
    status_line(api, 100_000)
    status_line(api, 20_000, sid=SID2)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with over_http(app, headers={header: SID2}) as mcp:
            status = ok(await mcp.call_tool("context_status", {}))
            listed = ok(await mcp.call_tool("list_sessions", {}))
            return status, listed

    status, listed = run(api, scenario)
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID2, "header")
    assert status["context_tokens"] == 20_000
    assert {s["session_id"]: s["is_me"] for s in listed["sessions"]} == {SID: False, SID2: True}


def test_over_http_a_tool_use_id_after_a_pre_tool_use_hook_names_the_caller(
    api: TestClient, app: Guard
) -> None:
    status_line(api, 100_000)
    status_line(api, 30_000, sid=SID2)
    announce(api, "toolu_http_1", sid=SID2)

    async def scenario() -> dict[str, Any]:
        # The header holds what ${CLAUDE_CODE_SESSION_ID:-unset} expands to in an MCP config.
        async with over_http(app, headers={"X-Claude-Session-ID": "unset"}) as mcp:
            return ok(await mcp.call_tool("context_status", {}, meta=use("toolu_http_1")))

    status = run(api, scenario)
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID2, "tool_use_id")
    assert status["context_tokens"] == 30_000


def test_without_any_hint_the_caller_is_its_connection_and_context_status_says_why(
    api: TestClient, app: Guard
) -> None:
    status_line(api, 100_000)
    announce(api, "toolu_known")

    async def scenario() -> tuple[dict[str, Any], str, dict[str, Any]]:
        async with over_http(app) as mcp:
            listed = ok(await mcp.call_tool("list_sessions", {}))
            error = failed(await mcp.call_tool("context_status", {}, meta=use("toolu_unknown")))
            again = ok(await mcp.call_tool("list_sessions", {}))
            return listed, error, again

    listed, error, again = run(api, scenario)
    assert listed["resolved_by"] == "connection"
    assert listed["resolved_session_id"].startswith("conn_")
    assert again["resolved_session_id"] == listed["resolved_session_id"]  # stable per peer
    assert [s["is_me"] for s in listed["sessions"]] == [False]
    assert "could not tell which Claude Code session is calling" in error
    assert "PreToolUse" in error
    assert "session_id" in error


def test_a_claimed_session_contextd_does_not_know_gets_a_clear_error(
    api: TestClient, app: Guard
) -> None:
    async def scenario() -> str:
        async with over_http(app, headers={"X-Claude-Session-ID": SID3}) as mcp:
            return failed(await mcp.call_tool("context_status", {}))

    error = run(api, scenario)
    assert SID3 in error
    assert "resolved by header" in error
    assert "not known to contextd" in error


# -- transports and bad input -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_over_http_every_tool_answers_in_both_protocol_eras(
    api: TestClient, app: Guard, mode: str
) -> None:
    """``auto`` negotiates 2026-07-28 (one POST per request, as Claude Code does); ``legacy``
    runs the initialize handshake of earlier clients against the same stateless endpoint."""
    status_line(api, 120_000)
    calls: dict[str, dict[str, Any]] = {
        "context_status": {}, "list_sessions": {"user": "*"}, "session_stats": {},
        "session_events": {"limit": 5}, "usage_summary": {}, "record_checkpoint": {},
    }  # fmt: skip
    assert set(calls) == TOOLS

    async def scenario() -> dict[str, dict[str, Any]]:
        async with over_http(app, headers={"X-Claude-Session-ID": SID}, mode=mode) as mcp:
            assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
            return {name: ok(await mcp.call_tool(name, args)) for name, args in calls.items()}

    results = run(api, scenario)
    assert all(r["resolved_session_id"] == SID for r in results.values())
    assert results["context_status"]["context_tokens"] == 120_000
    assert results["record_checkpoint"]["counted"]
    assert session(api)["checkpoints"] == 1


@pytest.mark.parametrize("transport", ["in_memory", "http"])
def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(
    api: TestClient, app: Guard, daemon: Daemon, transport: str
) -> None:
    status_line(api, 60_000)
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        ("session_events", {"limit": "3"}, "limit"),  # a string is never an integer
        ("session_events", {"limit": 0}, "limit"),
        ("session_events", {"after": -1}, "after"),
        ("list_sessions", {"user": "bob"}, "user"),
        ("session_stats", {"session_id": "a b/../c"}, "session_id"),
        ("session_stats", {"session_id": SID3}, f"unknown session {SID3!r}"),
        ("record_checkpoint", {"tokens_saved": -5}, "tokens_saved"),
        ("record_checkpoint", {"note": "x" * 501}, "note"),
    ]

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        connect = in_memory(daemon) if transport == "in_memory" else over_http(app)
        async with connect as mcp:
            meta = claiming(SID)
            errors = [failed(await mcp.call_tool(name, args, meta=meta)) for name, args, _ in bad]
            return errors, ok(await mcp.call_tool("context_status", {}, meta=meta))

    errors, status = run(api, scenario)
    for (name, _, expected), error in zip(bad, errors, strict=True):
        assert expected in error, (name, error)
    assert status["context_tokens"] == 60_000
    assert session(api)["checkpoints"] == 0


def test_mcp_over_the_unix_socket_accepts_a_bare_localhost_host(
    api: TestClient, app: Guard
) -> None:
    """uvicorn gives a unix-socket request no client address, and the MCP SDK's client sends
    ``Host: localhost``: the daemon's guard and the SDK's own check both let it through."""
    status_line(api, 70_000)

    def via_socket(scope: Scope) -> None:
        scope["client"] = None

    async def scenario() -> dict[str, Any]:
        headers = {"X-Claude-Session-ID": SID}
        async with over_http(app, headers=headers, base="http://localhost",
                             peer=via_socket) as mcp:  # fmt: skip
            return ok(await mcp.call_tool("context_status", {}))

    assert run(api, scenario)["context_tokens"] == 70_000


@pytest.mark.parametrize(
    ("headers", "status", "field"),
    [({"host": "localhost"}, 421, "Host"), ({"host": "evil.example.com:7399"}, 421, "Host"),
     ({"origin": "http://evil.example.com"}, 403, "Origin")],
)  # fmt: skip
def test_mcp_over_tcp_refuses_foreign_hosts_and_origins(
    api: TestClient, headers: dict[str, str], status: int, field: str
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = api.post("/mcp", json=body, headers={
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
        **headers,
    })  # fmt: skip
    assert (response.status_code, response.json()["field"]) == (status, field)


def test_an_mcp_message_over_tcp_with_a_loopback_origin_is_served(api: TestClient) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}  # fmt: skip
    response = api.post("/mcp", json=body, headers={
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
        "mcp-method": "server/discover", "origin": "http://localhost:7399",
    })  # fmt: skip
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert "2026-07-28" in result["supportedVersions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "contextd"
