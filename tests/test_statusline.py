"""``contextd statusline`` and ``contextd hook``: the line, the forwarding, and never being in
Claude Code's way (hook: silent, exit 0; both: the same output with the daemon down)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contextd.identity import install_secret, user_id
from contextd.statusline import (
    GREEN,
    RED,
    YELLOW,
    UsageError,
    http_request,
    lean_settings,
    run_statusline,
    status_text,
)
from tests.commands import SCRIPT, command_env, run, wait_for_session
from tests.served import Served

SID = "5e551011-0000-4000-8000-00000000aaaa"
KEY = "sk-ant-api03-statusline-test-key-0123456789"


def payload(used: int | None = 150_000, window: int = 200_000, **extra: Any) -> dict[str, Any]:
    usage = None if used is None else {"input_tokens": 3, "output_tokens": 40,
                                       "cache_creation_input_tokens": 1000,
                                       "cache_read_input_tokens": used - 1003}  # fmt: skip
    return {"session_id": SID, "cwd": "/home/u/proj",
            "model": {"id": "claude-opus-4-6", "display_name": "Opus 4.6"},
            "context_window": {"context_window_size": window, "current_usage": usage},
            "cost": {"total_cost_usd": 1.2345}, **extra}  # fmt: skip


def test_the_line_shows_model_context_percent_and_cost() -> None:
    line = status_text(payload(), color=False)
    assert line == "Opus 4.6 │ ctx 150.0k/200.0k 75% │ $1.23"


@pytest.mark.parametrize(
    ("used", "colour"), [(100_000, GREEN), (140_000, YELLOW), (185_000, RED)]
)  # fmt: skip
def test_the_percent_is_coloured_by_threshold(used: int, colour: str) -> None:
    assert f"{colour}{round(100 * used / 200_000)}%" in status_text(payload(used))


def test_claude_codes_own_percentage_wins_and_thresholds_are_settings() -> None:
    data = payload(used=100_000)
    data["context_window"]["used_percentage"] = 51
    assert f"{RED}51%" in status_text(data, warn=30, critical=50)


def test_before_the_first_response_the_context_is_a_dash() -> None:
    assert "ctx -/1M" in status_text(payload(used=None, window=1_000_000), color=False)
    assert status_text({"session_id": SID}, color=False) == "? │ ctx -/?"


def test_the_five_hour_block_comes_from_claude_code_else_a_fresh_daemon_file(
    tmp_path: Path,
) -> None:
    usage = tmp_path / "usage-block.json"
    limits: dict[str, Any] = {"rate_limits": {"five_hour": {"used_percentage": 42.4}}}
    assert status_text(payload(**limits), color=False, usage_file=usage).endswith(" │ 5h 42%")
    assert "5h" not in status_text(payload(), color=False, usage_file=usage)  # no file
    usage.write_text(json.dumps({"updated_at": 1000.0, "five_hour": {"cost_usd": 3.2}}))
    assert status_text(payload(), color=False, usage_file=usage, now=1100.0).endswith("5h $3.20")
    assert "5h" not in status_text(payload(), color=False, usage_file=usage, now=9000.0)  # stale
    usage.write_text(json.dumps({"updated_at": 1000.0, "five_hour": {"used_percentage": 7}}))
    assert status_text(payload(), color=False, usage_file=usage, now=1000.0).endswith("5h 7%")
    usage.write_text("{torn")
    assert "5h" not in status_text(payload(), color=False, usage_file=usage, now=1000.0)


def test_settings_come_from_the_file_then_the_environment_then_options(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = 7001\nsocket = "/from/file.sock"\nwarn_percent = 60\n')
    env = {"CONTEXTD_PORT": "7002", "XDG_STATE_HOME": str(tmp_path / "st")}
    got = lean_settings(["--config", str(config), "--socket=/from/option.sock"], env)
    assert (got["port"], str(got["socket"]), got["warn"]) == (7002, "/from/option.sock", 60.0)
    assert got["db"] == str(tmp_path / "st" / "contextd" / "contextd.db")
    with pytest.raises(UsageError, match="unknown option"):
        lean_settings(["--verbose"], {})
    with pytest.raises(UsageError, match="needs a value"):
        lean_settings(["--db"], {})
    with pytest.raises(UsageError, match="bad setting"):
        lean_settings([], {"CONTEXTD_PORT": "many"})
    with pytest.raises(UsageError, match="config file"):
        lean_settings(["--config", str(tmp_path / "missing.toml")], {})


@pytest.mark.parametrize(
    ("stdin", "argv"), [(b"not json", []), (b"[1]", []), (b"{}", ["--nope"])]
)  # fmt: skip
def test_bad_input_is_exit_2_with_one_line(stdin: bytes, argv: list[str]) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    assert run_statusline(argv, {}, io.BytesIO(stdin), out, err) == 2
    assert out.getvalue() == b""
    assert err.getvalue().count(b"\n") == 1


def test_http_request_refuses_an_answer_that_is_not_http(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415
    import threading  # noqa: PLC0415

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(1000)
        conn.sendall(b"garbage\r\n")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    with pytest.raises(OSError, match="not an HTTP answer"):
        http_request(("127.0.0.1", server.getsockname()[1]), "GET", "/healthz")
    thread.join()
    server.close()


# -- the real commands, as Claude Code runs them -------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path / "daemon")
    s.start()
    yield s
    s.stop()


@pytest.mark.slow
def test_the_status_line_is_forwarded_with_environment_and_hashed_user(
    served: Served, tmp_path: Path
) -> None:
    env = command_env(served, tmp_path, ANTHROPIC_API_KEY=KEY, NO_COLOR="1",
                      SSH_CONNECTION="10.0.0.1 5 10.0.0.2 22",
                      CLAUDE_CODE_ENTRYPOINT="cli")  # fmt: skip
    done = run("statusline", json.dumps(payload(window=1_000_000, used=300_000)).encode(), env)
    assert done.returncode == 0
    assert done.stdout == b"Opus 4.6 \xe2\x94\x82 ctx 300.0k/1M 30% \xe2\x94\x82 $1.23\n"
    view = wait_for_session(served, SID, lambda s: s["context_window"] == 1_000_000)
    assert (view["session_type"], view["entrypoint"], view["context_tokens"]) == (
        "ssh", "cli", 300_000)  # fmt: skip
    assert view["user"] == user_id(install_secret(served.db.parent), KEY)


@pytest.mark.slow
def test_with_the_daemon_down_the_line_is_the_same_and_the_hook_is_silent(
    served: Served, tmp_path: Path
) -> None:
    data = json.dumps(payload()).encode()
    up = run("statusline", data, command_env(served, tmp_path))
    down = run("statusline", data, command_env(None, tmp_path))
    assert (down.returncode, down.stdout, down.stderr) == (0, up.stdout, b"")
    hook = json.dumps({"session_id": SID, "hook_event_name": "Stop"}).encode()
    for stdin, args in ((hook, ()), (b"garbage", ()), (hook, ("--bogus",))):
        done = run("hook", stdin, command_env(None, tmp_path), *args)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.slow
def test_a_command_hook_is_forwarded_and_prints_nothing(served: Served, tmp_path: Path) -> None:
    env = command_env(served, tmp_path, TMUX="/tmp/tmux-0/default,1,0",
                      CLAUDE_CODE_ENTRYPOINT="sdk-cli")  # fmt: skip
    body = {"session_id": SID, "hook_event_name": "SessionStart", "source": "startup",
            "cwd": "/home/u/proj", "transcript_path": "/nowhere/x.jsonl"}  # fmt: skip
    done = run("hook", json.dumps(body).encode(), env)
    assert (done.returncode, done.stdout) == (0, b"")
    view = wait_for_session(served, SID, lambda s: True)
    assert (view["session_type"], view["project"]) == ("noninteractive", "proj")
    status, _ = served.get("/healthz")
    assert status == 200
    table = subprocess.run([str(SCRIPT), "sessions", "--socket", str(served.socket),
                            "--db", str(served.db), "--config-dir", str(served.root)],
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[3] == "TYPE"
    assert row.split()[3] == "noninteractive"


@pytest.mark.slow
def test_the_tcp_port_is_used_when_the_socket_is_elsewhere(served: Served, tmp_path: Path) -> None:
    env = command_env(served, tmp_path, CONTEXTD_SOCKET=str(tmp_path / "no.sock"))
    assert run("hook", json.dumps({"session_id": SID, "hook_event_name": "Stop"}).encode(),
               env).returncode == 0  # fmt: skip
    wait_for_session(served, SID, lambda s: True)


@pytest.mark.slow
def test_what_the_session_said_is_not_forwarded_so_a_huge_tool_input_still_arrives(
    served: Served, tmp_path: Path
) -> None:
    body = {"session_id": SID, "hook_event_name": "PreToolUse", "tool_name": "Write",
            "tool_use_id": "toolu_big_1", "tool_input": {"content": "x" * (2 << 20)},
            "cwd": "/home/u/proj"}  # fmt: skip
    assert served.post("/hooks", body)[0] == 413  # as it is, over the daemon's body cap
    assert run("hook", json.dumps(body).encode(), command_env(served, tmp_path)).returncode == 0
    wait_for_session(served, SID, lambda s: s["project"] == "proj")
    assert served.get("/api/stats")[1]["ingest"]["hook_events_PreToolUse"] == 1  # type: ignore[index]


def test_options_may_come_before_the_command(tmp_path: Path) -> None:
    env = command_env(None, tmp_path)
    done = subprocess.run([sys.executable, "-m", "contextd", "--db", str(tmp_path / "x.db"),
                           "statusline"], input=json.dumps(payload()).encode(), env=env,
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    assert b"ctx 150.0k/200.0k" in done.stdout
