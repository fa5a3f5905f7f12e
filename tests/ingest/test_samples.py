"""Acceptance on the real Claude Code transcripts in shared/samples.

Derivation of the expected figures (done independently below with the stdlib ``json`` module,
one explicit loop per rule, and anchored by the literal values it yields today):

* Responses are the top-level ``"type": "assistant"`` lines (``progress`` lines, which embed
  copies of sub-agent messages, are never read), grouped by ``(message.id, requestId)``. Input
  and cache counts are equal on every line of a group (asserted), output is the group's maximum.
  Main file: 254 lines → 139 groups; ``agent-a2898e3``: 12 groups; ``agent-acompact-e1f845``: 1.
* Session totals = the sum over the main file's groups plus both sub-agent files' groups (same
  ``sessionId``): input 177+53+3 = 233, cache_creation 479,537+71,257+8,681 = 559,475,
  cache_read 11,618,567+604,156+164,830 = 12,387,553, output 28,755+136+8 = 28,899.
* Context = input + cache_creation + cache_read of the main file's last assistant line:
  1 + 7,330 + 98,729 = 106,060 (sub-agent files never set context).
* Checkpoints: one ``compact_boundary`` (auto, preTokens 170,251, no postTokens); tokens saved =
  170,251 - context of the first main-chain response after it (36,081) = 134,170.
* ``short.jsonl``: one response over 5 lines: context 3 + 13,835 + 11,515 = 25,353, output 13.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contextd.ingest.discovery import transcript_files
from contextd.ingest.scanner import TranscriptIngestor
from contextd.ingest.transcripts import parse_timestamp
from contextd.models import TokenCounts
from contextd.store import Store
from tests.conftest import MAIN_SESSION, SHORT_SESSION

NOW = 1_800_000_000.0


def _entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _groups(path: Path) -> dict[tuple[str, str], list[int]]:
    """(message.id, requestId) → [input, cache_creation, cache_read, max output]."""
    groups: dict[tuple[str, str], list[int]] = {}
    for e in _entries(path):
        if e.get("type") != "assistant":
            continue
        message = e["message"]
        assert isinstance(message, dict)
        if message.get("model") == "<synthetic>":
            continue
        u = message["usage"]
        creation = max(u.get("cache_creation_input_tokens", 0),
                       sum((u.get("cache_creation") or {}).values()))  # fmt: skip
        row = [u.get("input_tokens", 0), creation, u.get("cache_read_input_tokens", 0),
               u.get("output_tokens", 0)]  # fmt: skip
        key = (str(message["id"]), str(e.get("requestId")))
        if key in groups:
            assert groups[key][:3] == row[:3], "input/cache counts differ within a response"
            groups[key][3] = max(groups[key][3], row[3])
        else:
            groups[key] = row
    return groups


def _context(usage: dict[str, int]) -> int:
    return (
        usage["input_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )


def _expected(root: Path) -> dict[str, object]:
    project = root / "projects" / "-home-USER-projects-spotter"
    main = project / f"{MAIN_SESSION}.jsonl"
    subs = sorted((project / MAIN_SESSION / "subagents").glob("*.jsonl"))
    all_groups: dict[tuple[str, str], list[int]] = {}
    for path in [main, *subs]:
        groups = _groups(path)
        assert not set(groups) & set(all_groups), "no response is shared between files"
        all_groups.update(groups)
    sub_groups = [g for p in subs for g in _groups(p).values()]
    entries = _entries(main)
    assistants = [e for e in entries if e.get("type") == "assistant" and not e.get("isSidechain")]
    boundary = next(i for i, e in enumerate(entries) if e.get("subtype") == "compact_boundary")
    meta = entries[boundary]["compactMetadata"]
    assert isinstance(meta, dict)
    after = next(e for e in entries[boundary:] if e.get("type") == "assistant")
    last_usage = assistants[-1]["message"]["usage"]  # type: ignore[index]
    after_usage = after["message"]["usage"]  # type: ignore[index]
    tool_ids = {
        b["id"]
        for path in [main, *subs]
        for e in _entries(path)
        if e.get("type") == "assistant"
        for b in e["message"]["content"]  # type: ignore[index]
        if b.get("type") == "tool_use"
    }
    return {
        "responses": len(all_groups),
        "tokens": TokenCounts(
            input=sum(g[0] for g in all_groups.values()),
            cache_creation=sum(g[1] for g in all_groups.values()),
            cache_read=sum(g[2] for g in all_groups.values()),
            output=sum(g[3] for g in all_groups.values()),
        ),
        "subagent_tokens": TokenCounts(
            input=sum(g[0] for g in sub_groups),
            cache_creation=sum(g[1] for g in sub_groups),
            cache_read=sum(g[2] for g in sub_groups),
            output=sum(g[3] for g in sub_groups),
        ),
        "context": _context(last_usage),
        "pre_tokens": meta["preTokens"],
        "saved": meta["preTokens"] - _context(after_usage),
        "tool_calls": len(tool_ids),
    }


def _ingest(root: Path, db: Path) -> Store:
    store = Store(db)
    TranscriptIngestor.open(store).scan(transcript_files([root]), now=NOW)
    return store


def test_sample_session_figures_match_the_hand_derivation(
    samples_root: Path, tmp_path: Path
) -> None:
    expected = _expected(samples_root)
    # Literal anchors: what the derivation above yields for these files.
    assert expected["context"] == 106_060
    assert expected["pre_tokens"] == 170_251
    assert expected["saved"] == 134_170
    assert expected["responses"] == 139 + 12 + 1
    store = _ingest(samples_root, tmp_path / "state.db")
    s = store.session(MAIN_SESSION)
    assert s is not None
    assert s.context_tokens == expected["context"]
    assert s.checkpoints == 1
    assert s.tokens_saved == expected["saved"]
    assert s.pending_checkpoint is None
    assert s.tokens == expected["tokens"]
    assert s.tokens == TokenCounts(input=233, output=28_899, cache_creation=559_475,
                                   cache_read=12_387_553)  # fmt: skip
    assert s.sidechain_tokens == expected["subagent_tokens"]
    assert s.responses == expected["responses"]
    assert s.tool_calls == expected["tool_calls"]
    assert s.model == "claude-opus-4-6"  # the sub-agent's sonnet never becomes the session model
    assert {m.model for m in s.by_model} == {"claude-opus-4-6", "claude-sonnet-4-5-20250929"}
    assert s.project == "spotter-dov"
    assert s.window_tokens == 200_000


def test_short_sample_counts_one_response_split_over_five_lines(
    samples_root: Path, tmp_path: Path
) -> None:
    store = _ingest(samples_root, tmp_path / "state.db")
    s = store.session(SHORT_SESSION)
    assert s is not None
    assert s.responses == 1
    assert s.context_tokens == 3 + 13_835 + 11_515
    assert s.tokens == TokenCounts(input=3, output=13, cache_creation=13_835, cache_read=11_515)
    assert s.checkpoints == 0


def test_rescanning_the_samples_changes_nothing(samples_root: Path, tmp_path: Path) -> None:
    store = _ingest(samples_root, tmp_path / "state.db")
    before = store.sessions()
    ingestor = TranscriptIngestor.open(store)
    result = ingestor.scan(transcript_files([samples_root]), now=NOW)
    assert result.lines == 0
    assert store.sessions() == before


def test_sample_without_progress_lines_is_parsed_identically(
    samples_root: Path, tmp_path: Path
) -> None:
    """Progress lines embed sub-agent usage; dropping them must not change any figure."""
    base = _ingest(samples_root, tmp_path / "a.db").session(MAIN_SESSION)
    for path in samples_root.rglob("*.jsonl"):
        kept = [ln for ln in path.read_bytes().splitlines(keepends=True)
                if json.loads(ln).get("type") != "progress"]  # fmt: skip
        path.write_bytes(b"".join(kept))
    stripped = _ingest(samples_root, tmp_path / "b.db").session(MAIN_SESSION)
    assert base is not None
    assert stripped is not None
    assert (stripped.tokens, stripped.context_tokens, stripped.tokens_saved) == (
        base.tokens, base.context_tokens, base.tokens_saved,
    )  # fmt: skip


def test_deferred_parsing_keeps_start_and_last_activity_exact(
    samples_root: Path, tmp_path: Path
) -> None:
    """Times from the fast path equal the min/max timestamp over the session's lines.

    Claude Code writes a file's lines in time order give or take a few milliseconds (a progress
    line may carry a stamp 2 ms later than the user line after it), hence the tolerance.
    """
    store = _ingest(samples_root, tmp_path / "state.db")
    project = samples_root / "projects" / "-home-USER-projects-spotter"
    stamps = [
        parse_timestamp(e.get("timestamp"))
        for path in [project / f"{MAIN_SESSION}.jsonl", *project.glob(f"{MAIN_SESSION}/*/*.jsonl")]
        for e in _entries(path)
        if e.get("sessionId") == MAIN_SESSION
    ]
    times = [t for t in stamps if t is not None]
    s = store.session(MAIN_SESSION)
    assert s is not None
    assert s.started_at == pytest.approx(min(times), abs=0.01)
    assert s.last_activity == pytest.approx(max(times), abs=0.01)
