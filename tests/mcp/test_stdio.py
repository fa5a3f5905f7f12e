"""``contextd mcp``, the stdio server Claude Code spawns, through the official MCP client.

Each test runs ``python -m contextd mcp`` as a child process the way Claude Code does (its
parent, here the test process, plays ``claude``): with a ``contextd serve`` answering on the
unix socket the tools come from the daemon; without one, read-only from the transcripts. The
caller is resolved through ``<config>/sessions/<ppid>.json``, which wins over a stale
``CLAUDE_CODE_SESSION_ID`` (the ``/clear`` case, reference §9).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from contextd.mcp.local import SOURCE as READ_ONLY
from tests.mcp.harness import TOOLS, failed, ok, text, use, write_response
from tests.served import Served
from tests.test_server import SID, SID2

REPO = Path(__file__).resolve().parents[2]
USAGE = {"input_tokens": 3, "cache_creation_input_tokens": 1000,
         "cache_read_input_tokens": 119_000, "output_tokens": 50}  # fmt: skip
STALE_USAGE = {"input_tokens": 5, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 10_000, "output_tokens": 7}  # fmt: skip
EXIT_BOUND = 3.0  # seconds from closing stdin (or a signal) to the process's exit
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                         "clientInfo": {"name": "raw-test", "version": "1"}}}  # fmt: skip


class Place:
    """A temporary HOME, Claude config root and contextd state for one MCP server."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "claude"
        (self.root / "projects").mkdir(parents=True, exist_ok=True)
        self.db = tmp / "state" / "contextd.db"
        self.socket = tmp / "run" / "contextd.sock"

    def sessions_file(self, sid: str, pid: int | None = None) -> None:
        """What Claude Code keeps for a running ``claude``: the session it runs now."""
        pid = os.getpid() if pid is None else pid  # the MCP server's parent is this process
        (self.root / "sessions").mkdir(exist_ok=True)
        payload = {"pid": pid, "sessionId": sid, "cwd": "/home/u/proj"}
        (self.root / "sessions" / f"{pid}.json").write_text(json.dumps(payload))

    def argv(self) -> list[str]:
        return ["-m", "contextd", "mcp", "--config-dir", str(self.root), "--db", str(self.db),
                "--socket", str(self.socket)]  # fmt: skip

    def env(self, stale_sid: str | None = SID2) -> dict[str, str]:
        home = self.tmp / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "CLAUDE"))}
        env |= {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(self.root),
                "XDG_RUNTIME_DIR": str(self.tmp / "xdg")}  # fmt: skip
        if stale_sid is not None:
            env["CLAUDE_CODE_SESSION_ID"] = stale_sid  # the id at spawn time, before a /clear
        return env


@asynccontextmanager
async def stdio(place: Place, stale_sid: str | None = SID2) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=place.argv(),
                                   env=place.env(stale_sid), cwd=REPO)  # fmt: skip
    async with Client(stdio_client(params)) as client:
        yield client.session


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path)


@pytest.fixture
def served(place: Place) -> Iterator[Served]:
    daemon = Served(place.tmp)  # the same root, database and socket as ``place``
    assert (daemon.root, daemon.db, daemon.socket) == (place.root, place.db, place.socket)
    yield daemon
    if daemon.proc is not None:
        daemon.stop()


def two_sessions(place: Place) -> None:
    """The session ``claude`` runs now (SID) and the one it ran before ``/clear`` (SID2)."""
    write_response(place.root, SID2, STALE_USAGE, "msg_stale")
    write_response(place.root, SID, USAGE, "msg_now")
    place.sessions_file(SID)


# -- with a daemon -----------------------------------------------------------------------------


