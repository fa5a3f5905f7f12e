"""Caller resolution: which source wins, what is no candidate, the sessions file after /clear."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import anyio
import orjson
import pytest

from contextd.mcp import resolve
from contextd.mcp.resolve import Resolution, Source

SID = "c27ce211-f52d-4595-8c0d-a93f2d5bb251"
NEW = "e0d1c2b3-0000-4000-8000-000000000001"
OTHER = "d27ce211-f52d-4595-8c0d-a93f2d5bb252"


def caller(
    headers: Mapping[str, str] | None = None,
    meta: Mapping[str, object] | None = None,
    *,
    known: set[str] | None = None,
    tool_uses: Mapping[str, str] | None = None,
    process: Resolution | None = None,
    consulted: list[str] | None = None,
) -> Resolution:
    """Resolve with dictionaries standing in for the backend's lookups."""
    held = known if known is not None else {SID, NEW, OTHER}
    uses = tool_uses or {}
    log = consulted if consulted is not None else []

    async def is_known(sid: str) -> bool:
        return sid in held

    async def tool_use_session(tool_use_id: str) -> str | None:
        log.append("tool_use")
        return uses.get(tool_use_id)

    def parent() -> Resolution | None:
        log.append("process")
        return process

    async def main() -> Resolution:
        return await resolve.resolve(headers, meta, "peer:127.0.0.1:5000", known=is_known,
                                     tool_use_session=tool_use_session, process=parent)  # fmt: skip

    return anyio.run(main)


@pytest.mark.parametrize("name", ["X-Claude-Session-ID", "x-claude-code-session-id",
                                  "X-CLAUDE-CODE-SESSION-ID"])  # fmt: skip
def test_a_session_header_in_any_letter_case_names_the_caller(name: str) -> None:
    assert caller({name: SID}) == Resolution(SID, Source.HEADER)


def test_a_known_header_wins_and_later_sources_are_not_consulted() -> None:
    consulted: list[str] = []
    found = caller({"x-claude-session-id": SID}, {"claudecode/toolUseId": "toolu_1"},
                   tool_uses={"toolu_1": OTHER}, consulted=consulted)  # fmt: skip
    assert found == Resolution(SID, Source.HEADER)
    assert consulted == []


def test_meta_session_id_comes_after_headers() -> None:
    meta = {"claudecode/sessionId": OTHER}
    assert caller(None, meta) == Resolution(OTHER, Source.META_SESSION_ID)
    assert caller({"x-claude-session-id": SID}, meta) == Resolution(SID, Source.HEADER)


def test_a_tool_use_id_is_joined_through_the_pre_tool_use_index() -> None:
    meta = {"claudecode/toolUseId": "toolu_fake_a5a60e4ec9af4983b278"}
    found = caller(None, meta, tool_uses={"toolu_fake_a5a60e4ec9af4983b278": SID})
    assert found == Resolution(SID, Source.TOOL_USE_ID)


def test_an_unknown_claimed_session_gives_way_to_a_known_later_source() -> None:
    """A header holding a placeholder (``${CLAUDE_CODE_SESSION_ID:-unset}`` expands to
    ``unset``) names no session contextd knows; the tool use id does."""
    found = caller({"x-claude-session-id": "unset"}, {"claudecode/toolUseId": "toolu_1"},
                   tool_uses={"toolu_1": SID})  # fmt: skip
    assert found == Resolution(SID, Source.TOOL_USE_ID)


def test_when_no_candidate_is_known_the_first_claimed_one_is_kept() -> None:
    found = caller({"x-claude-session-id": "unset"}, {"claudecode/toolUseId": "toolu_1"},
                   tool_uses={"toolu_1": NEW}, known=set())  # fmt: skip
    assert found == Resolution("unset", Source.HEADER)


def test_the_parent_process_is_consulted_after_the_request_sources() -> None:
    consulted: list[str] = []
    found = caller(None, {"claudecode/toolUseId": "toolu_gone"},
                   process=Resolution(NEW, Source.SESSIONS_FILE), consulted=consulted)  # fmt: skip
    assert found == Resolution(NEW, Source.SESSIONS_FILE)
    assert consulted == ["tool_use", "process"]


@pytest.mark.parametrize("value", ["", "a b", "../etc/passwd", "x" * 129, "é"])
def test_a_value_that_cannot_be_a_session_id_is_no_candidate(value: str) -> None:
    found = caller({"x-claude-session-id": value}, {"claudecode/sessionId": value,
                                                    "claudecode/toolUseId": value})  # fmt: skip
    assert found.source is Source.CONNECTION


def test_non_string_meta_values_are_ignored() -> None:
    found = caller(None, {"claudecode/sessionId": 12, "claudecode/toolUseId": ["toolu_1"]})
    assert found.source is Source.CONNECTION


def test_the_connection_fallback_is_stable_per_peer_and_identifies_no_session() -> None:
    first, again = resolve.connection("peer:127.0.0.1:5000"), caller()
    assert first == again
    assert first.session_id.startswith("conn_")
    assert len(first.session_id) == len("conn_") + 12
    assert not first.identified
    assert resolve.connection("peer:127.0.0.1:5001") != first


# -- the parent process: ~/.claude/sessions/<pid>.json and CLAUDE_CODE_SESSION_ID ---------------


