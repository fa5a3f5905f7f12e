"""``POST /v1/session-events`` on a daemon whose record store is SQLite or PostgreSQL (every
test runs against both): happy path, re-emit, optional fields omitted, each bad field, the
body cap and the token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from contextd.records.store import RecordQuery, open_record_store
from contextd.server import build_app
from tests.history.records import ME, OTHER, record_json
from tests.postgres_server import PostgresServer
from tests.test_server import BASE, make_settings, wait_for

URL = "/v1/session-events"
REQUIRED = ("identity_hash", "session_id_hash", "started_at", "ended_at", "status")


@pytest.fixture
def daemon(tmp_path: Path, store_location: str) -> Daemon:
    return Daemon(make_settings(tmp_path, store=store_location))


@pytest.fixture
def client(daemon: Daemon) -> Iterator[TestClient]:
    with TestClient(build_app(daemon), base_url=BASE) as c:
        wait_for(lambda: daemon.ready and daemon.history is not None)
        yield c


def stored(daemon: Daemon, **query: Any) -> list[dict[str, Any]]:
    assert daemon.history is not None
    return [r.as_json() for r in daemon.history.store.records(RecordQuery(**query))]


def test_a_record_is_accepted_with_202_and_stored_as_sent(
    client: TestClient, daemon: Daemon
) -> None:
    answer = client.post(URL, json=record_json(1))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1, "duplicates": 0}
    assert stored(daemon) == [record_json(1)]


def test_a_batch_is_accepted_and_counted(client: TestClient, daemon: Daemon) -> None:
    batch = [record_json(n) for n in range(5)] + [record_json(0, OTHER)]
    answer = client.post(URL, json={"records": batch})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 6, "duplicates": 0})
    assert len(stored(daemon)) == 6
    assert [r["session_id_hash"] for r in stored(daemon, identity=OTHER)] == [f"{0:032x}"]


def test_a_re_emit_changes_nothing_and_counts_as_duplicate(
    client: TestClient, daemon: Daemon
) -> None:
    assert client.post(URL, json=record_json(1)).status_code == 202
    changed = record_json(1, tool_calls=999, cost_usd=99.0)  # same key, other figures
    answer = client.post(URL, json={"records": [changed, record_json(2), record_json(2)]})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 2})
    rows = stored(daemon)
    assert [r["session_id_hash"] for r in rows] == [f"{1:032x}", f"{2:032x}"]
    assert rows[0] == record_json(1)  # the first write stands


def test_optional_fields_may_be_omitted(client: TestClient, daemon: Daemon) -> None:
    minimal = {key: record_json(3)[key] for key in REQUIRED}
    answer = client.post(URL, json=minimal)
    assert answer.status_code == 202, answer.text
    (row,) = stored(daemon)
    assert row["project"] is None
    assert row["cost_usd"] is None
    assert row["branch_sha"] is None
    assert row["tokens"] == {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0}
    assert row["schema_version"] == 1


def test_nulls_are_accepted_where_a_field_may_be_unknown(client: TestClient) -> None:
    body = record_json(4, cost_usd=None, branch_sha=None, project=None, model=None,
                       session_type=None, end_reason=None, window_tokens=None)  # fmt: skip
    assert client.post(URL, json=body).status_code == 202


BAD_FIELDS = [
    ("identity_hash", "not-a-hash"),
    ("identity_hash", "sk-ant-api03-" + "x" * 40),  # a raw key is not an identity
    ("session_id_hash", "c27ce211-f52d-4595-8c0d-a93f2d5bb251"),  # a raw session id neither
    ("session_id_hash", None),
    ("started_at", "1780000000"),  # strict: a string is not a number
    ("started_at", -1),
    ("ended_at", True),
    ("status", "active"),
    ("schema_version", 2),
    ("tool_calls", -3),
    ("tool_calls", 1.5),
    ("responses", "30"),
    ("cost_usd", -0.01),
    ("peak_percent", 1e9),
    ("branch_sha", "main"),
    ("models", "claude-opus-4-6"),
    ("models", [""]),
    ("project", ""),
    ("project", "p" * 201),
    ("window_tokens", -1),
    ("project_hashed", "yes"),
    ("end_reason", "the user typed: please delete prod"),  # free text never rides along
    ("session_type", "a b"),
    ("model", "claude opus"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_each_bad_field_is_422_naming_it_and_stores_nothing(
    client: TestClient, daemon: Daemon, field: str, value: object
) -> None:
    answer = client.post(URL, json={**record_json(5), field: value})
    assert answer.status_code == 422, answer.text
    named = answer.json()["field"]
    assert named == field or named.startswith(f"{field}.")  # models.0: the item in the list
    assert stored(daemon) == []


@pytest.mark.parametrize("token_type", ["input", "output", "cache_creation", "cache_read"])
def test_a_bad_token_count_is_named_with_its_path(
    client: TestClient, daemon: Daemon, token_type: str
) -> None:
    tokens = {**record_json()["tokens"], token_type: "12"}
    answer = client.post(URL, json=record_json(6, tokens=tokens))
    assert (answer.status_code, answer.json()["field"]) == (422, f"tokens.{token_type}")
    assert stored(daemon) == []


def test_missing_and_unknown_fields_are_named(client: TestClient) -> None:
    body = record_json(7)
    del body["ended_at"]
    answer = client.post(URL, json=body)
    assert (answer.status_code, answer.json()["field"]) == (422, "ended_at")
    answer = client.post(URL, json=record_json(7, prompt="hello"))
    assert (answer.status_code, answer.json()["field"]) == (422, "prompt")


def test_one_bad_record_refuses_the_whole_batch_naming_its_index(
    client: TestClient, daemon: Daemon
) -> None:
    batch = [record_json(8), record_json(9, status="nope")]
    answer = client.post(URL, json={"records": batch})
    assert (answer.status_code, answer.json()["field"]) == (422, "records.1.status")
    assert stored(daemon) == []
    assert client.post(URL, json={"records": []}).json()["field"] == "records"
    too_many = {"records": [record_json(n) for n in range(1001)]}
    assert client.post(URL, json=too_many).status_code in (413, 422)


def test_a_body_that_is_not_json_or_not_an_object_is_refused(client: TestClient) -> None:
    answer = client.post(URL, content=b"{nope", headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["field"]) == (400, "body")
    answer = client.post(URL, json=[record_json(1)])
    assert (answer.status_code, answer.json()["field"]) == (422, "body")


def test_an_oversize_body_is_413(tmp_path: Path, store_location: str) -> None:
    daemon = Daemon(make_settings(tmp_path, store=store_location, max_body_bytes=2048))
    with TestClient(build_app(daemon), base_url=BASE) as client:
        batch = {"records": [record_json(n) for n in range(10)]}
        assert client.post(URL, json=batch).status_code == 413
        assert client.post(URL, json=record_json(1)).status_code == 202


def test_with_a_token_a_record_needs_it(tmp_path: Path, store_location: str) -> None:
    daemon = Daemon(make_settings(tmp_path, store=store_location, token="s3cret-token"))  # noqa: S106
    with TestClient(build_app(daemon), base_url=BASE) as client:
        wait_for(lambda: daemon.history is not None)
        assert client.post(URL, json=record_json(1)).status_code == 401
        wrong = {"authorization": "Bearer s3cret-tokeN"}
        assert client.post(URL, json=record_json(1), headers=wrong).status_code == 401
        good = {"authorization": "Bearer s3cret-token"}
        assert client.post(URL, json=record_json(1), headers=good).status_code == 202
        assert len(stored(daemon)) == 1


def test_records_read_back_scoped_by_user_with_is_me(client: TestClient, daemon: Daemon) -> None:
    batch = [record_json(n) for n in range(3)] + [record_json(9, OTHER)]
    client.post(URL, json={"records": batch})
    mine = client.get("/v1/session-records", params={"user": daemon.user}).json()["records"]
    assert mine == []  # the test records belong to ME, not to this machine's user
    rows = client.get("/v1/session-records", params={"user": ME}).json()["records"]
    assert [r["session_id_hash"][-1] for r in rows] == ["0", "1", "2"]
    assert all(r["is_me"] is False for r in rows)
    since = record_json(1)["ended_at"]
    rows = client.get("/v1/session-records", params={"since": since}).json()["records"]
    assert len(rows) == 3
    answer = client.get("/v1/session-records", params={"until": "yesterday"})
    assert (answer.status_code, answer.json()["field"]) == (422, "until")


def test_records_survive_a_restart_of_the_store(daemon: Daemon, store_location: str) -> None:
    with TestClient(build_app(daemon), base_url=BASE) as client:
        wait_for(lambda: daemon.history is not None)
        client.post(URL, json={"records": [record_json(n) for n in range(3)]})
    reopened = open_record_store(store_location)
    try:
        assert reopened.count() == 3
        assert reopened.add([]).accepted == 0
    finally:
        reopened.close()


def test_a_lost_archive_connection_is_503_never_202_and_recovers(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    location = postgres_server.database("events_lost")
    daemon = Daemon(make_settings(tmp_path, store=location))
    with TestClient(build_app(daemon), base_url=BASE) as client:
        wait_for(lambda: daemon.history is not None)
        assert client.post(URL, json=record_json(1)).status_code == 202
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'contextd'")  # fmt: skip
        lost = client.post(URL, json=record_json(2))
        assert lost.status_code == 503  # not stored, so not acknowledged: the sender retries
        retried = client.post(URL, json={"records": [record_json(1), record_json(2)]})
        assert (retried.status_code, retried.json()) == (202, {"accepted": 1, "duplicates": 1})
        assert [r["session_id_hash"][-1] for r in stored(daemon)] == ["1", "2"]
