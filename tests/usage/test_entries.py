"""Which transcript lines count, and how duplicates are resolved (ccusage 20.0.24's rules)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contextd.usage.entries import (
    Deduplicator,
    DedupMode,
    Location,
    UsageEntry,
    iso_ms,
    locate,
    parse_entry,
    timestamp_ms,
)
from tests.usage.lines import assistant, dump

HERE = Location("-home-u-proj", "S1")


def parsed(line: dict[str, object] | bytes) -> UsageEntry | None:
    return parse_entry(line if isinstance(line, bytes) else dump(line), HERE)


def test_an_assistant_line_becomes_an_entry_of_the_files_session() -> None:
    e = parsed(assistant(out=7, inp=3, cc=100, cr=1000, session="OTHER"))
    assert e is not None
    assert (e.session_id, e.project_dir, e.line_session) == ("S1", "-home-u-proj", "OTHER")
    assert (e.input, e.output, e.cache_creation, e.cache_read, e.total) == (3, 7, 100, 1000, 1110)
    assert e.at_ms == timestamp_ms("2026-03-01T10:00:00.000Z")
    assert e.cwd == "/home/u/proj"
    assert e.model == "claude-opus-4-6"


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("P/S.jsonl", ("P", "S")),
        ("P/S/subagents/agent-a1.jsonl", ("P", "S")),
        ("P/S/subagents/agent-acompact-1.jsonl", ("P", "S")),
        ("P/S/x.jsonl", ("P", "S")),
        ("P/S/subagents/workflows/wf_1/agent-x.jsonl", ("P/S/subagents/workflows", "wf_1")),
        ("P/agent-x.jsonl", ("P", "agent-x")),
        ("loose.jsonl", None),
    ],
)
def test_the_session_comes_from_the_path(relative: str, expected: tuple[str, str] | None) -> None:
    found = locate(relative)
    assert (found and (found.project_dir, found.session_id)) == expected


def test_nested_cache_creation_wins_over_the_flat_count() -> None:
    e = parsed(
        assistant(cc=100, nested={"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 40})
    )
    assert e is not None
    assert (e.cache_write_5m, e.cache_write_1h, e.cache_creation) == (30, 40, 70)
    empty = parsed(assistant(cc=100, nested={}))
    assert empty is not None
    assert empty.cache_creation == 0


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"assistant","message":{"usage": {"input_tokens":1,"output_tokens":1}}}',
        dump(assistant())[:-5],  # torn
        b"\xef\xbb\xbf" + dump(assistant()),  # BOM
        dump(assistant(version="abc")),
        dump(assistant(version="2.1")),
        dump(assistant(session="")),
        dump(assistant(req="")),
        dump(assistant(mid="")),
        dump(assistant(model="")),
        dump(assistant(timestamp="yesterday")),
        dump(assistant()).replace(b'"requestId":"req_1"', b'"requestId":null'),
        dump(assistant()).replace(b'"model":"claude-opus-4-6"', b'"model":null'),
        dump(assistant()).replace(b'"output_tokens":10', b'"output_tokens":10.0'),
        dump(assistant()).replace(b',"output_tokens":10', b""),
        dump(assistant(extra_field={"id": None})),  # "id":null anywhere rejects the line
        dump(
            {
                "type": "progress",
                "timestamp": "2026-03-01T10:00:00Z",
                "data": {"message": assistant()},
            }
        ),
    ],
)
def test_lines_ccusage_skips_are_skipped(line: bytes) -> None:
    assert parsed(line) is None


def test_type_is_not_checked_and_crlf_is_fine() -> None:
    user = parsed(assistant(type="user"))
    assert user is not None
    assert user.output == 10
    assert parsed(dump(assistant()) + b"\r") is not None


def test_synthetic_lines_count_without_a_model_and_cost_usd_is_kept_exactly() -> None:
    synthetic = parsed(assistant(model="<synthetic>", out=0, inp=0, cc=0, cr=0))
    assert synthetic is not None
    assert synthetic.model is None
    assert synthetic.model_name is None
    paid = parsed(assistant(costUSD=0.1234567))
    assert paid is not None
    assert paid.cost_usd == Decimal("0.1234567")


def test_fast_lines_are_named_with_a_fast_suffix() -> None:
    line = assistant()
    line["message"]["usage"]["speed"] = "fast"
    e = parsed(line)
    assert e is not None
    assert e.fast
    assert e.model_name == "claude-opus-4-6-fast"


def test_timestamps_with_offsets_are_converted_to_utc() -> None:
    assert timestamp_ms("2026-03-01T12:00:00.250+02:00") == timestamp_ms("2026-03-01T10:00:00.250Z")
    assert iso_ms(timestamp_ms("2026-03-01T12:00:00.250+02:00") or 0) == "2026-03-01T10:00:00.250Z"
    assert timestamp_ms(None) is None


def _kept(*lines: dict[str, object], mode: DedupMode = DedupMode.SESSION) -> list[UsageEntry]:
    dedup = Deduplicator(mode)
    for line in lines:
        e = parsed(line)
        assert e is not None
        dedup.add(e)
    return sorted(dedup.entries(), key=lambda e: (e.at_ms, e.output))


def test_a_streamed_response_counts_once_with_its_largest_total() -> None:
    kept = _kept(assistant(out=10), assistant(out=299), assistant(out=50))
    assert [e.output for e in kept] == [299]


def test_on_a_tie_the_first_line_is_kept() -> None:
    kept = _kept(
        assistant(out=5, ts="2026-03-01T10:00:00Z"), assistant(out=5, ts="2026-03-01T10:00:09Z")
    )
    assert [iso_ms(e.at_ms) for e in kept] == ["2026-03-01T10:00:00.000Z"]


def test_the_larger_total_wins_even_with_a_smaller_output() -> None:
    kept = _kept(assistant(out=300, cr=1000), assistant(out=10, cr=2000))
    assert [(e.output, e.cache_read) for e in kept] == [(10, 2000)]


def test_a_main_chain_line_beats_a_sidechain_one_whatever_the_size() -> None:
    kept = _kept(assistant(out=500, sidechain=True), assistant(out=1))
    assert [(e.output, e.sidechain) for e in kept] == [(1, False)]
    kept = _kept(assistant(out=1), assistant(out=500, sidechain=True))
    assert [(e.output, e.sidechain) for e in kept] == [(1, False)]


def test_keys_are_global_with_a_request_id_and_per_session_without() -> None:
    assert len(_kept(assistant(session="A"), assistant(session="B"))) == 1
    assert len(_kept(assistant(req=None, session="A"), assistant(req=None, session="B"))) == 2
    assert len(_kept(assistant(req=None), assistant())) == 2  # msg_1 and msg_1+req_1 differ
    assert len(_kept(assistant(mid=None), assistant(mid=None))) == 2  # no id: never merged


def test_the_daily_loader_keys_id_only_lines_by_timestamp_too() -> None:
    lines = (
        assistant(req=None, ts="2026-03-01T10:00:00Z"),
        assistant(req=None, ts="2026-03-01T10:05:00Z"),
    )
    assert len(_kept(*lines)) == 1
    assert len(_kept(*lines, mode=DedupMode.DAILY)) == 2


def test_sidechain_replays_are_dropped_at_the_same_timestamp_and_daily_at_any() -> None:
    same = (assistant(out=10), assistant(req="req_2", out=50, sidechain=True))
    assert len(_kept(*same)) == 1
    later = (
        assistant(out=10),
        assistant(req="req_2", out=50, sidechain=True, ts="2026-03-01T10:01:00Z"),
    )
    assert len(_kept(*later)) == 2
    assert len(_kept(*later, mode=DedupMode.DAILY)) == 1
