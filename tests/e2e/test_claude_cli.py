"""End to end: the real Claude Code CLI (npm ``@anthropic-ai/claude-code``, pinned) against a
live contextd daemon, offline, with a scripted fake Anthropic API on loopback.

One session, run the way a user scripts it in ``-p`` mode (reference/claude-code-verified.md
§1, §9): ``--session-id`` for the first turn, ``--resume`` for the next ones.

1. ``[T1]``: the model (the fake API) calls contextd's ``context_status`` through the stdio MCP
   server Claude Code spawns (``contextd mcp``), then answers in text once it has the result
   (``--allowedTools mcp__contextd__context_status``: in ``-p`` mode an MCP tool not allowed
   beforehand is refused, "Claude requested permissions to use …, but you haven't granted it");
2. ``[T2]``: a plain turn;
3. ``/compact``: Claude Code asks the model for a summary and writes a ``compact_boundary``;
4. ``[T3]``: a turn after the compaction.

Every response carries distinct scripted usage, so the daemon's figures can be checked exactly:
the session id, its context tokens (the last main-chain response's input + cache creation +
cache read), one checkpoint with the tokens it saved (``preTokens - postTokens`` of the
boundary, DESIGN.md), token totals counted once per response; and the ``context_status`` result
Claude Code sent back to the model names that same session.

The CLI runs under an explicit environment (nothing of the caller's leaks in) with the
variables that keep it offline; the fake API is also its ``HTTPS_PROXY`` and refuses every
``CONNECT``, so any attempt to reach the internet is recorded and fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from contextd.identity import install_secret, user_id
from tests.e2e.fake_anthropic import FakeAnthropic, Reply, Request, Rule, Text, ToolUse, Usage
from tests.pinned import TOOLS, require_version, unavailable
from tests.served import Served
from tests.test_server import wait_for

pytestmark = pytest.mark.slow

# The version scripts/bootstrap installs (keep the two in step).
CLAUDE_CODE_VERSION = "2.1.330"
PREFIX = TOOLS / "claude-code"
CLI_TIMEOUT = 120.0  # seconds for one `claude -p` run (one takes about 2 s here)
# SessionStart: startup (T1) and resume (T2, /compact, T3) always reach the daemon; the
# compaction's own SessionStart("compact") fires as the `/compact` run exits, and Claude Code
# may end that run before the async command hook has started (seen in about half the runs).
SESSION_STARTS = 4
SESSION_STARTS_WITH_COMPACT = 5
INGEST_TIMEOUT = 20.0  # seconds for the daemon to ingest what the last run wrote

SESSION_ID = "e2e0c1a0-5e55-4a1d-8c0d-0000000000e2"
TOOL_USE_ID = "toolu_fake_e2e_context_status_01"
MCP_TOOL = "mcp__contextd__context_status"
FAKE_API_KEY = "sk-ant-api03-e2e-fake-key-not-a-secret-000000000000"
COMPACT_REQUEST = "CRITICAL: Respond with TEXT ONLY"  # the summary request (reference §4)
SUMMARY = (
    "<analysis>The user checked the context window with contextd.</analysis>\n\n"
    "<summary>1. The user asked how full the context is; context_status answered.\n"
    "2. A second turn followed.</summary>"
)

# The scripted usage of every response, distinct in each count.
T1_TOOL_CALL = Usage(input=11, cache_creation=1_201, cache_read=30_007, output=41)
T1_ANSWER = Usage(input=13, cache_creation=1_502, cache_read=31_009, output=53)
T2_ANSWER = Usage(input=17, cache_creation=903, cache_read=40_011, output=67)
COMPACT_SUMMARY = Usage(input=19, cache_creation=0, cache_read=2_011, output=401)
T3_ANSWER = Usage(input=23, cache_creation=705, cache_read=5_003, output=71)
MAIN_CHAIN = (T1_TOOL_CALL, T1_ANSWER, T2_ANSWER, T3_ANSWER)  # the summary is a forked agent's

# The hook events contextd wires (the ones `contextd install` is to write).
HTTP_HOOK_EVENTS = ("SessionEnd", "PreCompact", "PostCompact", "PreToolUse", "Stop",
                    "UserPromptSubmit")  # fmt: skip
# Claude Code 2.1.330 skips http hooks on SessionStart (and Setup): "Skipping HTTP hook … HTTP
# hooks are not supported for SessionStart" (a message in its binary; an http SessionStart hook
# never reached the daemon), so that one is a command hook that forwards its stdin.
COMMAND_HOOK_EVENTS = ("SessionStart",)


def _turn(marker: str) -> Callable[[Request], bool]:
    return lambda request: marker in request.last_user_text()


def _compaction(request: Request) -> bool:
    return COMPACT_REQUEST in request.last_user_text()


def _answers_tool_call(request: Request) -> bool:
    return request.answers_tool_use(TOOL_USE_ID)


RULES = (
    Rule("summary", _compaction, Reply((Text(SUMMARY),), COMPACT_SUMMARY)),
    Rule("t1-result", _answers_tool_call,
         Reply((Text("contextd says the context is fine."),), T1_ANSWER)),
    Rule("t1", _turn("[T1]"),
         Reply((Text("Let me ask contextd."), ToolUse(TOOL_USE_ID, MCP_TOOL, {})), T1_TOOL_CALL)),
    Rule("t2", _turn("[T2]"), Reply((Text("Second answer."),), T2_ANSWER)),
    Rule("t3", _turn("[T3]"), Reply((Text("Answer after the compaction."),), T3_ANSWER)),
)  # fmt: skip
ANSWER_ORDER = ["t1", "t1-result", "t2", "summary", "t3"]


def claude_binary() -> Path:
    """The pinned CLI's native binary (reference §1): the wrapper's ``bin/claude.exe`` once
    its postinstall has linked the platform binary over the stub, else the platform package's
    binary itself (when install scripts were skipped). Skips (fails under CI) when missing."""
    wrapper = require_version(PREFIX, "@anthropic-ai/claude-code", CLAUDE_CODE_VERSION)
    linked = wrapper / "bin" / "claude.exe"
    if linked.is_file() and linked.stat().st_size > 1024 * 1024:  # not the ~500-byte stub
        return linked
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    package = f"@anthropic-ai/claude-code-{sys.platform}-{arch}"
    native = require_version(PREFIX, package, CLAUDE_CODE_VERSION) / "claude"
    if not native.is_file():
        unavailable(f"{native} is missing")
    return native


def wire_claude_code(config_dir: Path, daemon: Served) -> dict[str, Any]:
    """Wire Claude Code (config root ``config_dir``, i.e. ``$CLAUDE_CONFIG_DIR``) to ``daemon``
    the way a user does: ``contextd install --scope user``, the real console script, with the
    daemon's database and socket as options (install writes them into every command) and its
    port in the environment. Returns what install wrote into ``settings.json``.

    That is: an ``http`` hook to the daemon's ``/hooks`` on each of :data:`HTTP_HOOK_EVENTS`; on
    ``SessionStart``, where 2.1.330 skips http hooks, the command hook ``contextd hook``; the
    status line (not run in ``-p`` mode); and ``<config_dir>/.claude.json``
    ``mcpServers.contextd``, the stdio server ``contextd mcp``.
    """
    contextd = Path(sys.executable).with_name("contextd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "CLAUDE"))}
    env |= {"CLAUDE_CONFIG_DIR": str(config_dir), "CONTEXTD_PORT": str(daemon.port)}
    done = subprocess.run(
        [str(contextd), "--db", str(daemon.db), "--socket", str(daemon.socket), "install",
         "--scope", "user"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings: dict[str, Any] = json.loads((config_dir / "settings.json").read_text())
    return settings


def offline_env(tmp: Path, config_dir: Path, fake: FakeAnthropic) -> dict[str, str]:
    """The CLI's whole environment (reference §2): the fake API, a fake key, no telemetry, no
    auto-update, no nonessential traffic, no marketplace, and the fake API as the proxy for
    anything else (it refuses ``CONNECT``)."""
    home, scratch = tmp / "home", tmp / "tmp"
    home.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
        "HTTPS_PROXY": fake.url,
        "HTTP_PROXY": fake.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_claude(binary: Path, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """``claude -p …--output-format json``, bounded by :data:`CLI_TIMEOUT`; its result object.

    The CLI gets its own process group, so on timeout (and after it exits) whatever it left
    (its MCP server, a hook) is killed by that group's id.
    """
    proc = subprocess.Popen([str(binary), "-p", *args, "--output-format", "json"], env=env,
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"claude {args} did not finish in {CLI_TIMEOUT}s: {err.decode()[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing left in the group
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (args, out.decode()[-2000:], err.decode()[-2000:])
    result: dict[str, Any] = json.loads(out)
    assert result.get("is_error") is not True, result
    return result


@dataclass(frozen=True, slots=True)
class Run:
    """What the scenario left behind, for the tests to check."""

    fake: FakeAnthropic
    daemon: Served
    config_dir: Path
    results: list[dict[str, Any]]
    session: dict[str, Any]
    installed: dict[str, Any]  # the settings.json `contextd install` wrote

    def transcript(self) -> list[dict[str, Any]]:
        (path,) = (self.config_dir / "projects").glob(f"*/{SESSION_ID}.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stats(self) -> dict[str, Any]:
        return api(self.daemon, "/api/stats")

    def boundary(self) -> dict[str, Any]:
        (entry,) = (e for e in self.transcript() if e.get("subtype") == "compact_boundary")
        meta: dict[str, Any] = entry["compactMetadata"]
        return meta


def api(daemon: Served, path: str) -> dict[str, Any]:
    """``GET path`` from the daemon, which must answer 200."""
    status, body = daemon.get(path)
    assert status == 200, (path, status, body)
    return cast(dict[str, Any], body)


def _ingested(daemon: Served) -> bool:
    view = api(daemon, f"/api/sessions/{SESSION_ID}")
    # `contextd hook` (SessionStart) forwards from a detached child after Claude Code moved on:
    # the last one may land after the transcript; wait for all of them too.
    starts = api(daemon, "/api/stats")["ingest"].get("hook_events_SessionStart", 0)
    return bool(view["responses"] == len(MAIN_CHAIN) and view["checkpoints"] >= 1
                and starts >= SESSION_STARTS)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    binary = claude_binary()  # skip (or fail under CI) before starting anything
    tmp = tmp_path_factory.mktemp("e2e")
    daemon = Served(tmp)
    project = tmp / "project"
    project.mkdir()
    with FakeAnthropic(RULES) as fake:
        daemon.start()
        try:
            installed = wire_claude_code(daemon.root, daemon)
            env = offline_env(tmp, daemon.root, fake)
            results = [
                run_claude(binary, ["[T1] How full is my context?", "--session-id", SESSION_ID,
                                    "--allowedTools", MCP_TOOL], env, project),
                run_claude(binary, ["[T2] Go on.", "--resume", SESSION_ID], env, project),
                run_claude(binary, ["/compact", "--resume", SESSION_ID], env, project),
                run_claude(binary, ["[T3] And now?", "--resume", SESSION_ID], env, project),
            ]  # fmt: skip
            wait_for(lambda: _ingested(daemon), timeout=INGEST_TIMEOUT)
            session = api(daemon, f"/api/sessions/{SESSION_ID}")
            yield Run(fake, daemon, daemon.root, results, session, installed)
        finally:
            daemon.stop()


def test_the_cli_spoke_only_to_the_fake_api_in_the_scripted_order(run: Run) -> None:
    fake = run.fake
    assert fake.refused == []  # no CONNECT: nothing tried to leave the machine
    assert fake.unanswered == []
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/messages?beta=true")
    ] * len(ANSWER_ORDER)
    assert fake.answered_by() == ANSWER_ORDER
    for request in fake.requests:
        assert request.body["stream"] is True
        assert request.headers["user-agent"].startswith(f"claude-cli/{CLAUDE_CODE_VERSION} ")
        assert request.headers["x-api-key"] == FAKE_API_KEY
        # The session id as the API sees it (reference §3), through the compaction too.
        assert request.headers["x-claude-code-session-id"] == SESSION_ID
        assert json.loads(request.body["metadata"]["user_id"])["session_id"] == SESSION_ID
    assert [r["session_id"] for r in run.results] == [SESSION_ID] * 4


def test_context_status_called_by_the_model_answers_for_the_calling_session(run: Run) -> None:
    (after_call,) = [r for r in run.fake.requests if r.rule == "t1-result"]
    result = json.loads(after_call.tool_results()[TOOL_USE_ID])
    # contextd mcp, spawned by this claude process, joined the call's _meta toolUseId through
    # the daemon's PreToolUse index (the hook fired just before), and asked the daemon.
    assert result["resolved_session_id"] == SESSION_ID
    assert result["resolved_by"] == "tool_use_id"
    assert result["session_id"] == SESSION_ID
    assert result["source"] == "daemon"
    assert result["status"] == "active"
    # Its figures are what the daemon had read: in -p mode Claude Code has not written the
    # transcript yet when it calls the tool (the file does not exist at PreToolUse time, as
    # checked while writing this test), so they trail the response that asked for the tool.
    assert run.session["tool_calls"] == 1


def test_the_daemon_holds_the_session_with_the_last_main_chain_context(run: Run) -> None:
    session = run.session
    assert session["session_id"] == SESSION_ID
    listed = api(run.daemon, "/api/sessions?all=1")["sessions"]
    assert [s["session_id"] for s in listed] == [SESSION_ID]
    assert session["context_tokens"] == T3_ANSWER.context == 5_731
    assert session["model"] == "claude-opus-5-5"
    assert session["context_window"] == 1_000_000
    assert session["claude_version"] == CLAUDE_CODE_VERSION
    assert session["cwd"] == str(run.config_dir.parent / "project")
    # From `contextd hook` (SessionStart), which sees the claude process's environment: a -p
    # run, and the user as the keyed hash of the API key it was given (never the key).
    assert session["session_type"] == "noninteractive"
    secret = install_secret(run.daemon.db.parent)
    assert session["user"] == user_id(secret, FAKE_API_KEY)
    # Each response once (T1's tool call is two transcript lines of one message), and the
    # summary request is not part of the session's main chain.
    assert session["responses"] == len(MAIN_CHAIN)
    assert session["tokens"] == {
        "input": sum(u.input for u in MAIN_CHAIN),
        "output": sum(u.output for u in MAIN_CHAIN),
        "cache_creation": sum(u.cache_creation for u in MAIN_CHAIN),
        "cache_read": sum(u.cache_read for u in MAIN_CHAIN),
        "total": sum(u.context + u.output for u in MAIN_CHAIN),
    }


def test_compact_is_one_checkpoint_with_the_tokens_it_saved(run: Run) -> None:
    boundary = run.boundary()
    assert boundary["trigger"] == "manual"
    # preTokens of a manual /compact: the last response's whole usage, output included.
    pre = T2_ANSWER.context + T2_ANSWER.output
    assert boundary["preTokens"] == pre == 40_998
    post = boundary["postTokens"]  # Claude Code's own estimate of the summary's size
    assert isinstance(post, int)
    assert 0 < post < pre
    session = run.session
    assert session["checkpoints"] == 1
    assert session["tokens_saved"] == pre - post
    assert session["checkpoint_pending_pre_tokens"] is None
    assert session["last_checkpoint_at"] is not None
    kinds = [e["kind"] for e in session["events"]]
    assert kinds.count("checkpoint") == 1
    # The hook and the transcript both told of it; it counts once.
    assert run.stats()["ingest"]["hook_events_PostCompact"] == 1


def test_install_wired_each_event_the_way_claude_code_delivers_it(run: Run) -> None:
    hooks = run.installed["hooks"]
    assert set(hooks) == {*HTTP_HOOK_EVENTS, *COMMAND_HOOK_EVENTS}
    for event in HTTP_HOOK_EVENTS:
        (group,) = hooks[event]
        (handler,) = group["hooks"]
        assert (handler["type"], handler["url"]) == (
            "http", f"http://127.0.0.1:{run.daemon.port}/hooks")  # fmt: skip
    (group,) = hooks["SessionStart"]
    (handler,) = group["hooks"]
    assert handler["type"] == "command"
    assert shlex.split(handler["command"])[1:] == [
        "hook", "--db", str(run.daemon.db), "--socket", str(run.daemon.socket)]  # fmt: skip


def test_every_wired_hook_event_reached_the_daemon(run: Run) -> None:
    counted = {name.removeprefix("hook_events_"): value
               for name, value in run.stats()["ingest"].items()
               if name.startswith("hook_events_")}  # fmt: skip
    assert counted.pop("SessionStart") in (SESSION_STARTS, SESSION_STARTS_WITH_COMPACT)
    assert counted == {
        "UserPromptSubmit": 3,  # /compact fires none
        "PreToolUse": 1,
        "Stop": 3,
        "PreCompact": 1,
        "PostCompact": 1,
        "SessionEnd": 4,  # one per `claude -p` process
    }