def test_tools_are_served_from_the_daemon_for_the_session_the_parent_runs_now(
    place: Place, served: Served
) -> None:
    two_sessions(place)
    served.start()
    code, daemon_view = served.get(f"/api/sessions/{SID}")  # before the checkpoint below
    assert code == 200

    async def scenario() -> tuple[set[str], dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with stdio(place) as mcp:
            names = {t.name for t in (await mcp.list_tools()).tools}
            status = ok(await mcp.call_tool("context_status", {}))
            listed = ok(await mcp.call_tool("list_sessions", {}))
            saved = ok(await mcp.call_tool("record_checkpoint", {"tokens_saved": 90_000}))
            return names, status, listed, saved

    names, status, listed, saved = asyncio.run(scenario())
    assert names == TOOLS
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID, "sessions_file")
    assert status["source"] == "daemon"
    for field in ("context_tokens", "context_window", "context_percent", "threshold_state",
                  "project", "model"):  # fmt: skip
        assert status[field] == daemon_view[field], field
    assert status["context_tokens"] == 120_003
    assert status["checkpoints"] == 0
    assert {s["session_id"]: s["is_me"] for s in listed["sessions"]} == {SID: True, SID2: False}
    assert saved["counted"]
    assert (saved["session_id"], saved["checkpoints"]) == (SID, 1)
    assert saved["checkpoint_tokens_saved"] == 90_000
    code, after = served.get(f"/api/sessions/{SID}")
    assert (after["checkpoints"], after["tokens_saved"]) == (1, 90_000)
    events = after["events"]
    assert isinstance(events, list)
    assert "checkpoint" in [e["kind"] for e in events]


def test_without_the_sessions_file_the_spawn_time_env_id_is_used(
    place: Place, served: Served
) -> None:
    write_response(place.root, SID2, STALE_USAGE, "msg_stale")
    served.start()

    async def scenario() -> dict[str, Any]:
        async with stdio(place) as mcp:
            return ok(await mcp.call_tool("context_status", {}))

    status = asyncio.run(scenario())
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID2, "env")
    assert status["context_tokens"] == 10_005


def pre_tool_use(served: Served, sid: str, tool_use_id: str) -> None:
    """Claude Code's PreToolUse hook for an MCP call, just before the call."""
    body = {"session_id": sid, "hook_event_name": "PreToolUse", "cwd": "/home/u/proj",
            "tool_name": "mcp__contextd__context_status", "tool_use_id": tool_use_id,
            "tool_input": {}}  # fmt: skip
    assert served.post("/hooks", body)[0] == 200


def test_a_tool_use_id_is_joined_through_the_daemons_pre_tool_use_index(
    place: Place, served: Served
) -> None:
    """The toolUseId comes before the parent process: the hook named SID2 for this call,
    although the parent's sessions file names SID. An unknown or expired id gives way."""
    two_sessions(place)
    served.start()
    pre_tool_use(served, SID2, "toolu_stdio_1")
    assert served.get("/api/tool-uses/toolu_stdio_1") == (
        200, {"tool_use_id": "toolu_stdio_1", "session_id": SID2})  # fmt: skip
    code, error = served.get("/api/tool-uses/toolu_never")
    assert (code, error["field"]) == (404, "tool_use_id")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with stdio(place) as mcp:
            joined = ok(await mcp.call_tool("context_status", {}, meta=use("toolu_stdio_1")))
            unknown = ok(await mcp.call_tool("context_status", {}, meta=use("toolu_never")))
            return joined, unknown

    joined, unknown = asyncio.run(scenario())
    assert (joined["resolved_session_id"], joined["resolved_by"]) == (SID2, "tool_use_id")
    assert joined["context_tokens"] == 10_005
    assert (unknown["resolved_session_id"], unknown["resolved_by"]) == (SID, "sessions_file")


