"""The daemon's HTTP surface, in process: ingest, read API, guard, and what bad input gets.

Each kind of bad input and what happens to it:

* body that is not JSON → 400 ``{"field": "body"}``; a JSON non-object → 422 ``body``;
* a field of the wrong type or shape → 422 naming the field (``"123"`` is never an int);
* a body over the cap → 413 (with or without Content-Length), before any parsing;
* a Host outside the allow-list → 421, an Origin outside it → 403, a missing or wrong token
  (when one is configured) → 401 — each with no side effect;
* and in every case, what was stored before is unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from contextd.config import Settings
from contextd.daemon import Daemon
from contextd.server import build_app

PORT = 7399
BASE = f"http://127.0.0.1:{PORT}"
SID = "c27ce211-f52d-4595-8c0d-a93f2d5bb251"
SID2 = "d27ce211-f52d-4595-8c0d-a93f2d5bb252"


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    root = tmp_path / "claude"
    (root / "projects").mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {
        "db": tmp_path / "state" / "contextd.db", "config_dirs": (str(root),),
        "socket": tmp_path / "run" / "contextd.sock", "port": PORT, "tick_interval": 0.2,
        **overrides,
    }  # fmt: skip
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    return Daemon(make_settings(tmp_path))


@pytest.fixture
def client(daemon: Daemon) -> Iterator[TestClient]:
    with TestClient(build_app(daemon), base_url=BASE) as c:
        wait_for(lambda: daemon.ready)
        yield c


def hook(client: TestClient, event: str, sid: str = SID, **fields: object) -> int:
    body = {"session_id": sid, "hook_event_name": event, "cwd": "/home/u/proj", **fields}
    return client.post("/hooks", json=body).status_code


def status_line(client: TestClient, context: int | None, window: int = 200_000,
                sid: str = SID) -> int:  # fmt: skip
    usage = None if context is None else {
        "input_tokens": 3, "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": context - 1003, "output_tokens": 50,
    }  # fmt: skip
    body = {"session_id": sid, "cwd": "/home/u/proj", "model": {"id": "claude-opus-4-6"},
            "context_window": {"context_window_size": window, "current_usage": usage}}  # fmt: skip
    return client.post("/api/statusline", json=body).status_code


def session(client: TestClient, sid: str = SID) -> dict[str, object]:
    response = client.get(f"/api/sessions/{sid}")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


# -- ingest ----------------------------------------------------------------------------------


def test_hooks_make_a_live_session_and_count_a_compaction_once(client: TestClient) -> None:
    assert hook(client, "SessionStart", source="startup", model="claude-opus-4-6") == 200
    assert status_line(client, 150_000) == 200
    assert hook(client, "PreCompact", trigger="manual") == 200
    assert hook(client, "PostCompact", trigger="manual", compact_summary="secret summary") == 200
    assert hook(client, "PostCompact", trigger="manual") == 200  # delivered twice
    assert status_line(client, 12_000) == 200
    s = session(client)
    assert s["status"] == "active"
    assert (s["checkpoints"], s["tokens_saved"], s["context_tokens"]) == (1, 138_000, 12_000)
    assert s["threshold_warn_crossings"] == 1
    kinds = [e["kind"] for e in s["events"]]  # type: ignore[attr-defined]
    assert "checkpoint" in kinds
    assert "secret summary" not in json.dumps(s)


def test_the_status_line_sets_the_window_and_feeds_api_context(client: TestClient) -> None:
    assert status_line(client, 300_000, window=1_000_000) == 200
    ctx = client.get("/api/context").json()
    assert (ctx["session_id"], ctx["current_tokens"], ctx["limit_tokens"]) == (
        SID, 300_000, 1_000_000,
    )  # fmt: skip
    assert (ctx["usage_pct"], ctx["warning_level"]) == (30.0, "normal")
    assert status_line(client, 950_000, window=1_000_000) == 200
    assert client.get("/api/context").json()["warning_level"] == "critical"


def test_clear_supersedes_the_old_session(client: TestClient) -> None:
    hook(client, "SessionStart", source="startup")
    hook(client, "SessionEnd", reason="clear")
    hook(client, "SessionStart", sid=SID2, source="clear")
    old = session(client, SID)
    assert (old["status"], old["superseded_by"]) == ("superseded", SID2)
    live = client.get("/api/sessions").json()["sessions"]
    assert [s["session_id"] for s in live] == [SID2]
    every = client.get("/api/sessions?all=1").json()["sessions"]
    assert {s["session_id"] for s in every} == {SID, SID2}


def test_spy_compatible_start_and_end(client: TestClient) -> None:
    started = client.post("/api/session/start", json={"session_id": SID, "source": "hook"})
    assert started.json() == {"success": True, "message": "Session started",
                              "session_key": f"session:{SID}"}  # fmt: skip
    assert client.post("/api/session/end", json={"session_id": SID, "reason": "other"}).json()[
        "success"
    ]
    assert session(client)["status"] == "ended"


def test_pre_tool_use_fills_the_tool_use_index(client: TestClient, daemon: Daemon) -> None:
    hook(client, "PreToolUse", tool_name="mcp__contextd__context_status",
         tool_use_id="toolu_abc", tool_input={"detail": "full"})  # fmt: skip
    assert daemon.tool_uses.session("toolu_abc", time.time()) == SID


def test_a_transcript_written_under_a_root_is_followed_without_a_rescan(
    client: TestClient, daemon: Daemon, tmp_path: Path
) -> None:
    project = tmp_path / "claude" / "projects" / "-home-u-proj"
    project.mkdir()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    usage = {"input_tokens": 10, "cache_read_input_tokens": 90_000,
             "cache_creation_input_tokens": 0, "output_tokens": 7}  # fmt: skip
    line = {"type": "assistant", "sessionId": SID, "cwd": "/home/u/proj", "timestamp": stamp,
            "requestId": "req_1", "message": {"id": "msg_1", "model": "claude-opus-4-6",
                                              "content": [], "usage": usage}}  # fmt: skip
    (project / f"{SID}.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    # The full rescan runs once a minute: seeing it within the bound means the watcher did.
    assert daemon.settings.rescan_interval >= 60
    wait_for(lambda: any(s.session_id == SID and s.context_tokens == 90_010
                         for s in daemon.sessions), timeout=10)  # fmt: skip


# -- read API ------------------------------------------------------------------------------


def test_user_filter_scopes_every_read(client: TestClient, daemon: Daemon) -> None:
    status_line(client, 100_000)
    mine, other = daemon.user, "0123456789abcdef"
    assert len(client.get(f"/api/sessions?user={mine}").json()["sessions"]) == 1
    assert client.get(f"/api/sessions?user={other}").json()["sessions"] == []
    assert client.get(f"/api/stats?user={other}").json()["sessions"]["live"] == 0
    assert client.get(f"/api/stats?user={mine}").json()["context"]["total_tokens"] == 100_000
    assert client.get(f"/api/context?user={other}").status_code == 404
    assert client.get(f"/api/events?user={other}").json()["events"] == []
    assert client.get(f"/api/sessions/{SID}?user={other}").status_code == 404


def test_events_page_forward_with_after(client: TestClient) -> None:
    for context in (10_000, 150_000, 185_000):
        status_line(client, context)
    first = client.get("/api/events?limit=2").json()
    rest = client.get(f"/api/events?after={first['next_after']}").json()
    assert len(first["events"]) == 2
    seqs = [e["seq"] for e in first["events"] + rest["events"]]
    assert seqs == sorted(set(seqs))
    assert any(e["kind"] == "threshold_crossed" for e in first["events"] + rest["events"])


def test_stats_and_metrics_count_hooks_by_event(client: TestClient) -> None:
    hook(client, "UserPromptSubmit", prompt="do not keep me")
    hook(client, "UserPromptSubmit", prompt="nor me")
    hook(client, "SomethingNew")
    ingest = client.get("/api/stats").json()["ingest"]
    assert ingest["hook_events_UserPromptSubmit"] == 2
    assert ingest["hook_events_other"] == 1
    metrics = client.get("/metrics").text
    assert 'contextd_hook_events_total{event="UserPromptSubmit"} 2.0' in metrics
    assert "do not keep me" not in metrics


def test_healthz_reports_readiness(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert (health["status"], health["ready"]) == ("ok", True)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hooks", "/api/statusline", "/api/session/start",
                                  "/api/session/end"])  # fmt: skip
@pytest.mark.parametrize(
    ("body", "status", "field"),
    [(b"{not json", 400, "body"), (b"[1, 2]", 422, "body"), (b'"text"', 422, "body"),
     (b'{"session_id": 123, "hook_event_name": "Stop"}', 422, "session_id"),
     (b'{"session_id": "a b/../c", "hook_event_name": "Stop"}', 422, "session_id"),
     (b"{}", 422, "session_id")],
)  # fmt: skip
def test_bad_bodies_get_a_4xx_naming_the_field_and_change_nothing(
    client: TestClient, path: str, body: bytes, status: int, field: str
) -> None:
    status_line(client, 120_000)
    before = session(client)
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["field"] == field
    assert session(client) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [({"context_window": {"context_window_size": "200000"}}, "context_window.context_window_size"),
     ({"context_window": {"current_usage": {"input_tokens": -1}}},
      "context_window.current_usage.input_tokens"),
     ({"model": {"id": 5}}, "model.id"), ({"cwd": ["x"]}, "cwd")],
)  # fmt: skip
def test_status_line_fields_are_strictly_typed(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/api/statusline", json={"session_id": SID, **body})
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_a_raw_key_is_refused_as_a_user_id(client: TestClient) -> None:
    response = client.post("/api/session/start",
                           json={"session_id": SID, "user_id": "sk-ant-api03-secret"})  # fmt: skip
    assert (response.status_code, response.json()["field"]) == (422, "user_id")
    assert "sk-ant" not in client.get("/api/sessions?all=1").text


def test_an_oversize_body_is_413_with_or_without_content_length(client: TestClient) -> None:
    status_line(client, 120_000)
    before = session(client)
    big = b'{"session_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert client.post("/hooks", content=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    response = client.post("/hooks", content=chunks())
    assert (response.status_code, response.json()["field"]) == (413, "body")
    assert session(client) == before


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:7399", "127.0.0.1:80",
                                  "localhost"])  # fmt: skip
def test_a_foreign_host_is_421_and_has_no_side_effect(client: TestClient, host: str) -> None:
    response = client.post("/hooks", json={"session_id": SID, "hook_event_name": "Stop"},
                           headers={"host": host})  # fmt: skip
    assert response.status_code == 421
    assert response.json()["field"] == "Host"
    assert client.get(f"/api/sessions/{SID}").status_code == 404


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}"])
def test_loopback_hosts_are_accepted(client: TestClient, host: str) -> None:
    assert client.get("/healthz", headers={"host": host}).status_code == 200


def test_a_foreign_origin_is_403_and_a_local_one_is_fine(client: TestClient) -> None:
    body = {"session_id": SID, "hook_event_name": "Stop"}
    bad = client.post("/hooks", json=body, headers={"origin": "http://evil.example.com"})
    assert (bad.status_code, bad.json()["field"]) == (403, "Origin")
    assert client.get(f"/api/sessions/{SID}").status_code == 404
    good = client.post("/hooks", json=body, headers={"origin": f"http://localhost:{PORT}"})
    assert good.status_code == 200


def test_with_a_token_every_request_needs_it(tmp_path: Path) -> None:
    daemon = Daemon(make_settings(tmp_path, token="s3cret-token"))  # noqa: S106 (a test token)
    with TestClient(build_app(daemon), base_url=BASE) as c:
        wait_for(lambda: daemon.ready)
        body = {"session_id": SID, "hook_event_name": "Stop"}
        for auth in (None, "Bearer wrong", "Bearer s3cret-tokeN", "s3cret-token"):
            headers = {"authorization": auth} if auth else {}
            assert c.post("/hooks", json=body, headers=headers).status_code == 401
        good = {"authorization": "Bearer s3cret-token"}
        assert c.post("/hooks", json=body, headers=good).status_code == 200
        assert c.get("/api/sessions", headers=good).json()["active_count"] == 1
        assert "s3cret" not in c.get("/metrics", headers=good).text


def test_a_full_database_gets_503_never_2xx_and_recovers_by_itself(
    client: TestClient, daemon: Daemon
) -> None:
    """A real SQLITE_FULL (``max_page_count`` at the current size): uncommitted hooks are
    refused with 503, committed ones stay, and once there is room again all is well."""
    assert hook(client, "SessionStart", source="startup") == 200
    conn = daemon.ingestor.store._conn

    def freeze_size() -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    client.portal.call(daemon.run, freeze_size)  # type: ignore[union-attr]
    answers: dict[str, int] = {}
    for i in range(200):
        sid = f"5a1f0c2e-0000-4000-8000-{i:012d}"
        answers[sid] = hook(client, "SessionStart", sid=sid, source="startup",
                            cwd="/w/" + "x" * 2000)  # fmt: skip
    refused = {sid for sid, code in answers.items() if code == 503}
    assert refused, "the database never filled up"
    assert set(answers.values()) <= {200, 503}
    client.portal.call(  # type: ignore[union-attr]
        daemon.run, lambda: conn.execute("PRAGMA max_page_count = 1073741823")
    )
    assert hook(client, "SessionStart", sid=SID2, source="startup") == 200
    stored = {s["session_id"] for s in client.get("/api/sessions?all=1").json()["sessions"]}
    acknowledged = {sid for sid, code in answers.items() if code == 200}
    assert acknowledged | {SID, SID2} <= stored
    assert not refused & stored
    assert client.portal.call(daemon.run, daemon.ingestor.store.integrity_ok)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [("/api/events?limit=ten", 422, "limit"), ("/api/events?after=-x", 422, "after"),
     ("/api/sessions/no-such-session", 404, "session_id"),
     ("/api/context?session_id=no-such-session", 404, "session_id"),
     ("/api/context?user=0123456789abcdef", 404, "user")],
)  # fmt: skip
def test_bad_query_parameters_get_a_4xx_naming_the_field(
    client: TestClient, path: str, status: int, field: str
) -> None:
    status_line(client, 120_000)
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["field"] == field


def test_contextd_env_sets_session_type_and_user_once(client: TestClient) -> None:
    env = {"session_type": "ssh", "entrypoint": "cli", "user_id": "00112233aabbccdd"}
    assert hook(client, "SessionStart", source="startup", contextd_env=env) == 200
    later = {"session_type": "tmux", "user_id": "ffffffffffffffff"}
    assert hook(client, "Stop", contextd_env=later) == 200
    (view,) = client.get("/api/sessions").json()["sessions"]
    assert (view["session_type"], view["user"], view["entrypoint"]) == (
        "ssh", "00112233aabbccdd", "cli")  # fmt: skip
    metrics = client.get("/metrics").text
    assert f'session_id="{SID}",session_type="ssh",user="00112233aabbccdd"' in metrics


def test_a_session_nobody_described_is_of_unknown_type(client: TestClient, daemon: Daemon) -> None:
    assert hook(client, "SessionStart", source="startup") == 200
    (view,) = client.get("/api/sessions").json()["sessions"]
    assert (view["session_type"], view["user"]) == ("unknown", daemon.user)
    assert 'session_type="unknown"' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("env", "field"),
    [({"session_type": "spaceship"}, "contextd_env.session_type"),
     ({"user_id": "sk-ant-api03-raw-key"}, "contextd_env.user_id"),
     ({"session_type": 7}, "contextd_env.session_type"), ("ssh", "contextd_env")],
)  # fmt: skip
def test_a_bad_contextd_env_is_422_naming_the_field(
    client: TestClient, env: object, field: str
) -> None:
    body = {"session_id": SID, "hook_event_name": "Stop", "contextd_env": env}
    response = client.post("/hooks", json=body)
    assert (response.status_code, response.json()["field"]) == (422, field)
    assert client.get("/api/sessions").json()["sessions"] == []
