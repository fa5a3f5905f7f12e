"""The usage tap on its own: any chunking of a stream gives the same facts, read on the way."""

from __future__ import annotations

import gzip
import itertools
import json
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.models import TokenCounts
from contextd.proxy.tap import Answer, UsageTap
from tests.e2e.fake_anthropic import Reply, Text, ToolUse, Usage, message, sse

USAGE = Usage(input=3, cache_creation=2_000, cache_read=50_001, output=77)
REPLY = Reply((Text("Reading."), ToolUse("toolu_tap_1", "Read", {"file": "a"}),
               ToolUse("toolu_tap_2", "Grep", {})), USAGE)  # fmt: skip
STREAM = sse(REPLY, "msg_tap", "claude-opus-5-5")
EXPECTED = Answer(
    message_id="msg_tap",
    model="claude-opus-5-5",
    usage=TokenCounts(input=3, output=77, cache_creation=2_000, cache_read=50_001),
    context_tokens=52_004,
    tool_use_ids=("toolu_tap_1", "toolu_tap_2"),
    complete=True,
)


def tapped(chunks: list[bytes], content_type: str = "text/event-stream") -> Answer:
    tap = UsageTap(content_type)
    for chunk in chunks:
        tap.feed(chunk)
    return tap.answer()


def test_a_stream_in_one_piece_gives_its_usage_tools_and_ids() -> None:
    assert tapped([STREAM]) == EXPECTED


def test_a_stream_fed_byte_by_byte_gives_the_same() -> None:
    assert tapped([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert tapped([STREAM[a:b] for a, b in itertools.pairwise(bounds)]) == EXPECTED


def test_crlf_line_ends_are_read_too() -> None:
    assert tapped([STREAM.replace(b"\n", b"\r\n")]) == EXPECTED


def test_message_delta_counts_replace_those_of_message_start() -> None:
    start = {"type": "message_start", "message": {"id": "msg_d", "model": "m", "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}}  # fmt: skip
    delta = {
        "type": "message_delta",
        "delta": {},
        "usage": {"output_tokens": 90, "input_tokens": 12, "cache_read_input_tokens": None},
    }
    stream = b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in (start, delta)
    )
    answer = tapped([stream])
    assert answer.usage == TokenCounts(input=12, output=90, cache_read=5)
    assert answer.context_tokens == 17
    assert answer.complete is False  # no message_stop


def test_a_huge_text_delta_passes_unbuffered_and_the_usage_is_still_read() -> None:
    big = Reply((Text("x" * 3_000_000),), USAGE)
    stream = sse(big, "msg_big", "m")
    tap = UsageTap("text/event-stream", max_event=4096)
    for i in range(0, len(stream), 1000):
        tap.feed(stream[i : i + 1000])
        assert len(tap._line) <= 4096  # never more than one bounded line held
    answer = tap.answer()
    assert answer.usage == TokenCounts(3, 77, 2_000, 50_001)
    assert tap.overflow is False


def test_an_event_the_tap_reads_over_its_cap_is_skipped_not_held() -> None:
    huge_start = {"type": "message_start",
                  "message": {"id": "msg_h", "model": "m", "pad": "y" * 10_000,
                              "usage": {"input_tokens": 1}}}  # fmt: skip
    stream = f"event: message_start\ndata: {json.dumps(huge_start)}\n\n".encode()
    tap = UsageTap("text/event-stream", max_event=1024)
    for i in range(0, len(stream), 100):
        tap.feed(stream[i : i + 100])
    assert tap.answer().usage is None
    assert tap.overflow is True


def test_an_error_event_gives_its_type() -> None:
    stream = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    assert tapped([stream]).error_type == "overloaded_error"


def test_a_json_message_gives_its_usage_and_tools() -> None:
    body = json.dumps(message(REPLY, "msg_tap", "claude-opus-5-5")).encode()
    assert tapped([body[:50], body[50:]], "application/json") == EXPECTED


def test_a_json_error_gives_its_type_and_no_usage() -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    assert tapped([body], "application/json") == Answer(error_type="rate_limit_error")


def test_a_json_body_over_its_cap_is_dropped_not_held() -> None:
    body = json.dumps(message(REPLY, "msg_tap", "m")).encode()
    tap = UsageTap("application/json", max_json=100)
    tap.feed(body)
    assert tap.answer() == Answer()
    assert tap.overflow is True


def test_a_gzip_answer_is_read_from_a_decoded_copy() -> None:
    packed = gzip.compress(STREAM)
    tap = UsageTap("text/event-stream", "gzip")
    for i in range(0, len(packed), 64):
        tap.feed(packed[i : i + 64])
    assert tap.answer() == EXPECTED
    deflated = zlib.compress(json.dumps(message(REPLY, "msg_tap", "claude-opus-5-5")).encode())
    assert tapped_encoded(deflated, "application/json", "deflate") == EXPECTED


def tapped_encoded(body: bytes, content_type: str, encoding: str) -> Answer:
    tap = UsageTap(content_type, encoding)
    tap.feed(body)
    return tap.answer()


def test_an_encoding_it_cannot_decode_leaves_it_blind() -> None:
    assert tapped_encoded(b"\x00\x01", "text/event-stream", "br") == Answer()


def test_garbage_gives_nothing_and_raises_nothing() -> None:
    assert tapped([b"event: message_start\ndata: {not json\n\n", b"\xff\xfe\n\n"]) == Answer()
    assert tapped([b"[1, 2]"], "application/json") == Answer()
    assert tapped([b'{"type":"completion"}'], "application/json") == Answer()
