"""Line parsing rules, one behaviour per test; each kind of bad line says what happens to it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from contextd.events import Activity, Compaction, Response
from contextd.ingest.transcripts import (
    ParseStats,
    TranscriptFile,
    TranscriptParser,
    context_of,
    parse_timestamp,
    usage_counts,
)
from contextd.ledger import MemoryLedger, ResponseLedger
from contextd.models import TokenCounts

SID = "4d5611e5-241a-462a-8d15-5122611a9569"
MAIN = TranscriptFile.from_path(f"/c/projects/-p/{SID}.jsonl")
SUB = TranscriptFile.from_path(f"/c/projects/-p/{SID}/subagents/agent-a2898e3.jsonl")


def parser() -> TranscriptParser:
    return TranscriptParser(ResponseLedger(MemoryLedger()))


def assistant(msg_id: str = "msg_1", req: str = "req_1", output: int = 10, *,
              model: str = "claude-opus-4-6", sidechain: bool = False,
              content: list[dict[str, Any]] | None = None, **usage: Any) -> bytes:  # fmt: skip
    u = {"input_tokens": 3, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
         "output_tokens": output, **usage}  # fmt: skip
    return orjson.dumps({
        "type": "assistant", "isSidechain": sidechain, "sessionId": SID, "cwd": "/home/u/proj",
        "timestamp": "2026-02-12T16:02:27.718Z", "requestId": req, "uuid": "u-" + msg_id,
        "message": {"id": msg_id, "model": model, "role": "assistant", "usage": u,
                    "content": content or [{"type": "text", "text": "hi"}]},
    })  # fmt: skip


def test_file_paths_name_the_session_and_mark_subagent_files() -> None:
    assert (MAIN.session_hint, MAIN.sidechain) == (SID, False)
    assert (SUB.session_hint, SUB.sidechain) == (SID, True)
    flat = TranscriptFile.from_path("/c/projects/-p/agent-a1b2c3d.jsonl")
    assert (flat.session_hint, flat.sidechain) == (None, True)


def test_an_assistant_line_becomes_a_main_chain_response() -> None:
    (obs,) = parser().parse(assistant(), MAIN)
    assert isinstance(obs, Response)
    assert obs.main_chain
    assert obs.context_tokens == 1103
    assert obs.usage == TokenCounts(3, 10, 100, 1000)
    assert obs.at == parse_timestamp("2026-02-12T16:02:27.718Z")
    assert obs.origin is not None
    assert obs.origin.cwd == "/home/u/proj"


def test_later_lines_of_a_streamed_response_add_only_output_growth() -> None:
    p = parser()
    p.parse(assistant(output=10), MAIN)
    assert isinstance(p.parse(assistant(output=10), MAIN)[0], Activity)
    (grown,) = p.parse(assistant(output=299), MAIN)
    assert isinstance(grown, Response)
    assert grown.usage == TokenCounts(output=289)
    assert not grown.new_response
    assert p.stats.responses == 1


def test_sidechain_lines_and_subagent_files_are_not_main_chain() -> None:
    p = parser()
    (flagged,) = p.parse(assistant("m1", sidechain=True), MAIN)
    (in_file,) = p.parse(assistant("m2"), SUB)
    assert isinstance(flagged, Response)
    assert isinstance(in_file, Response)
    assert not flagged.main_chain
    assert not in_file.main_chain
    assert in_file.session_id == SID


def test_progress_lines_embedding_usage_are_activity_only() -> None:
    p = parser()
    line = orjson.dumps(
        {
            "type": "progress",
            "sessionId": SID,
            "timestamp": "2026-02-12T16:02:27Z",
            "data": {"type": "agent_progress", "message": orjson.loads(assistant())},
        }
    )
    (obs,) = p.feed_block(line + b"\n", MAIN)
    assert isinstance(obs, Activity)
    assert p.stats.malformed == 0
    assert p.stats.responses == 0


def test_a_block_without_usage_is_dated_by_its_first_and_last_timed_lines() -> None:
    p = parser()

    def user(ts: str) -> bytes:
        return orjson.dumps({"type": "user", "sessionId": SID, "timestamp": ts, "cwd": "/p"})

    snapshot = orjson.dumps({"type": "file-history-snapshot", "messageId": "m"})
    lines = [snapshot, user("2026-02-12T10:00:00Z"), user("2026-02-12T11:00:00Z"),
             user("2026-02-12T12:00:00Z"), snapshot]  # fmt: skip
    first, last = p.feed_block(b"\n".join(lines) + b"\n", MAIN)
    assert first.at == parse_timestamp("2026-02-12T10:00:00Z")  # the snapshot has no time
    assert last.at == parse_timestamp("2026-02-12T12:00:00Z")
    assert p.stats.lines == 5


@pytest.mark.parametrize(
    ("raw", "blank", "malformed"),
    [(b"", 1, 0), (b"  \t", 1, 0), (b'{"type": "user", "message": {"content": "half', 0, 1),
     (b"not json at all", 0, 1), (b"[1, 2]", 0, 1)],
)  # fmt: skip
def test_blank_and_misshapen_lines_are_counted_without_parsing(
    raw: bytes, blank: int, malformed: int
) -> None:
    p = parser()
    assert p.feed_block(raw + b"\n", MAIN) == []
    assert (p.stats.blank, p.stats.malformed) == (blank, malformed)


def test_synthetic_and_api_error_lines_are_activity_only() -> None:
    p = parser()
    (synthetic,) = p.parse(assistant(model="<synthetic>"), MAIN)
    entry = orjson.loads(assistant("m9"))
    entry["isApiErrorMessage"] = True
    (error,) = p.parse(orjson.dumps(entry), MAIN)
    assert isinstance(synthetic, Activity)
    assert isinstance(error, Activity)


def test_tool_calls_are_counted_once_per_tool_use_id() -> None:
    p = parser()
    bash = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
    read = {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}}
    (first,) = p.parse(assistant(content=[bash]), MAIN)
    (repeat,) = p.parse(assistant(content=[bash]), MAIN)
    (next_block,) = p.parse(assistant(content=[read]), MAIN)  # same response, next block
    assert isinstance(first, Response)
    assert first.tool_calls == 1
    assert isinstance(repeat, Activity)  # a copied line adds nothing
    assert isinstance(next_block, Response)
    assert (next_block.tool_calls, next_block.usage, next_block.new_response) == (
        1, TokenCounts(), False,
    )  # fmt: skip


def test_compact_boundary_becomes_a_checkpoint_once_per_uuid() -> None:
    p = parser()
    line = orjson.dumps({
        "type": "system", "subtype": "compact_boundary", "sessionId": SID, "uuid": "b-1",
        "timestamp": "2026-02-12T20:30:28.504Z", "parentUuid": None,
        "compactMetadata": {"trigger": "manual", "preTokens": 214864, "postTokens": 8156},
    })  # fmt: skip
    (obs,) = p.parse(line, MAIN)
    assert isinstance(obs, Compaction)
    assert (obs.trigger, obs.pre_tokens, obs.post_tokens) == ("manual", 214864, 8156)
    assert isinstance(p.parse(line, MAIN)[0], Activity)  # a forked copy of the same boundary


def test_iterations_refine_context_to_the_last_message_iteration() -> None:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 500,
             "output_tokens": 5, "iterations": [
                 {"type": "message", "input_tokens": 7, "cache_read_input_tokens": 400},
                 {"type": "compaction", "input_tokens": 99999}]}  # fmt: skip
    assert context_of(usage, usage_counts(usage)) == 407


def test_nested_cache_creation_is_used_when_the_flat_count_is_zero() -> None:
    counts = usage_counts({"input_tokens": 1, "cache_creation_input_tokens": 0,
                           "cache_creation": {"ephemeral_5m_input_tokens": 20,
                                              "ephemeral_1h_input_tokens": 30}})  # fmt: skip
    assert counts.cache_creation == 50


def test_missing_or_invalid_usage_counts_are_zero() -> None:
    counts = usage_counts(
        {"input_tokens": "12", "output_tokens": True, "cache_read_input_tokens": -4}
    )
    assert counts == TokenCounts()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"type": "assistant", "message": {"id": ', "invalid_json"),
        (b"\xff\xfe{not utf-8}", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
    ],
)
def test_malformed_lines_are_counted_by_reason_and_skipped(raw: bytes, reason: str) -> None:
    p = parser()
    assert p.parse(raw, MAIN) == []
    assert p.stats.malformed == 1
    assert p.stats.by_reason == {reason: 1}
    (obs,) = p.parse(assistant(), MAIN)  # the next good line is processed
    assert isinstance(obs, Response)


def test_assistant_line_with_a_non_object_message_is_malformed_but_shows_activity() -> None:
    p = parser()
    line = orjson.dumps({"type": "assistant", "sessionId": SID, "message": "oops",
                         "timestamp": "2026-02-12T16:02:27.718Z"})  # fmt: skip
    (obs,) = p.parse(line, MAIN)
    assert isinstance(obs, Activity)
    assert p.stats.by_reason == {"bad_message": 1}


def test_blank_lines_and_lines_without_time_are_skipped_without_error() -> None:
    p = parser()
    assert p.parse(b"   ", MAIN) == []
    assert p.parse(b'{"type":"summary","summary":"x","leafUuid":"u"}', MAIN) == []
    assert p.stats == ParseStats(lines=2, blank=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-02-12T16:02:27.718Z", 1770912147.718),
     ("2026-02-12T17:02:27.718+01:00", 1770912147.718),
     ("yesterday", None), (12345, None), (None, None)],
)  # fmt: skip
def test_timestamps_parse_iso_8601_with_zone(text: object, expected: float | None) -> None:
    got = parse_timestamp(text)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("bad", "blank", "malformed"),
    [(b"", 1, 0), (b'{"type": "user", "message": {"content": "torn', 0, 1),
     (b'{"type":"assistant","note":"caf\xe9","message":{"usage":{}}}', 0, 1),
     (b'{"type":"user","sessionId":"x","note":"a\x00b"}', 0, 1), (b"garbage", 0, 1)],
)  # fmt: skip
def test_a_bad_line_inside_a_block_is_counted_and_the_rest_still_counts(
    bad: bytes, blank: int, malformed: int
) -> None:
    p = parser()
    user = orjson.dumps({"type": "user", "sessionId": SID, "timestamp": "2026-02-12T10:00:00Z"})
    block = b"\n".join([user, assistant("m1"), bad, assistant("m2"), user]) + b"\n"
    found = p.feed_block(block, MAIN)
    assert [o.usage.output for o in found if isinstance(o, Response)] == [10, 10]
    assert (p.stats.lines, p.stats.blank, p.stats.malformed) == (5, blank, malformed)


def test_a_block_of_good_lines_counts_nothing_as_malformed() -> None:
    p = parser()
    block = b"\n".join(assistant(f"m{i}", "日本語 →", output=i) for i in range(50)) + b"\n"
    found = p.feed_block(block, MAIN)
    assert len([o for o in found if isinstance(o, Response)]) == 50
    assert (p.stats.lines, p.stats.malformed, p.stats.blank) == (50, 0, 0)


def test_invalid_utf8_in_a_line_that_is_decoded_is_malformed() -> None:
    p = parser()
    broken = assistant("m1").replace(b'"text":"hi"', b'"text":"h\xe9"')
    assert p.feed_block(broken + b"\n", MAIN) == []
    assert p.stats.by_reason == {"invalid_json": 1}
