"""From an exchange to observations: where the session, the user and the figures come from."""

from __future__ import annotations

import json

from contextd.events import Activity, ApiError, Origin
from contextd.identity import user_id
from contextd.ingest.transcripts import ResponseLine
from contextd.models import TokenCounts
from contextd.proxy.tap import Answer
from contextd.proxy.telemetry import Exchange, exchange_items, key_of, origin_of, session_of

SECRET = b"\x02" * 32
SESSION = "c27ce211-f52d-4595-8c0d-a93f2d5bb251"
ANSWER = Answer("msg_t", "claude-opus-5-5", TokenCounts(1, 2, 3, 4), 8, (), None, True)


def body_with_metadata(session: str) -> bytes:
    user = json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": session})
    return json.dumps({"model": "m", "messages": [], "metadata": {"user_id": user}}).encode()


def exchange(headers: dict[str, str], body: bytes = b"{}", path: str = "/v1/messages",
             **kw: object) -> Exchange:  # fmt: skip
    return Exchange(path, headers, body, 1000.0, **kw)  # type: ignore[arg-type]


def test_the_session_header_comes_first_then_a_configured_one_then_the_metadata() -> None:
    body = body_with_metadata("from-metadata")
    assert session_of(exchange({"x-claude-code-session-id": SESSION}, body)) == SESSION
    assert session_of(exchange({"x-claude-session-id": "seed"}, body)) == "seed"
    assert session_of(exchange({"x-trace": "mine"}, body), "X-Trace") == "mine"
    assert session_of(exchange({}, body)) == "from-metadata"
    assert session_of(exchange({}, body, path="/v1/models")) is None  # bodies of messages only


def test_a_malformed_session_id_is_ignored() -> None:
    assert session_of(exchange({"x-claude-code-session-id": "../../etc"})) is None
    assert session_of(exchange({}, body_with_metadata("a b"))) is None
    assert session_of(exchange({}, b'{"metadata": {"user_id": "not json"}}')) is None
    assert session_of(exchange({}, b'{"metadata": {"user_id": "{broken"}}')) is None
    assert session_of(exchange({}, b'{"metadata": [truncated')) is None


def test_the_key_is_the_api_key_or_the_bearer_token() -> None:
    assert key_of({"x-api-key": "k1", "authorization": "Bearer t"}) == "k1"
    assert key_of({"authorization": "Bearer tok"}) == "tok"
    assert key_of({"authorization": "Basic abc"}) is None
    assert key_of({}) is None


def test_claude_codes_user_agent_gives_version_and_entrypoint() -> None:
    ua = {"user-agent": "claude-cli/2.1.330 (external, sdk-cli)"}
    assert origin_of(ua, "u") == Origin(version="2.1.330", entrypoint="sdk-cli", user="u")
    assert origin_of({"user-agent": "curl/8"}, None) is None
    assert origin_of({"user-agent": "curl/8"}, "u") == Origin(user="u")


def test_a_client_without_session_is_filed_under_its_user_and_without_key_not_at_all() -> None:
    items = exchange_items(exchange({"x-api-key": "k"}, status=200, answer=ANSWER), SECRET)
    pseudo = f"api-{user_id(SECRET, 'k')}"
    assert [i.session_id for i in items] == [pseudo, pseudo]
    assert exchange_items(exchange({}, status=200, answer=ANSWER), SECRET) == []


def test_count_tokens_is_activity_only() -> None:
    headers = {"x-claude-code-session-id": SESSION}
    items = exchange_items(exchange(headers, path="/v1/messages/count_tokens", status=200,
                                    answer=Answer()), SECRET)  # fmt: skip
    assert items == [Activity(SESSION, 1000.0, None)]


def test_an_answer_cut_short_records_no_response_but_its_failure() -> None:
    headers = {"x-claude-code-session-id": SESSION}
    gone = exchange(headers, status=200, answer=ANSWER, failure="disconnected")
    assert [type(i) for i in exchange_items(gone, SECRET)] == [Activity]
    broken = exchange(headers, status=200, answer=ANSWER, failure="broken")
    assert [type(i) for i in exchange_items(broken, SECRET)] == [Activity, ApiError]


def test_a_response_is_keyed_like_its_transcript_line() -> None:
    headers = {"x-claude-code-session-id": SESSION, "x-claude-code-agent-id": "agent-1"}
    items = exchange_items(exchange(headers, status=200, answer=ANSWER,
                                    response_headers={"request-id": "req_1"}), SECRET)  # fmt: skip
    (line,) = [i for i in items if isinstance(i, ResponseLine)]
    assert line.sidechain is True
    assert (line.usage, line.context) == ((1, 2, 3, 4), 8)
