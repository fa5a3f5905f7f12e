"""A known API key goes through everything a session sends; neither it nor its bare SHA-256
turns up in the database (and its WAL), the daemon's debug log, ``/metrics``, the JSON API or
what the daemon pushes over OTLP."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from contextd.identity import install_secret, user_id
from tests.commands import command_env, run, wait_for_session
from tests.otlp_receiver import receiving
from tests.served import Served

KEY = "sk-ant-api03-LEAKCHECK-9f8e7d6c5b4a39281706f5e4d3c2b1a0-ZZZZ"
SHA = hashlib.sha256(KEY.encode()).hexdigest()
SID = "1eac0000-0000-4000-8000-00000000c0de"
EVENTS: list[dict[str, Any]] = [
    {"hook_event_name": "SessionStart", "source": "startup"},
    {"hook_event_name": "UserPromptSubmit", "prompt": f"my key is {KEY}"},
    {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_use_id": "toolu_leak_1",
     "tool_input": {"command": f"export ANTHROPIC_API_KEY={KEY}"}},
    {"hook_event_name": "Stop", "last_assistant_message": KEY},
]  # fmt: skip
STATUS = {
    "session_id": SID, "cwd": "/home/u/leakproj", "model": {"id": "claude-opus-4-6"},
    "context_window": {"context_window_size": 200_000, "current_usage": {
        "input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 40_000,
        "output_tokens": 7}},
    "cost": {"total_cost_usd": 0.5},
}  # fmt: skip


def key_env(served: Served, **extra: str) -> dict[str, str]:
    return command_env(served, served.tmp, ANTHROPIC_API_KEY=KEY, **extra)


def feed(served: Served, env: dict[str, str]) -> None:
    """What a session with the key in its environment sends: command hooks, the status line,
    and (as Claude Code's http hooks would) the same events posted directly."""
    for event in EVENTS:
        body = {"session_id": SID, "cwd": "/home/u/leakproj", **event}
        done = run("hook", json.dumps(body).encode(), env)
        assert (done.returncode, done.stdout) == (0, b"")
        assert served.post("/hooks", body)[0] == 200
    assert run("statusline", json.dumps(STATUS).encode(), env).returncode == 0


def raw_get(served: Served, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def everything(served: Served, log: Path, pushed: list[bytes]) -> dict[str, bytes]:
    texts = {"log": log.read_bytes(), "otlp": b"".join(pushed)}
    for path in served.db.parent.iterdir():  # the database, its -wal and -shm, the secret
        texts[path.name] = path.read_bytes()
    for route in ("/metrics", "/api/sessions?all=1", "/api/events?limit=500", "/api/stats",
                  f"/api/sessions/{SID}"):  # fmt: skip
        texts[route] = raw_get(served, route)
    return texts


def assert_absent(texts: dict[str, bytes], *needles: str) -> None:
    for name, data in texts.items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle[:12]}… found in {name}"
            assert needle.upper().encode() not in data, f"{needle[:12]}… found in {name}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hmac", "sha256"])
def test_the_key_and_its_bare_sha256_appear_nowhere(tmp_path: Path, mode: str) -> None:
    served = Served(tmp_path / "daemon")
    log = tmp_path / "daemon.log"
    with receiving(200) as receiver:
        served.start(log_level="debug", log_file=log, env={
            "CONTEXTD_IDENTITY_HASH": mode, "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url.removesuffix("/v1/metrics"),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})  # fmt: skip
        try:
            feed(served, key_env(served, CONTEXTD_IDENTITY_HASH=mode))
            expected = (user_id(install_secret(served.db.parent), KEY) if mode == "hmac"
                        else SHA[:16])  # fmt: skip
            view = wait_for_session(served, SID, lambda s: s["user"] == expected
                                    and s["context_tokens"] == 40_105)  # fmt: skip
            assert view["session_type"] != "unknown"
            count = len(receiver.requests)
            receiver.wait_for_requests(count + 2)  # pushes made after the session arrived
            pushed = [r.SerializeToString() for r in receiver.requests]
            texts = everything(served, log, pushed)
            assert expected.encode() in texts["/metrics"]  # the scan can find what is there
        finally:
            assert served.stop() == 0
    texts |= {f"{p.name} (after stop)": p.read_bytes() for p in served.db.parent.iterdir()}
    assert log.stat().st_size > 0
    if mode == "hmac":
        assert_absent(texts, KEY, SHA, SHA[:16])
    else:  # by design the plain SHA-256[:16] is the user id; the key and full digest never
        assert_absent(texts, KEY, SHA)
        assert KEY[-20:].encode() not in b"".join(texts.values())
