"""``contextd serve --proxy`` end to end: a real daemon process, its proxy port, a scripted
upstream. The daemon's per-session figures must equal the scripted usage; a response seen by
both the proxy and a transcript counts once, whichever comes first; the key is nowhere."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from contextd.identity import install_secret, user_id
from tests.e2e.fake_anthropic import Reply, Text, ToolUse, Usage, totals
from tests.proxy.traces import assert_key_absent, exposition, state_files, stop_for_log
from tests.proxy.upstream import Script, Upstream, error, streamed, whole
from tests.served import Served, free_port
from tests.test_server import wait_for

pytestmark = pytest.mark.slow

KEY = "sk-ant-api03-daemon-proxy-key-1111111111111111"
SESSION = "da300000-0000-4000-8000-00000000000a"
OTHER = "da300000-0000-4000-8000-00000000000b"
R1 = Reply((Text("One."),), Usage(input=5, cache_creation=1_000, cache_read=10_000, output=20))
R2 = Reply((Text("Two."), ToolUse("toolu_d_2", "Read", {})),
           Usage(input=6, cache_creation=1_100, cache_read=11_000, output=30))  # fmt: skip
SUB = Reply((Text("Sub-agent."),), Usage(input=700, cache_creation=0, cache_read=0, output=40))
R4 = Reply((Text("Four."),), Usage(input=8, cache_creation=1_300, cache_read=13_000, output=50))
R5 = Reply((Text("Other."),), Usage(input=9, cache_creation=900, cache_read=9_000, output=60))
SESSION_REPLIES = (R1, R2, SUB, R4)  # R2 also in the transcript, after the proxy saw it


@dataclass(frozen=True, slots=True)
class Run:
    daemon: Served
    upstream: Upstream
    proxy_port: int
    scripts: list[Script]
    bodies: list[bytes]  # what the client received, in order


def _transcript_line(session: str, reply: Reply, message_id: str, request_id: str) -> str:
    usage = {"input_tokens": reply.usage.input, "output_tokens": reply.usage.output,
             "cache_creation_input_tokens": reply.usage.cache_creation,
             "cache_read_input_tokens": reply.usage.cache_read}  # fmt: skip
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({
        "type": "assistant", "sessionId": session, "timestamp": now, "cwd": "/work/proj",
        "uuid": f"u-{message_id}", "parentUuid": None, "isSidechain": False,
        "requestId": request_id,
        "message": {"id": message_id, "model": "claude-opus-5-5", "role": "assistant",
                    "content": [{"type": "text", "text": "x"}], "usage": usage},
    }) + "\n"  # fmt: skip


def _call(port: int, session: str, body: dict[str, Any], **extra: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/messages?beta=true", json.dumps(body), {
            "x-api-key": KEY, "content-type": "application/json",
            "x-claude-code-session-id": session, **extra})  # fmt: skip
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _session(daemon: Served, sid: str) -> dict[str, Any]:
    status, body = daemon.get(f"/api/sessions/{sid}")
    assert status == 200, body
    return cast(dict[str, Any], body)


def _counter(daemon: Served, name: str) -> int | None:
    ingest = cast(dict[str, int], daemon.get("/api/stats")[1]["ingest"])
    return ingest.get(name)


ASK = {"model": "claude-opus-5-5", "max_tokens": 10, "stream": True,
       "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("daemon-proxy")
    daemon = Served(tmp)
    transcript = daemon.root / "projects" / "-work-proj"
    transcript.mkdir(parents=True)
    retry = (("retry-after", "30"), ("anthropic-ratelimit-tokens-remaining", "0"))
    scripts = [
        streamed(R1, "msg_d_1", request_id="req_d_1"),
        streamed(R2, "msg_d_2", request_id="req_d_2"),
        streamed(SUB, "msg_d_sub", request_id="req_d_sub"),
        whole(R4, "msg_d_4", request_id="req_d_4"),
        error(429, "rate_limit_error", request_id="req_d_429", extra=retry),
        streamed(R5, "msg_d_5", request_id="req_d_5"),
    ]
    proxy_port = free_port()
    with Upstream(scripts) as upstream:
        daemon.start(env={"CONTEXTD_PROXY_UPSTREAM": upstream.url}, args=(
            "--proxy", "--proxy-port", str(proxy_port), "--log-level", "info"))  # fmt: skip
        try:
            bodies = []
            for i, extra in enumerate([{}, {}, {"x-claude-code-agent-id": "agent-7"}]):
                status, body = _call(proxy_port, SESSION, ASK, **extra)
                assert status == 200
                bodies.append(body)
                if i == 1:  # Claude Code writes R2 to its transcript after the proxy saw it
                    wait_for(lambda: _session(daemon, SESSION)["responses"] == 2)
                    (transcript / f"{SESSION}.jsonl").write_text(
                        _transcript_line(SESSION, R2, "msg_d_2", "req_d_2")
                    )
            bodies.append(_call(proxy_port, SESSION, {**ASK, "stream": False})[1])
            bodies.append(_call(proxy_port, SESSION, ASK)[1])
            # OTHER: the transcript has R5 first, then the proxy sees it.
            (transcript / f"{OTHER}.jsonl").write_text(
                _transcript_line(OTHER, R5, "msg_d_5", "req_d_5")
            )
            wait_for(lambda: daemon.get(f"/api/sessions/{OTHER}")[0] == 200, timeout=20)
            bodies.append(_call(proxy_port, OTHER, ASK)[1])
            wait_for(lambda: any(e["kind"] == "api_error"
                                 for e in _session(daemon, SESSION)["events"]))  # fmt: skip
            wait_for(lambda: _counter(daemon, "proxy_responses") == 5)
            yield Run(daemon, upstream, proxy_port, scripts, bodies)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


def test_every_client_got_exactly_the_bytes_upstream_sent(run: Run) -> None:
    assert run.bodies == [s.body for s in run.scripts]
    assert all(seen.header("x-api-key") == KEY for seen in run.upstream.seen)


def test_the_sessions_figures_equal_the_scripted_usage(run: Run) -> None:
    session = _session(run.daemon, SESSION)
    assert session["context_tokens"] == R4.usage.context  # the last main-chain response
    assert session["model"] == "claude-opus-5-5"
    assert session["context_window"] == 1_000_000
    assert session["responses"] == len(SESSION_REPLIES)  # R2 once, though also in a transcript
    usages = [r.usage for r in SESSION_REPLIES]
    assert session["tokens"] == totals(usages)
    assert session["subagent_tokens"]["input"] == SUB.usage.input
    assert session["tool_calls"] == 1


def test_a_response_the_transcript_showed_first_counts_once_too(run: Run) -> None:
    other = _session(run.daemon, OTHER)
    assert other["responses"] == 1
    assert other["tokens"]["total"] == R5.usage.context + R5.usage.output
    assert other["context_tokens"] == R5.usage.context


def test_the_user_is_the_keyed_hash_of_the_api_key(run: Run) -> None:
    secret = install_secret(run.daemon.db.parent)
    assert _session(run.daemon, SESSION)["user"] == user_id(secret, KEY)
    status, listed = run.daemon.get(f"/api/sessions?user={user_id(secret, KEY)}")
    assert status == 200
    assert {s["session_id"] for s in cast(list[dict[str, Any]], listed["sessions"])} == {
        SESSION, OTHER}  # fmt: skip


def test_a_429_is_an_api_error_event_with_its_headers_and_no_body(run: Run) -> None:
    (event,) = [e for e in _session(run.daemon, SESSION)["events"] if e["kind"] == "api_error"]
    assert event["data"] == {
        "status": 429,
        "error_type": "rate_limit_error",
        "retry_after": "30",
        "rate_limits": {"anthropic-ratelimit-tokens-remaining": "0"},
    }
    assert "scripted" not in json.dumps(event)  # the error's message (its body) is not kept


def test_the_proxy_listens_on_loopback_only(run: Run) -> None:
    connections = Path("/proc/net/tcp").read_text().splitlines()[1:]
    listening = [line.split() for line in connections if line.split()[3] == "0A"]
    ours = [fields[1] for fields in listening if int(fields[1].split(":")[1], 16) == run.proxy_port]
    assert ours == [f"0100007F:{run.proxy_port:04X}"]


def test_the_key_is_in_no_database_file_log_metric_or_api_answer(run: Run) -> None:
    daemon = run.daemon
    metrics = exposition(daemon)
    answers = [json.dumps(daemon.get(p)[1]).encode() for p in
               ("/api/sessions?all=1", f"/api/sessions/{SESSION}", "/api/events?limit=500",
                "/api/stats")]  # fmt: skip
    live = state_files(daemon)  # the WAL too, while the daemon runs
    log = stop_for_log(daemon)
    assert_key_absent(KEY, [metrics, *answers, *live, *state_files(daemon), log])
    assert b"contextd_session_context_tokens" in metrics
    assert b"not recorded" not in log
    assert b"API proxy on http://127.0.0.1" in log  # the log was there to search