def test_the_server_follows_the_daemon_as_it_starts_and_stops(place: Place, served: Served) -> None:
    """Started before the daemon: read-only from the transcripts; once the daemon answers
    (probed every 2 s), from it, and a checkpoint is recorded; once it stops, read-only
    again, without a restart of the MCP server."""
    two_sessions(place)

    async def until(mcp: ClientSession, source: str) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            status = ok(await mcp.call_tool("context_status", {}))
            if status["source"] == source or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)

    async def scenario() -> list[dict[str, Any]]:
        async with stdio(place) as mcp:
            before = ok(await mcp.call_tool("context_status", {}))
            await asyncio.to_thread(served.start)
            during = await until(mcp, "daemon")
            saved = ok(await mcp.call_tool("record_checkpoint", {"tokens_saved": 1_000}))
            await asyncio.to_thread(served.stop)
            after = ok(await mcp.call_tool("context_status", {}))
            refused = failed(await mcp.call_tool("record_checkpoint", {"tokens_saved": 5}))
            return [before, during, saved, after, {"refused": refused}]

    before, during, saved, after, refused = asyncio.run(scenario())
    assert [r["source"] for r in (before, during, saved, after)] == [
        READ_ONLY, "daemon", "daemon", READ_ONLY]  # fmt: skip
    assert before["context_tokens"] == during["context_tokens"] == 120_003
    assert (saved["session_id"], saved["checkpoints"], saved["counted"]) == (SID, 1, True)
    assert after["resolved_session_id"] == SID
    assert "no contextd daemon is running" in refused["refused"]


def test_the_checkpoint_endpoint_validates_strictly(place: Place, served: Served) -> None:
    write_response(place.root, SID, USAGE, "msg_now")
    served.start()
    bad: list[tuple[object, int, str]] = [
        ({"session_id": "a b"}, 422, "session_id"),
        ({"session_id": SID, "pre_tokens": "5"}, 422, "pre_tokens"),
        ({"session_id": SID, "post_tokens": -1}, 422, "post_tokens"),
        ({"session_id": SID, "trigger": "auto"}, 422, "trigger"),
        ({"session_id": SID, "note": "x"}, 422, "note"),
        ([SID], 422, "body"),
        ({"session_id": "nobody-knows-this-one"}, 404, "session_id"),
    ]
    for body, status, field in bad:
        code, answer = served.post("/api/checkpoint", body)
        assert (code, answer.get("field")) == (status, field), (body, answer)
    assert served.get(f"/api/sessions/{SID}")[1]["checkpoints"] == 0
    code, answer = served.post("/api/checkpoint", {"session_id": SID, "pre_tokens": 120_003,
                                                    "post_tokens": 20_003})  # fmt: skip
    assert code == 200
    assert (answer["checkpoints"], answer["tokens_saved"]) == (1, 100_000)


# -- without a daemon --------------------------------------------------------------------------


def test_without_a_daemon_the_tools_answer_read_only_from_the_transcripts(place: Place) -> None:
    two_sessions(place)

    async def scenario() -> tuple[dict[str, Any], ...]:
        async with stdio(place) as mcp:
            status = await mcp.call_tool("context_status", {})
            stats = ok(await mcp.call_tool("session_stats", {}))
            events = ok(await mcp.call_tool("session_events", {}))
            usage = ok(await mcp.call_tool("usage_summary", {}))
            listed = ok(await mcp.call_tool("list_sessions", {}))
            refused = failed(await mcp.call_tool("record_checkpoint", {"tokens_saved": 5}))
            return (
                ok(status),
                {"text": text(status)},
                stats,
                events,
                usage,
                listed,
                {"refused": refused},
            )

    status, status_text, stats, events, usage, listed, refused = asyncio.run(scenario())
    for result in (status, stats, events, usage, listed):
        assert result["source"] == READ_ONLY
    assert READ_ONLY in status_text["text"]
    assert (status["resolved_session_id"], status["resolved_by"]) == (SID, "sessions_file")
    assert (status["context_tokens"], status["context_window"]) == (120_003, 200_000)
    assert status["context_percent"] == 60.0
    assert status["recommendation"] == "ok"
    assert stats["tokens"]["output"] == 50
    assert stats["responses"] == 1
    assert [e["kind"] for e in events["events"]][-1] == "response"
    assert usage["sessions"] == 2
    assert usage["context_tokens"] == 120_003 + 10_005
    assert {s["session_id"]: s["is_me"] for s in listed["sessions"]} == {SID: True, SID2: False}
    assert "no contextd daemon is running" in refused["refused"]
    assert not place.db.exists()  # the user's database was never opened
    assert not (place.db.parent / "contextd.db.lock").exists()


