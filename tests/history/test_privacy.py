"""Session records hold no raw identifier: sessions with known raw session ids, a fake API key
in their environment and prompt text go through hooks, the status line and transcripts; then
the record store, the spool (outbox) and the bodies forwarded on the wire — captured by a
stand-in central — are searched for all of them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from contextd.identity import install_secret, user_id
from tests.commands import run
from tests.history.central import capturing
from tests.served import Served, free_port
from tests.test_secrets import KEY, SHA, assert_absent, key_env
from tests.test_server import wait_for

HOOK_SID = "5ec2e7aa-1111-4222-8333-444455556666"
TRANSCRIPT_SID = "5ec2e7bb-7777-4888-8999-aaaabbbbcccc"
PROMPT = "PROMPT-TEXT: please refactor the zanzibar frobnicator quietly"


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
    finally:
        conn.close()


def write_transcript(root: Path, at: float) -> None:
    """An old session, written with the key and the prompt in it (expired when scanned)."""
    project = root / "projects" / "-home-u-leakproj"
    project.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(at))
    base = {"sessionId": TRANSCRIPT_SID, "cwd": "/home/u/leakproj", "timestamp": stamp,
            "version": "2.1.330"}  # fmt: skip
    user = {**base, "type": "user", "message": {"role": "user",
                                                "content": f"{PROMPT} with {KEY}"}}  # fmt: skip
    usage = {"input_tokens": 10, "cache_read_input_tokens": 1000,
             "cache_creation_input_tokens": 0, "output_tokens": 5}  # fmt: skip
    reply = {**base, "type": "assistant", "requestId": "req_leak",
             "message": {"id": "msg_leak", "model": "claude-opus-4-6", "usage": usage,
                         "content": [{"type": "text", "text": KEY}]}}  # fmt: skip
    (project / f"{TRANSCRIPT_SID}.jsonl").write_bytes(
        orjson.dumps(user) + b"\n" + orjson.dumps(reply) + b"\n"
    )


def feed(edge: Served) -> None:
    env = key_env(edge)
    status = {"session_id": HOOK_SID, "cwd": "/home/u/leakproj", "model": {"id": "claude-opus-4-6"},
              "context_window": {"context_window_size": 200_000, "current_usage": {
                  "input_tokens": 5, "cache_creation_input_tokens": 100,
                  "cache_read_input_tokens": 40_000, "output_tokens": 7}}}  # fmt: skip
    events = [{"hook_event_name": "SessionStart", "source": "startup"},
              {"hook_event_name": "UserPromptSubmit", "prompt": f"{PROMPT} {KEY}"},
              {"hook_event_name": "Stop", "last_assistant_message": KEY}]  # fmt: skip
    for event in events:
        body = {"session_id": HOOK_SID, "cwd": "/home/u/leakproj", **event}
        assert run("hook", json.dumps(body).encode(), env).returncode == 0
        assert edge.post("/hooks", body)[0] == 200
    assert run("statusline", json.dumps(status).encode(), env).returncode == 0
    end = {"session_id": HOOK_SID, "cwd": "/home/u/leakproj", "hook_event_name": "SessionEnd",
           "reason": "logout"}  # fmt: skip
    assert run("hook", json.dumps(end).encode(), env).returncode == 0


def files_of(state: Path, *names: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.iterdir() if p.name.startswith(names)}


@pytest.mark.slow
def test_raw_ids_keys_and_prompts_reach_neither_records_nor_outbox_nor_the_wire(
    tmp_path: Path,
) -> None:
    port = free_port()
    edge = Served(tmp_path / "edge")
    write_transcript(edge.root, time.time() - 7200)
    edge.start(env={"CONTEXTD_FORWARD": f"http://127.0.0.1:{port}", "CONTEXTD_RECORD_SETTLE": "0"})
    state = edge.db.parent
    try:
        feed(edge)
        # The central is not up yet: both records wait in the outbox.
        wait_for(lambda: count(state / "spool.db", "outbox") == 2, timeout=30)
        assert count(state / "history.db", "session_records") == 2
        at_rest = files_of(state, "history.db", "spool.db")
        with capturing(port) as central:
            wait_for(lambda: count(state / "spool.db", "outbox") == 0, timeout=30)
        wire = {f"body {i}": b for i, b in enumerate(central.bodies)}
    finally:
        assert edge.stop() == 0
    at_rest |= {
        f"{k} (after stop)": v for k, v in files_of(state, "history.db", "spool.db").items()
    }

    sent = [r for body in central.bodies for r in json.loads(body)["records"]]
    assert len(sent) == 2
    keyed = user_id(install_secret(state), KEY)
    assert {r["identity_hash"] for r in sent} >= {keyed}  # the key's id, hashed, is there
    assert any(r["project"] == "leakproj" for r in sent)  # the scan can find what is there
    assert keyed.encode() in b"".join(at_rest.values())
    assert_absent(at_rest | wire, HOOK_SID, TRANSCRIPT_SID, KEY, SHA, SHA[:16], PROMPT,
                  HOOK_SID.replace("-", ""), TRANSCRIPT_SID.replace("-", ""))  # fmt: skip
