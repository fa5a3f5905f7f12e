"""The fake Anthropic API the end-to-end test scripts: its wire forms, on their own.

The streamed form is checked by folding the events back into a message the way a Messages API
client does; the paths the CLI was not seen using (``stream: false``, ``count_tokens``), the
refused ``CONNECT`` and a request no rule answers are checked over real HTTP.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.fake_anthropic import FakeAnthropic, Reply, Rule, Text, ToolUse, Usage

USAGE = Usage(input=5, cache_creation=700, cache_read=9_000, output=33)
REPLY = Reply((Text("Looking."), ToolUse("toolu_x", "mcp__srv__tool", {"detail": "full"})), USAGE)


def _asks(marker: str) -> Any:
    return lambda request: marker in request.last_user_text()


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    rules = [Rule("tool", _asks("use the tool"), REPLY),
             Rule("hello", _asks("hello"), Reply((Text("Hi."),), USAGE), once=False)]  # fmt: skip
    with FakeAnthropic(rules) as server:
        yield server


def _post(fake: FakeAnthropic, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    host, port = fake.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


def _ask(text: str, *, stream: bool) -> dict[str, Any]:
    content = [{"type": "text", "text": text}]
    return {"model": "m", "stream": stream, "max_tokens": 10,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip


def _fold(stream: bytes) -> dict[str, Any]:
    """The message an SSE stream of the Messages API describes."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    names = []
    for chunk in stream.decode().split("\n\n"):
        if not chunk:
            continue
        name_line, data_line = chunk.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        names.append(name)
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(data["content_block"])
        elif name == "content_block_delta":
            delta, block = data["delta"], message["content"][data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **data["usage"]}
    for index, text in partial.items():
        message["content"][index]["input"] = json.loads(text)
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    return message


def test_a_streamed_reply_folds_into_the_scripted_message_and_usage(fake: FakeAnthropic) -> None:
    status, kind, body = _post(fake, "/v1/messages?beta=true", _ask("use the tool", stream=True))
    assert (status, kind) == (200, "text/event-stream")
    message = _fold(body)
    assert message["content"] == [
        {"type": "text", "text": "Looking."},
        {
            "type": "tool_use",
            "id": "toolu_x",
            "name": "mcp__srv__tool",
            "input": {"detail": "full"},
        },
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 5, "cache_creation_input_tokens": 700,
                                "cache_read_input_tokens": 9_000, "output_tokens": 33}  # fmt: skip
    assert USAGE.context == 9_705
    assert fake.answered_by() == ["tool"]
    assert fake.requests[0].headers["content-type"] == "application/json"


def test_a_once_rule_answers_once_and_an_unmatched_request_gets_500(fake: FakeAnthropic) -> None:
    assert _post(fake, "/v1/messages", _ask("use the tool", stream=True))[0] == 200
    assert _post(fake, "/v1/messages", _ask("use the tool", stream=True))[0] == 500
    assert [r.last_user_text() for r in fake.unanswered] == ["use the tool"]
    assert fake.answered_by() == ["tool"]


def test_non_streamed_requests_and_count_tokens_are_answered(fake: FakeAnthropic) -> None:
    for _ in range(2):  # "hello" may answer again
        status, kind, body = _post(fake, "/v1/messages", _ask("hello", stream=False))
        assert (status, kind) == (200, "application/json")
        message = json.loads(body)
        assert (message["content"], message["stop_reason"]) == (
            [{"type": "text", "text": "Hi."}], "end_turn")  # fmt: skip
        assert message["usage"]["cache_read_input_tokens"] == 9_000
    status, _, body = _post(fake, "/v1/messages/count_tokens", _ask("hello", stream=False))
    assert status == 200
    assert json.loads(body)["input_tokens"] > 0
    assert fake.answered_by() == ["hello", "hello"]


def test_connect_through_the_fake_as_a_proxy_is_refused_and_recorded(fake: FakeAnthropic) -> None:
    host, port = fake.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.set_tunnel("api.anthropic.com", 443)
    with pytest.raises(OSError, match="403"):
        conn.connect()
    conn.close()
    assert fake.refused == ["api.anthropic.com:443"]
