"""The MCP Inspector CLI (pinned, installed by ``scripts/bootstrap`` under ``.tools/inspector``)
calling contextd's tools: on the stdio server Claude Code runs (``contextd mcp``, a client of a
temporary daemon) and on the daemon's streamable HTTP ``/mcp``.

Without the pinned Inspector (or without node) the tests skip, except under ``CI=true``, where
that is a failure: CI runs ``scripts/bootstrap`` first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.mcp.harness import TOOLS
from tests.pinned import TOOLS as PINNED_TOOLS
from tests.pinned import require_version, unavailable
from tests.served import Served
from tests.test_server import SID, SID2

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PREFIX = PINNED_TOOLS / "inspector"
# The version scripts/bootstrap installs (keep the two in step).
INSPECTOR_VERSION = "2.12.0"
TIMEOUT = 30.0
RETRIES = 3  # see _raced


def inspector() -> list[str]:
    """The command line that starts the pinned Inspector's CLI mode."""
    npx = shutil.which("npx")
    if npx is None:
        unavailable("npx (node) is not on PATH")
    require_version(PREFIX, "@modelcontextprotocol/inspector", INSPECTOR_VERSION)
    # --no-install: the pinned local copy or nothing, never a download.
    return [npx, "--prefix", str(PREFIX), "--no-install", "mcp-inspector", "--cli"]


@cache
def contextd_subcommands() -> frozenset[str]:
    """The subcommands ``python -m contextd --help`` lists."""
    done = subprocess.run([sys.executable, "-m", "contextd", "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT, check=True)  # fmt: skip
    found = re.search(r"\{([a-z,-]+)\}", done.stdout)
    assert found is not None, done.stdout
    return frozenset(found.group(1).split(","))


def _raced(done: subprocess.CompletedProcess[str]) -> bool:
    """The Inspector CLI 2.12.0 (HTTP, legacy era) now and then reports the tool list right
    after the handshake without ever sending ``tools/list`` (seen on the wire: initialize,
    initialized, the GET stream, then nothing): an empty list, or ``tool_not_found`` for a
    call. contextd always has tools, so those two answers can only be that race."""
    return '"code":"tool_not_found"' in done.stderr or done.stdout.strip() == (
        '{"result":{"tools":[]}}'
    )


def call(argv: list[str], home: Path, *, tool_error: bool = False) -> dict[str, Any]:
    """Run the Inspector CLI with JSON output; its ``result`` (``tool_error``: the call is
    expected to end in a tool error, which the CLI reports with exit status 5)."""
    # A scratch HOME: the Inspector keeps its catalog and client config under ~/.mcp-inspector.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTD_")}
    env["HOME"] = str(home)
    for _ in range(RETRIES):
        done = subprocess.run([*inspector(), *argv, "--format", "json"], capture_output=True,
                              text=True, timeout=TIMEOUT, env=env, cwd=ROOT,
                              check=False)  # fmt: skip
        if not _raced(done):
            break
    assert done.returncode == (5 if tool_error else 0), (done.returncode, done.stdout, done.stderr)
    output = json.loads(done.stdout)
    assert "error" not in output, output
    result: dict[str, Any] = output["result"]
    return result


def status_line(served: Served, sid: str, context: int) -> None:
    usage = {"input_tokens": 3, "cache_creation_input_tokens": 1000,
             "cache_read_input_tokens": context - 1003, "output_tokens": 50}  # fmt: skip
    body = {"session_id": sid, "cwd": "/home/u/proj", "model": {"id": "claude-opus-4-6"},
            "context_window": {"context_window_size": 200_000, "current_usage": usage}}  # fmt: skip
    assert served.post("/api/statusline", body)[0] == 200


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    inspector()  # skip (or fail under CI) before starting anything
    s = Served(tmp_path_factory.mktemp("insp"))
    s.start()
    try:
        status_line(s, SID, 150_000)
        status_line(s, SID2, 40_000)
        yield s
    finally:
        if s.proc is not None and s.proc.poll() is None:
            s.stop()
        else:
            s.stop(signal.SIGKILL)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def check_status(
    result: dict[str, Any], sid: str, tokens: int, caller: str | None = None
) -> dict[str, Any]:
    """``result`` is ``sid``'s context_status, asked by ``caller`` (default: ``sid`` itself)."""
    assert result["isError"] is False, result
    status: dict[str, Any] = result["structuredContent"]
    assert status["resolved_session_id"] == (caller or sid)
    assert (status["session_id"], status["context_tokens"]) == (sid, tokens)
    assert status["context_window"] == 200_000
    assert status["context_percent"] == round(100 * tokens / 200_000, 1)
    # The text block carries the same object, for clients without structured content.
    assert json.loads(result["content"][0]["text"]) == status
    return status


def test_inspector_calls_context_status_on_the_stdio_server(served: Served, home: Path) -> None:
    """``contextd mcp`` as Claude Code spawns it: a child with CLAUDE_CODE_SESSION_ID set,
    pointed at the temporary daemon's socket and state."""
    if "mcp" not in contextd_subcommands():
        pytest.skip("`contextd mcp` is not a known subcommand yet (python -m contextd --help)")
    env = {"CONTEXTD_SOCKET": str(served.socket), "CONTEXTD_DB": str(served.db),
           "CONTEXTD_CONFIG_DIRS": str(served.root), "CLAUDE_CODE_SESSION_ID": SID2,
           "HOME": str(home)}  # fmt: skip
    target = [sys.executable, "-m", "contextd", "mcp"]
    options = [item for name, value in env.items() for item in ("-e", f"{name}={value}")]
    listed = call([*target, *options, "--method", "tools/list"], home)
    assert {tool["name"] for tool in listed["tools"]} == TOOLS
    result = call([*target, *options, "--method", "tools/call",
                   "--tool-name", "context_status"], home)  # fmt: skip
    status = check_status(result, SID2, 40_000)
    assert status["resolved_by"] in {"env", "sessions_file"}
    named = call([*target, *options, "--method", "tools/call", "--tool-name", "context_status",
                  "--tool-args-json", json.dumps({"session_id": SID})], home)  # fmt: skip
    check_status(named, SID, 150_000, caller=SID2)


def test_inspector_calls_context_status_over_streamable_http(served: Served, home: Path) -> None:
    url = f"http://127.0.0.1:{served.port}/mcp"
    listed = call([url, "--method", "tools/list"], home)
    assert {tool["name"] for tool in listed["tools"]} == TOOLS
    result = call([url, "--method", "tools/call", "--tool-name", "context_status",
                   "--header", f"X-Claude-Session-ID: {SID}"], home)  # fmt: skip
    status = check_status(result, SID, 150_000)
    assert status["resolved_by"] == "header"
    assert status["threshold_state"] == "warning"
    # An argument out of range: a tool error, and the next call is served.
    bad = call([url, "--method", "tools/call", "--tool-name", "session_events",
                "--tool-args-json", '{"limit": 0}', "--header",
                f"X-Claude-Session-ID: {SID}"], home, tool_error=True)  # fmt: skip
    assert bad["isError"] is True
    assert "limit" in bad["content"][0]["text"]
    again = call([url, "--method", "tools/call", "--tool-name", "context_status",
                  "--tool-args-json", json.dumps({"session_id": SID2}), "--header",
                  f"X-Claude-Session-ID: {SID}"], home)  # fmt: skip
    check_status(again, SID2, 40_000, caller=SID)