def write_sessions_file(directory: Path, pid: int, session_id: str, **extra: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    body = {"pid": pid, "sessionId": session_id, "cwd": "/home/u/proj", "version": "2.1.330",
            "startedAt": 1790000000000, **extra}  # fmt: skip
    (directory / f"{pid}.json").write_bytes(orjson.dumps(body))


def test_after_clear_the_sessions_file_wins_over_the_stale_environment(tmp_path: Path) -> None:
    sessions = tmp_path / "claude" / "sessions"
    env = {"CLAUDE_CODE_SESSION_ID": SID}  # what the stdio server was spawned with
    write_sessions_file(sessions, 4242, SID)
    assert resolve.process_session(4242, env, [sessions]) == Resolution(SID, Source.SESSIONS_FILE)
    write_sessions_file(sessions, 4242, NEW)  # /clear: Claude Code rewrites its file
    assert resolve.process_session(4242, env, [sessions]) == Resolution(NEW, Source.SESSIONS_FILE)


def test_without_a_sessions_file_the_environment_is_used(tmp_path: Path) -> None:
    env = {"CLAUDE_CODE_SESSION_ID": SID}
    assert resolve.process_session(4242, env, [tmp_path / "nowhere"]) == Resolution(SID, Source.ENV)
    assert resolve.process_session(4242, {}, [tmp_path / "nowhere"]) is None


def test_the_first_config_root_with_a_file_for_the_pid_answers(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "sessions", tmp_path / "b" / "sessions"
    write_sessions_file(second, 4242, NEW)
    write_sessions_file(second, 4343, OTHER)
    assert resolve.process_session(4242, {}, [first, second]) == Resolution(
        NEW, Source.SESSIONS_FILE
    )


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", orjson.dumps({"pid": 999, "sessionId": NEW}),
     orjson.dumps({"pid": 4242, "sessionId": "a b"}), orjson.dumps({"pid": 4242}),
     b'{"pid": 4242, "sessionId": "' + b"x" * 70_000 + b'"}'],
)  # fmt: skip
def test_a_sessions_file_that_is_broken_or_not_this_pids_is_ignored(
    tmp_path: Path, content: bytes
) -> None:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    (sessions / "4242.json").write_bytes(content)
    env = {"CLAUDE_CODE_SESSION_ID": SID}
    assert resolve.process_session(4242, env, [sessions]) == Resolution(SID, Source.ENV)


# -- a unix-socket peer, followed up its process tree -------------------------------------------


def fake_process(
    proc: Path, pid: int, ppid: int, *, comm: str = "node", env: dict[str, str] | None = None
) -> None:
    """``<proc>/<pid>/stat`` and ``environ`` as Linux writes them."""
    directory = proc / str(pid)
    directory.mkdir(parents=True)
    (directory / "stat").write_bytes(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1".encode())
    environ = b"".join(f"{k}={v}".encode() + b"\0" for k, v in (env or {}).items())
    (directory / "environ").write_bytes(environ)


def test_a_peer_resolves_to_the_nearest_ancestor_with_a_sessions_file(tmp_path: Path) -> None:
    """curl (4000) ← bash (3000) ← claude (2000) ← shell (1000): claude's file names the
    session, over the stale id its children inherited (they were started before /clear)."""
    proc, sessions = tmp_path / "proc", tmp_path / "claude" / "sessions"
    fake_process(proc, 1000, 1, comm="zsh")
    fake_process(proc, 2000, 1000, comm="claude", env={"CLAUDE_CODE_SESSION_ID": SID})
    fake_process(proc, 3000, 2000, comm="bash", env={"CLAUDE_CODE_SESSION_ID": SID})
    fake_process(proc, 4000, 3000, comm="curl) S 1 (x", env={"CLAUDE_CODE_SESSION_ID": SID})
    write_sessions_file(sessions, 2000, NEW)
    found = resolve.peer_session(4000, [sessions], proc=proc)
    assert found == Resolution(NEW, Source.PEER_PID)
    assert found.identified


def test_without_a_sessions_file_the_nearest_environment_names_the_session(
    tmp_path: Path,
) -> None:
    proc = tmp_path / "proc"
    fake_process(proc, 2000, 1, env={"CLAUDE_CODE_SESSION_ID": OTHER})
    fake_process(proc, 3000, 2000, env={"CLAUDE_CODE_SESSION_ID": SID, "PATH": "/bin"})
    fake_process(proc, 4000, 3000, env={"PATH": "/bin"})
    assert resolve.peer_session(4000, [tmp_path / "none"], proc=proc) == Resolution(
        SID, Source.PEER_PID
    )


def test_a_peer_outside_any_claude_process_names_nothing(tmp_path: Path) -> None:
    """No file, no variable; an unreadable environ (another user's process), a vanished
    parent, a malformed stat and a bad id in the variable are skipped."""
    proc = tmp_path / "proc"
    fake_process(proc, 2000, 1, env={"CLAUDE_CODE_SESSION_ID": "not a session id"})
    fake_process(proc, 3000, 2000)
    (proc / "3000" / "environ").unlink()
    fake_process(proc, 4000, 3000)
    fake_process(proc, 5000, 9999)  # its parent has gone
    (proc / "6000").mkdir()
    (proc / "6000" / "stat").write_bytes(b"6000 (x)")  # truncated
    for pid in (4000, 5000, 6000, 7000):
        assert resolve.peer_session(pid, [tmp_path / "none"], proc=proc) is None


def test_the_walk_up_the_process_tree_is_bounded(tmp_path: Path) -> None:
    proc, sessions = tmp_path / "proc", tmp_path / "sessions"
    for pid in range(100, 111):  # 110 ← 109 ← … ← 100, the file on 100
        fake_process(proc, pid, pid - 1 if pid > 100 else 1)
    write_sessions_file(sessions, 100, SID)
    assert resolve.peer_session(104, [sessions], proc=proc) == Resolution(SID, Source.PEER_PID)
    assert resolve.peer_session(110, [sessions], proc=proc, depth=8) is None
    assert resolve.peer_session(110, [sessions], proc=proc, depth=11) == Resolution(
        SID, Source.PEER_PID
    )
