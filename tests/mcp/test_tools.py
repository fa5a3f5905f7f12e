"""The MCP tools through the official client, against a daemon fed by its own HTTP hooks.

Sessions are made the way Claude Code makes them (``POST /hooks``, ``POST /api/statusline``,
transcripts under a watched root) on an in-process daemon; an in-memory MCP client then calls
the tools, and the structured results are checked against what the daemon's JSON API says about
the same sessions. Transports, the resolution paths that need HTTP, and bad input are in
``test_http.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent, TextResourceContents
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from tests.mcp.harness import (
    OTHER_USER,
    SID3,
    TOOLS,
    announce,
    claiming,
    in_memory,
    ok,
    run,
    session,
    use,
    write_response,
)
from tests.test_server import SID, SID2, hook, status_line, wait_for

# -- listing ---------------------------------------------------------------------------------


def test_tools_resources_and_the_prompt_are_listed(api: TestClient, daemon: Daemon) -> None:
    async def scenario() -> tuple[dict[str, Any], list[str], list[str], list[str]]:
        async with in_memory(daemon) as mcp:
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            resources = [str(r.uri) for r in (await mcp.list_resources()).resources]
            templates = [
                t.uri_template for t in (await mcp.list_resource_templates()).resource_templates
            ]
            prompts = [p.name for p in (await mcp.list_prompts()).prompts]
            return tools, resources, templates, prompts

    tools, resources, templates, prompts = run(api, scenario)
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.output_schema is not None
        assert {"resolved_session_id", "resolved_by"} <= set(tool.output_schema["properties"])
        assert tool.description
    reads, writes = tools["context_status"].annotations, tools["record_checkpoint"].annotations
    assert reads is not None
    assert writes is not None
    assert (reads.read_only_hint, writes.read_only_hint) == (True, False)
    assert resources == ["contextd://sessions"]
    assert templates == ["contextd://sessions/{session_id}"]
    assert prompts == ["checkpoint_check"]


# -- context_status ----------------------------------------------------------------------------


def test_context_status_reports_the_session_a_pre_tool_use_hook_announced(
    api: TestClient, daemon: Daemon
) -> None:
    hook(api, "SessionStart", source="startup", model="claude-opus-4-6")
    status_line(api, 150_000)
    announce(api, "toolu_fake_a5a60e4ec9af4983b278")

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("context_status", {},
                                          meta=use("toolu_fake_a5a60e4ec9af4983b278")))  # fmt: skip

    status = run(api, scenario)
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID, "tool_use_id")
    assert status["session_id"] == SID
    view = session(api)
    shared = ("status", "project", "model", "context_tokens", "context_window",
              "context_window_source", "context_percent", "threshold_state", "checkpoints",
              "tokens_saved", "last_checkpoint_at", "checkpoint_pending_pre_tokens")  # fmt: skip
    assert {f: status[f] for f in shared} == {f: view[f] for f in shared}
    assert (status["context_tokens"], status["context_window"]) == (150_000, 200_000)
    assert (status["context_percent"], status["threshold_state"]) == (75.0, "warning")
    assert status["recommendation"] == "consider a checkpoint soon"
    assert (status["warn_percent"], status["critical_percent"]) == (70.0, 90.0)


@pytest.mark.parametrize(
    ("context", "state", "advice"),
    [(50_000, "ok", "ok"), (140_000, "warning", "consider a checkpoint soon"),
     (180_000, "critical", "checkpoint now (/compact)")],
)  # fmt: skip
def test_the_recommendation_follows_the_thresholds(
    api: TestClient, daemon: Daemon, context: int, state: str, advice: str
) -> None:
    status_line(api, context)

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("context_status", {"session_id": SID}))

    status = run(api, scenario)
    assert (status["threshold_state"], status["recommendation"]) == (state, advice)
    assert status["resolved_by"] == "connection"  # asked by id: the caller itself is unknown


def test_meta_session_id_names_the_caller(api: TestClient, daemon: Daemon) -> None:
    status_line(api, 42_000)

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("context_status", {}, meta=claiming(SID)))

    status = run(api, scenario)
    assert (status["resolved_by"], status["context_tokens"]) == ("meta_session_id", 42_000)


# -- list_sessions, session_stats, session_events, usage_summary -------------------------------


def test_list_sessions_marks_the_caller_and_filters_by_project_and_user(
    api: TestClient, daemon: Daemon
) -> None:
    hook(api, "SessionStart", source="startup")
    hook(api, "SessionStart", sid=SID2, source="startup", cwd="/home/u/other")
    hook(api, "SessionStart", sid=SID3, source="startup", cwd="/home/v/proj")
    hook(api, "SessionEnd", sid=SID3, reason="other")  # history: not listed
    announce(api, "toolu_list")

    async def scenario() -> list[dict[str, Any]]:
        async with in_memory(daemon) as mcp:
            filters: list[dict[str, Any]] = [{}, {"project": "other"}, {"user": "*"},
                                             {"user": OTHER_USER}]  # fmt: skip
            return [ok(await mcp.call_tool("list_sessions", f, meta=use("toolu_list")))
                    for f in filters]  # fmt: skip

    mine, other_project, everyone, other_user = run(api, scenario)
    assert (mine["user"], mine["project"]) == (daemon.user, None)
    assert {s["session_id"]: s["is_me"] for s in mine["sessions"]} == {SID: True, SID2: False}
    mine_via_api = api.get(f"/api/sessions?user={daemon.user}").json()["sessions"]
    assert [s["session_id"] for s in mine["sessions"]] == [s["session_id"] for s in mine_via_api]
    assert [s["session_id"] for s in other_project["sessions"]] == [SID2]
    assert other_project["project"] == "other"
    assert everyone["user"] is None
    assert {s["session_id"] for s in everyone["sessions"]} == {SID, SID2}
    assert (other_user["user"], other_user["sessions"]) == (OTHER_USER, [])


def test_reads_are_scoped_to_the_callers_user(api: TestClient, daemon: Daemon) -> None:
    status_line(api, 10_000)
    status_line(api, 20_000, sid=SID2)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with in_memory(daemon) as mcp:
            meta = claiming(SID)
            other = ok(await mcp.call_tool("session_stats", {"session_id": SID2}, meta=meta))
            mine = ok(await mcp.call_tool("usage_summary", {}, meta=meta))
            theirs = ok(await mcp.call_tool("usage_summary", {"user": OTHER_USER}, meta=meta))
            return other, mine, theirs

    other, mine, theirs = run(api, scenario)
    assert (other["session_id"], other["resolved_session_id"]) == (SID2, SID)
    assert (mine["user"], mine["sessions"], mine["context_tokens"]) == (daemon.user, 2, 30_000)
    assert (theirs["user"], theirs["sessions"], theirs["projects"]) == (OTHER_USER, 0, [])


def test_session_stats_counts_tokens_by_type_and_says_cost_is_unknown(
    api: TestClient, daemon: Daemon, tmp_path: Path
) -> None:
    root = tmp_path / "claude"
    usage = {"input_tokens": 10, "cache_read_input_tokens": 90_000,
             "cache_creation_input_tokens": 500, "output_tokens": 70}  # fmt: skip
    write_response(root, SID, usage, "msg_1")
    path = write_response(root, SID, {**usage, "cache_read_input_tokens": 95_000}, "msg_2")
    hook(api, "Stop", transcript_path=str(path))
    wait_for(lambda: any(s.session_id == SID and s.responses == 2 for s in daemon.sessions))
    announce(api, "toolu_stats")

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("session_stats", {}, meta=use("toolu_stats")))

    stats = run(api, scenario)
    view = session(api)
    assert stats["tokens"] == view["tokens"]
    assert stats["tokens"] == {"input": 20, "output": 140, "cache_creation": 1000,
                               "cache_read": 185_000, "total": 186_160}  # fmt: skip
    assert stats["subagent_tokens"] == view["subagent_tokens"]
    assert stats["models"] == view["models"]
    for field in ("responses", "tool_calls", "duration_seconds", "started_at", "last_activity"):
        assert stats[field] == view[field], field
    assert stats["cost_usd"] is None
    assert "not computed" in stats["cost_note"]


def test_session_events_page_forward_without_gaps(api: TestClient, daemon: Daemon) -> None:
    for context in (10_000, 150_000, 185_000, 20_000, 160_000):
        status_line(api, context)

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], list[int]]:
        async with in_memory(daemon) as mcp:
            meta = claiming(SID)
            pages, after = [], 0
            while True:
                page = ok(await mcp.call_tool("session_events", {"after": after, "limit": 2},
                                              meta=meta))  # fmt: skip
                pages.append(page)
                after = page["next_after"]
                if not page["more"]:
                    break
            newest = ok(await mcp.call_tool("session_events", {"limit": 2}, meta=meta))
            tail = ok(await mcp.call_tool("session_events", {"after": after}, meta=meta))
            return pages, newest, [e["seq"] for e in tail["events"]]

    pages, newest, tail = run(api, scenario)
    paged = [e for page in pages for e in page["events"]]
    every = session(api)["events"]
    assert [e["seq"] for e in paged] == [e["seq"] for e in every]
    assert paged == [{k: e[k] for k in ("seq", "at", "kind", "data")} for e in every]
    assert all(len(p["events"]) <= 2 for p in pages)
    assert sum(e["kind"] == "threshold_crossed" for e in paged) == 3
    assert newest["events"] == paged[-2:]
    assert newest["next_after"] == paged[-1]["seq"]
    assert tail == []


def test_usage_summary_combines_the_live_sessions_per_project(
    api: TestClient, daemon: Daemon
) -> None:
    status_line(api, 100_000)
    status_line(api, 50_000, sid=SID2)
    body = {"session_id": SID3, "cwd": "/home/u/other", "model": {"id": "claude-opus-4-6"},
            "context_window": {"context_window_size": 200_000, "current_usage": {
                "input_tokens": 5, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 29_995, "output_tokens": 1}}}  # fmt: skip
    assert api.post("/api/statusline", json=body).status_code == 200

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("usage_summary", {}, meta=claiming(SID)))

    usage = run(api, scenario)
    stats = api.get(f"/api/stats?user={daemon.user}").json()
    assert usage["sessions"] == stats["sessions"]["live"] == 3
    assert usage["context_tokens"] == stats["context"]["total_tokens"] == 180_000
    assert usage["average_context_percent"] == stats["context"]["average_percent"]
    assert usage["max_context_percent"] == stats["context"]["max_percent"] == 50.0
    assert usage["tokens"] == stats["tokens"]
    assert [(p["project"], p["sessions"], p["context_tokens"]) for p in usage["projects"]] == [
        ("proj", 2, 150_000), ("other", 1, 30_000),
    ]  # fmt: skip
    assert usage["cost_usd"] is None


# -- record_checkpoint -------------------------------------------------------------------------


def test_record_checkpoint_counts_once_and_the_next_response_measures_it(
    api: TestClient, daemon: Daemon
) -> None:
    status_line(api, 150_000)
    announce(api, "toolu_ckpt")

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("record_checkpoint", {"note": "handover written"},
                                          meta=use("toolu_ckpt")))  # fmt: skip

    record = run(api, scenario)
    assert (record["session_id"], record["resolved_by"]) == (SID, "tool_use_id")
    assert (record["counted"], record["checkpoints"]) == (True, 1)
    assert (record["checkpoint_tokens_saved"], record["note_stored"]) == (None, False)
    view = session(api)
    assert (view["checkpoints"], view["checkpoint_pending_pre_tokens"]) == (1, 150_000)
    checkpoint = [e for e in view["events"] if e["kind"] == "checkpoint"]
    assert [(e["data"]["source"], e["data"]["trigger"]) for e in checkpoint] == [
        ("mcp", "explicit")
    ]
    assert "handover written" not in api.get(f"/api/sessions/{SID}").text
    status_line(api, 20_000)  # the next figure after the checkpoint measures it
    view = session(api)
    assert (view["checkpoints"], view["tokens_saved"]) == (1, 130_000)


def test_record_checkpoint_with_tokens_saved_takes_them_at_once(
    api: TestClient, daemon: Daemon
) -> None:
    status_line(api, 150_000)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with in_memory(daemon) as mcp:
            meta = claiming(SID)
            record = ok(await mcp.call_tool("record_checkpoint", {"tokens_saved": 100_000},
                                            meta=meta))  # fmt: skip
            status = ok(await mcp.call_tool("context_status", {}, meta=meta))
            return record, status

    record, status = run(api, scenario)
    assert (record["counted"], record["checkpoint_tokens_saved"], record["tokens_saved"]) == (
        True, 100_000, 100_000,
    )  # fmt: skip
    assert (status["checkpoints"], status["tokens_saved"], status["context_tokens"]) == (
        1, 100_000, 50_000,
    )  # fmt: skip


def test_a_checkpoint_recorded_right_after_a_compaction_is_not_counted_twice(
    api: TestClient, daemon: Daemon
) -> None:
    """The engine merges checkpoints of different sources within five minutes: an explicit one
    just after a ``PostCompact`` describes the same compaction, and the output says so."""
    status_line(api, 150_000)
    hook(api, "PostCompact", trigger="manual")

    async def scenario() -> dict[str, Any]:
        async with in_memory(daemon) as mcp:
            return ok(await mcp.call_tool("record_checkpoint", {}, meta=claiming(SID)))

    record = run(api, scenario)
    assert (record["counted"], record["checkpoints"]) == (False, 1)
    assert session(api)["checkpoints"] == 1


# -- resources and prompt ----------------------------------------------------------------------


def test_resources_show_sessions_and_the_prompt_points_at_context_status(
    api: TestClient, daemon: Daemon
) -> None:
    status_line(api, 80_000)

    async def scenario() -> tuple[str, str, str, str]:
        async with in_memory(daemon) as mcp:
            meta = claiming(SID)
            listed = await mcp.read_resource("contextd://sessions", meta=meta)
            one = await mcp.read_resource(f"contextd://sessions/{SID}", meta=meta)
            with pytest.raises(MCPError) as missing:
                await mcp.read_resource(f"contextd://sessions/{SID3}", meta=meta)
            prompt = await mcp.get_prompt("checkpoint_check")
            content = prompt.messages[0].content
            assert isinstance(content, TextContent)
            first, second = listed.contents[0], one.contents[0]
            assert isinstance(first, TextResourceContents)
            assert isinstance(second, TextResourceContents)
            return first.text, second.text, str(missing.value), content.text

    listed, one, missing, prompt = run(api, scenario)
    sessions = orjson.loads(listed)["sessions"]
    assert [(s["session_id"], s["is_me"]) for s in sessions] == [(SID, True)]
    view = session(api)
    del view["events"]
    assert view.pop("is_me") is True  # the JSON API's own flag (the daemon's user)
    assert orjson.loads(one) == view
    assert SID3 in missing
    assert "context_status" in prompt