def test_without_a_daemon_new_transcript_lines_are_read_on_a_later_call(place: Place) -> None:
    write_response(place.root, SID, USAGE, "msg_1")
    place.sessions_file(SID)
    bigger = {**USAGE, "cache_read_input_tokens": 150_000}

    async def scenario() -> tuple[int, int]:
        async with stdio(place) as mcp:
            first = ok(await mcp.call_tool("context_status", {}))["context_tokens"]
            write_response(place.root, SID, bigger, "msg_2")
            deadline = time.monotonic() + 10
            while True:
                later = ok(await mcp.call_tool("context_status", {}))["context_tokens"]
                if later != first or time.monotonic() > deadline:
                    return first, later
                await asyncio.sleep(0.2)

    assert asyncio.run(scenario()) == (120_003, 151_003)


# -- the wire ----------------------------------------------------------------------------------


def _raw_run(
    place: Place, messages: list[dict[str, Any]], answers: int
) -> tuple[list[bytes], float, int]:
    """Write ``messages``, wait for ``answers`` lines, close stdin; (stdout lines, seconds from
    closing stdin to exit, exit code)."""
    proc = subprocess.Popen([sys.executable, *place.argv()], cwd=REPO, env=place.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        proc.stdin.flush()
        lines = [proc.stdout.readline() for _ in range(answers)]
        closed = time.monotonic()
        proc.stdin.close()
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - closed
        lines += proc.stdout.read().splitlines(keepends=True)
        return lines, elapsed, code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.parametrize("with_daemon", [False, True])
def test_stdout_carries_only_json_rpc_and_the_server_exits_when_stdin_closes(
    place: Place, served: Served, with_daemon: bool
) -> None:
    two_sessions(place)
    if with_daemon:
        served.start()
    messages: list[dict[str, Any]] = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "context_status", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "record_checkpoint", "arguments": {}}},
    ]  # fmt: skip
    lines, elapsed, code = _raw_run(place, messages, answers=4)
    assert code == 0
    assert elapsed < EXIT_BOUND
    decoded = [json.loads(line) for line in lines if line.strip()]
    assert len(decoded) == len(lines) == 4
    assert all(m["jsonrpc"] == "2.0" for m in decoded)
    by_id = {m["id"]: m for m in decoded}
    assert set(by_id) == {1, 2, 3, 4}
    assert {t["name"] for t in by_id[2]["result"]["tools"]} == TOOLS
    status = by_id[3]["result"]["structuredContent"]
    assert (status["session_id"], status["context_tokens"]) == (SID, 120_003)
    assert status["source"] == ("daemon" if with_daemon else READ_ONLY)
    assert by_id[4]["result"]["isError"] is not with_daemon


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_server_exits_promptly_on_sigint_and_sigterm(place: Place, sig: int) -> None:
    proc = subprocess.Popen([sys.executable, *place.argv()], cwd=REPO, env=place.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1  # serving, stdin still open
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < EXIT_BOUND
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("with_daemon", [False, True])
def test_bad_input_gets_an_mcp_error_and_the_server_keeps_serving(
    place: Place, served: Served, with_daemon: bool
) -> None:
    two_sessions(place)
    if with_daemon:
        served.start()
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        ("session_events", {"limit": "3"}, "limit"),
        ("session_events", {"after": -1}, "after"),
        ("list_sessions", {"user": 7}, "user"),
        ("session_stats", {"session_id": "a b/../c"}, "session_id"),
        ("session_stats", {"session_id": "e0d1c2b3-0000-4000-8000-00000000dead"}, "unknown"),
        ("record_checkpoint", {"tokens_saved": "lots"},
         "tokens_saved" if with_daemon else "no contextd daemon is running"),
    ]  # fmt: skip

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        async with stdio(place) as mcp:
            errors = [failed(await mcp.call_tool(name, args)) for name, args, _ in bad]
            return errors, ok(await mcp.call_tool("context_status", {}))

    errors, status = asyncio.run(scenario())
    for (name, _, expected), error in zip(bad, errors, strict=True):
        assert expected in error, (name, error)
    assert status["context_tokens"] == 120_003
