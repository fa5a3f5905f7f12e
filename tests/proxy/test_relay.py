"""The proxy's relay against a scripted loopback upstream: bytes, headers, failures, telemetry.

The proxy runs in-process on a real uvicorn (:mod:`tests.proxy.running`); clients are real HTTP
clients; the upstream (:mod:`tests.proxy.upstream`) answers scripted bytes, so every assertion
on what the client got is against exactly what upstream sent.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from contextd.events import Activity, ApiError
from contextd.identity import user_id
from contextd.ingest.transcripts import ResponseLine
from contextd.ledger import response_key, tool_key
from contextd.proxy.tap import UsageTap
from tests.e2e.fake_anthropic import Reply, Text, ToolUse, Usage
from tests.proxy.running import SECRET, RunningProxy, running_proxy
from tests.proxy.upstream import Gate, Script, Upstream, error, streamed, whole

KEY = "sk-ant-api03-proxy-test-key-0000000000000000"
SESSION = "5e550000-0000-4000-8000-000000000001"
TEXT = Reply((Text("Hello from upstream."),), Usage(input=7, cache_creation=1_100,
                                                     cache_read=20_003, output=29))  # fmt: skip
TOOL = Reply((Text("Let me look."), ToolUse("toolu_relay_1", "Read", {"path": "x"})),
             Usage(input=9, cache_creation=300, cache_read=21_000, output=41))  # fmt: skip


def ask(*, stream: bool = True, text: str = "hi") -> dict[str, Any]:
    return {"model": "claude-opus-5-5", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": text}]}  # fmt: skip


def headers(**extra: str) -> dict[str, str]:
    return {"x-api-key": KEY, "anthropic-version": "2023-06-01",
            "x-claude-code-session-id": SESSION, "user-agent": "claude-cli/2.1.330 (external, cli)",
            **extra}  # fmt: skip


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[RunningProxy]:
    with running_proxy(upstream.url) as running:
        yield running


def post(proxy: RunningProxy, body: object, path: str = "/v1/messages?beta=true",
         **extra: str) -> httpx2.Response:  # fmt: skip
    with proxy.client() as client:
        return client.post(path, content=json.dumps(body).encode(), headers=headers(**extra))


def test_a_streamed_text_answer_reaches_the_client_byte_for_byte(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    script = streamed(TEXT, "msg_relay_text", pieces=7, request_id="req_relay_text")
    upstream.add(script)
    response = post(proxy, ask())
    assert response.status_code == 200
    assert response.content == script.body
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["request-id"] == "req_relay_text"
    (seen,) = upstream.seen
    assert seen.path == "/v1/messages?beta=true"
    assert seen.body == json.dumps(ask()).encode()
    assert seen.header("x-api-key") == KEY  # the client's own credentials go upstream
    assert seen.header("accept-encoding") == "identity"
    assert seen.header("host") == upstream.url.removeprefix("http://")


def test_the_response_is_recorded_with_the_transcripts_dedup_key_and_the_keyed_user(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    upstream.add(streamed(TOOL, "msg_relay_tool", request_id="req_relay_tool"))
    assert post(proxy, ask()).status_code == 200
    ((items, counter),) = proxy.wait_received(1)
    assert counter == "proxy_responses"
    activity, response = items
    assert isinstance(activity, Activity)
    assert activity.session_id == SESSION
    assert activity.origin is not None
    assert activity.origin.user == user_id(SECRET, KEY)
    assert (activity.origin.version, activity.origin.entrypoint) == ("2.1.330", "cli")
    assert isinstance(response, ResponseLine)
    assert response.key == response_key("msg_relay_tool", "req_relay_tool")
    assert response.usage == (9, 41, 300, 21_000)  # input, output, cache_creation, cache_read
    assert response.context == 9 + 300 + 21_000
    assert response.model == "claude-opus-5-5"
    assert response.sidechain is False
    assert response.tool_keys == (tool_key("toolu_relay_1"),)


def test_a_sub_agents_request_is_recorded_off_the_main_chain(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    upstream.add(streamed(TEXT, "msg_relay_agent"))
    post(proxy, ask(), **{"x-claude-code-agent-id": "a1b2c3"})
    ((items, _),) = proxy.wait_received(1)
    (response,) = [i for i in items if isinstance(i, ResponseLine)]
    assert response.sidechain is True


def test_a_non_streamed_answer_is_relayed_and_recorded(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    script = whole(TOOL, "msg_relay_whole", request_id="req_relay_whole")
    upstream.add(script)
    response = post(proxy, ask(stream=False))
    assert response.content == script.body
    assert response.headers["content-length"] == str(len(script.body))
    ((items, _),) = proxy.wait_received(1)
    (line,) = [i for i in items if isinstance(i, ResponseLine)]
    assert line.key == response_key("msg_relay_whole", "req_relay_whole")
    assert line.usage == (9, 41, 300, 21_000)


def test_a_429_is_passed_on_unchanged_and_recorded_with_its_rate_limit_headers(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    limits = (("retry-after", "17"), ("anthropic-ratelimit-requests-remaining", "0"),
              ("anthropic-ratelimit-requests-reset", "2026-11-23T05:00:00Z"))  # fmt: skip
    script = error(429, "rate_limit_error", request_id="req_429", extra=limits)
    upstream.add(script)
    response = post(proxy, ask())
    assert response.status_code == 429
    assert response.content == script.body
    assert response.headers["retry-after"] == "17"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    ((items, counter),) = proxy.wait_received(1)
    assert counter == "proxy_api_errors"
    (failure,) = [i for i in items if isinstance(i, ApiError)]
    assert failure == ApiError(
        SESSION, failure.at, 429, "rate_limit_error", "17",
        (("anthropic-ratelimit-requests-remaining", "0"),
         ("anthropic-ratelimit-requests-reset", "2026-11-23T05:00:00Z")),
    )  # fmt: skip
    assert not any(isinstance(i, ResponseLine) for i in items)


def test_an_error_event_inside_a_stream_is_relayed_and_recorded(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    overloaded = (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                  b'"message":"scripted"}}\n\n')  # fmt: skip
    script = Script(200, (("content-type", "text/event-stream"),), (overloaded,))
    upstream.add(script)
    response = post(proxy, ask())
    assert (response.status_code, response.content) == (200, overloaded)
    ((items, _),) = proxy.wait_received(1)
    (failure,) = [i for i in items if isinstance(i, ApiError)]
    assert (failure.status, failure.error_type) == (200, "overloaded_error")


def test_a_500_is_passed_on_unchanged(upstream: Upstream, proxy: RunningProxy) -> None:
    script = error(529, "overloaded_error")
    upstream.add(script)
    response = post(proxy, ask())
    assert (response.status_code, response.content) == (529, script.body)


def test_each_chunk_reaches_the_client_before_upstream_sends_the_next(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    first = b'event: ping\ndata: {"type":"ping"}\n\n'
    gate = Gate()
    upstream.add(Script(chunks=(first, gate, b"event: message_stop\ndata: {}\n\n")))
    with (
        proxy.client() as client,
        client.stream(
            "POST", "/v1/messages", content=json.dumps(ask()).encode(), headers=headers()
        ) as response,
    ):
        chunks = response.iter_raw()
        got = b""
        while len(got) < len(first):  # arrives while upstream is still held at the gate
            got += next(chunks)
        assert got == first
        gate.open()
        assert got + b"".join(chunks) == first + b"event: message_stop\ndata: {}\n\n"


def test_a_client_that_disconnects_cancels_the_upstream_request(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    first = b'event: ping\ndata: {"type":"ping"}\n\n'
    upstream.add(Script(chunks=(first, Gate(), b"never sent")))
    body = json.dumps(ask()).encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
                    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (proxy.port, len(body), body))  # fmt: skip
        received = b""
        while first not in received:
            received += raw.recv(65536)
    # The client is gone; the proxy must close its upstream connection in turn.
    assert upstream.closed_event.wait(10)
    assert upstream.closed == ["/v1/messages"]


def test_a_client_that_disconnects_before_the_answer_starts_cancels_it_too(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    held = Gate()
    upstream.add(Script(chunks=(b"x",), before=held))
    body = json.dumps(ask()).encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
                    b"content-length: %d\r\n\r\n%s" % (proxy.port, len(body), body))  # fmt: skip
        while not upstream.seen:
            upstream.closed_event.wait(0.01)
    assert upstream.closed_event.wait(10)


def test_an_oversized_request_gets_413_naming_the_body_and_is_not_forwarded(
    upstream: Upstream,
) -> None:
    with running_proxy(upstream.url, max_body=1000) as proxy:
        big = ask(text="x" * 2000)
        response = post(proxy, big)
        assert response.status_code == 413
        assert response.json() == {"error": "request body over 1000 bytes", "field": "body"}

        def chunked() -> Iterator[bytes]:  # no content-length: counted as it arrives
            yield json.dumps(big).encode()

        with proxy.client() as client:
            response = client.post("/v1/messages", content=chunked(), headers=headers())
        assert response.status_code == 413
        assert response.json()["field"] == "body"
    assert upstream.seen == []


def test_an_upstream_that_does_not_answer_in_time_gets_504(upstream: Upstream) -> None:
    upstream.add(Script(chunks=(b"late",), before=Gate()))
    with running_proxy(upstream.url, read_timeout=0.3) as proxy:
        response = post(proxy, ask())
        assert response.status_code == 504
        assert response.json() == {"error": "the API did not answer in time", "field": "upstream"}
        ((items, _),) = proxy.wait_received(1)
    (failure,) = [i for i in items if isinstance(i, ApiError)]
    assert (failure.status, failure.error_type) == (None, "timeout")


def test_an_unreachable_upstream_gets_502() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with running_proxy(f"http://127.0.0.1:{port}") as proxy:
        response = post(proxy, ask())
    assert response.status_code == 502
    assert response.json()["field"] == "upstream"


def test_an_answer_that_breaks_off_never_looks_complete_to_the_client(
    upstream: Upstream,
) -> None:
    upstream.add(Script(chunks=(b'event: ping\ndata: {"type":"ping"}\n\n', Gate())))
    with running_proxy(upstream.url, read_timeout=0.3) as proxy, proxy.client() as client:
        with pytest.raises(httpx2.RemoteProtocolError):  # cut before the terminating chunk
            client.post("/v1/messages", content=json.dumps(ask()).encode(), headers=headers())
        ((items, _),) = proxy.wait_received(1)
    (failure,) = [i for i in items if isinstance(i, ApiError)]
    assert (failure.status, failure.error_type) == (None, "timeout")
    assert not any(isinstance(i, ResponseLine) for i in items)


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [({"host": "evil.example.com"}, (421, "Host")),
     ({"origin": "http://evil.example.com"}, (403, "Origin"))],
)  # fmt: skip
def test_a_foreign_host_or_origin_is_refused_before_anything_is_forwarded(
    upstream: Upstream, proxy: RunningProxy, extra: dict[str, str], refusal: tuple[int, str]
) -> None:
    response = post(proxy, ask(), **extra)
    assert (response.status_code, response.json()["field"]) == refusal
    assert upstream.seen == []


def test_hop_by_hop_headers_stay_on_their_hop_and_other_paths_pass_through(
    upstream: Upstream, proxy: RunningProxy
) -> None:
    listing = b'{"data":[{"id":"claude-opus-5-5"}]}'
    upstream.add(Script(200, (("content-type", "application/json"), ("x-upstream", "1")),
                        (listing,), length=True))  # fmt: skip
    with proxy.client() as client:
        response = client.get("/v1/models?limit=1", headers={
            "x-api-key": KEY, "connection": "keep-alive, x-drop-me", "x-drop-me": "1",
            "te": "trailers", "accept-encoding": "gzip, br"})  # fmt: skip
    assert (response.status_code, response.content) == (200, listing)
    assert response.headers["x-upstream"] == "1"
    (seen,) = upstream.seen
    assert (seen.method, seen.path) == ("GET", "/v1/models?limit=1")
    names = {name for name, _ in seen.headers}
    assert not names & {"te", "x-drop-me"}
    assert seen.header("accept-encoding") == "identity"
    assert proxy.wait_received(1)[0][1] == "proxy_requests"  # activity only, no response


class BrokenTap(UsageTap):
    """A tap that fails on the second chunk (an internal error in the middle of a stream)."""

    def feed(self, chunk: bytes) -> None:
        if getattr(self, "fed", False):
            raise RuntimeError("tap failure injected by the test")
        self.fed = True
        super().feed(chunk)


def test_a_failing_tap_drops_the_telemetry_and_never_the_stream(upstream: Upstream) -> None:
    script = streamed(TOOL, "msg_relay_broken_tap", pieces=9)
    upstream.add(script)
    with running_proxy(upstream.url, tap=BrokenTap) as proxy:
        response = post(proxy, ask())
        assert (response.status_code, response.content) == (200, script.body)
        ((items, counter),) = proxy.wait_received(1)
        assert proxy.proxy.dropped == 1
    # Activity (the session was active) but no response figures from a half-read stream.
    assert [type(i) for i in items] == [Activity]
    assert counter == "proxy_requests"


def test_the_key_appears_in_no_telemetry(upstream: Upstream, proxy: RunningProxy) -> None:
    upstream.add(streamed(TEXT, "msg_relay_key"), error(429, "rate_limit_error"))
    post(proxy, ask())
    post(proxy, ask())
    text = repr(proxy.wait_received(2))
    assert KEY not in text
    assert hashlib.sha256(KEY.encode()).hexdigest()[:16] not in text
