"""5-hour blocks, burn rate, projections and limits, with hand-computed expectations.

Times are minutes after T0 = 2026-03-01 10:00 UTC unless written as clock times. Defaults:
blocks of 5 h, a 10-minute burn window, severity from non-cache (input + output) tokens per
minute: MODERATE from 500, HIGH from 1,000.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from contextd.usage.blocks import (
    Severity,
    active_block,
    burn_rate,
    identify_blocks,
    limit_status,
    project,
)
from contextd.usage.entries import iso_ms, timestamp_ms
from contextd.usage.report import UsageOptions, live_view
from contextd.usage.service import bundled_prices
from tests.usage.lines import HOUR, MIN, T0_MS, entry, priced

TABLE = bundled_prices()


def at(minutes: float) -> int:
    return T0_MS + round(minutes * MIN)


def clock(ms: int) -> str:
    return iso_ms(ms)[11:16]


def test_single_session_block_rate_projection_and_limit() -> None:
    # Three responses of 10 in + 100 out + 1,000 cache reads = 1,110 tokens each, at
    # 10:17, 10:47 and 11:17; now 11:27.
    items = priced(*(entry(at(m), inp=10, out=100, cr=1000) for m in (17, 47, 77)))
    now = at(87)
    (block,) = identify_blocks(items)
    # Start floored to the hour: 10:00; end 5 h later: 15:00.
    assert (clock(block.start_ms), clock(block.end_ms)) == ("10:00", "15:00")
    assert active_block([block], now) is block
    totals = block.totals()
    assert totals.total == 3330
    # Window: max(now - 10 min = 11:17, first entry 10:17) = 11:17 → only the 11:17 entry:
    # 1,110 tokens / 10 min = 111/min; non-cache 110 / 10 = 11/min → NORMAL.
    rate = burn_rate(block.entries, now)
    assert (rate.tokens_per_minute, rate.non_cache_per_minute) == (111.0, 11.0)
    assert rate.severity is Severity.NORMAL
    # 213 minutes left (11:27 → 15:00): 3,330 + 111 x 213 = 26,973 tokens projected.
    projection = project(block, totals, rate, now)
    assert (projection.remaining_minutes, projection.tokens) == (213.0, 26_973)
    # Limit 10,000: 33.3 % used; (10,000 - 3,330) / 111 = 60.09 min → 3,605,405 ms from now.
    status = limit_status(block, rate, projection, 10_000, now)
    assert status.percent == pytest.approx(33.3)
    assert not status.exceeded
    assert status.eta_ms == now + 3_605_405
    # A limit the block cannot reach before 15:00 at this rate has no time.
    assert limit_status(block, rate, projection, 100_000, now).eta_ms is None


def _view(entries: list, now: int, **options: object) -> dict:  # type: ignore[type-arg]
    return live_view(entries, TABLE, UsageOptions(**options), now)  # type: ignore[arg-type]


def test_several_sessions_in_one_project_share_the_block() -> None:
    # Session A: 1,000 output at 10:05 and 10:30; session B: 2,000 output at 11:00. Now 11:05.
    entries = [
        entry(at(5), out=1000, session="A", cwd="/home/u/web"),
        entry(at(30), out=1000, session="A", cwd="/home/u/web"),
        entry(at(60), out=2000, session="B", cwd="/home/u/web"),
    ]
    view = _view(entries, at(65))
    assert view["block"]["tokens"]["total"] == 4000
    (proj,) = view["projects"]
    assert (proj["project"], proj["sessions"], proj["share_percent"]) == ("web", 2, 100.0)
    # Project window: max(10:55, 10:05) = 10:55 → B's 2,000 in 10 min = 200/min.
    assert proj["burn_rate"]["tokens_per_minute"] == 200.0
    assert proj["started_at"] == iso_ms(at(5))
    assert proj["elapsed_seconds"] == 60 * 60
    shares = {s["session_id"]: s["share_percent"] for s in view["sessions"]}
    assert shares == {"A": 50.0, "B": 50.0}
    # Cost: 4,000 output x $25/M = $0.10.
    assert view["block"]["cost_usd"] == pytest.approx(0.1)


def test_six_concurrent_projects_in_one_block() -> None:
    # Project p<i> (i = 1..6) writes i x 1,000 output tokens at 10:0<i>; now 10:10.
    entries = [
        entry(at(i), out=i * 1000, session=f"s{i}", cwd=f"/w/p{i}", project_dir=f"-w-p{i}")
        for i in range(1, 7)
    ]
    now = at(10)
    view = _view(entries, now)
    assert len(identify_blocks(priced(*entries))) == 1
    block = view["block"]
    # 21,000 tokens; window max(10:00, 10:01) = 10:01 → 9 min → 2,333.3/min → HIGH.
    assert block["tokens"]["total"] == 21_000
    assert block["burn_rate"]["tokens_per_minute"] == pytest.approx(2333.333, abs=1e-3)
    assert block["burn_rate"]["severity"] == "HIGH"
    names = [p["project"] for p in view["projects"]]
    assert names == ["p6", "p5", "p4", "p3", "p2", "p1"]  # most tokens first
    shares = [p["share_percent"] for p in view["projects"]]
    assert shares == pytest.approx(
        [600 / 21, 500 / 21, 400 / 21, 300 / 21, 200 / 21, 100 / 21], abs=1e-3
    )
    # Per project: i x 1,000 over (10 - i) minutes → p1 111, p2 250, p3 428.6 (NORMAL),
    # p4 666.7 (MODERATE), p5 1,000 and p6 1,500 (HIGH).
    severities = {p["project"]: p["burn_rate"]["severity"] for p in view["projects"]}
    assert severities == {
        "p1": "NORMAL",
        "p2": "NORMAL",
        "p3": "NORMAL",
        "p4": "MODERATE",
        "p5": "HIGH",
        "p6": "HIGH",
    }
    high = sorted(w["project"] for w in view["warnings"] if w["kind"] == "high_burn_rate")
    assert high == ["p5", "p6"]


def test_a_session_going_inactive() -> None:
    # A writes at 10:00 and 10:30, B at 12:00.
    a = [entry(at(0), out=100, session="A"), entry(at(30), out=100, session="A")]
    b = [entry(at(120), out=100, session="B")]
    view = _view([*a, *b], at(125))
    rates = {s["session_id"]: s["burn_rate"]["tokens_per_minute"] for s in view["sessions"]}
    # Window from max(11:55, the session's first entry): A wrote nothing since 11:55;
    # B's starts at its first entry, 12:00 → 100 tokens / 5 min.
    assert rates == {"A": 0.0, "B": 20.0}
    # With only A: active until 14:59 (4 h 29 min after its last entry, before 15:00),
    # inactive from the block's end at 15:00 on.
    blocks = identify_blocks(priced(*a))
    assert active_block(blocks, at(299)) is blocks[0]
    assert active_block(blocks, at(300)) is None
    assert _view(a, at(300))["block"] is None
    # With a 1-hour duration the block ends at 11:00, and nothing after 10:30+1h is active.
    hour_blocks = identify_blocks(priced(*a), HOUR)
    assert active_block(hour_blocks, at(59), HOUR) is hour_blocks[0]
    assert active_block(hour_blocks, at(60), HOUR) is None


def test_a_new_session_mid_block() -> None:
    # A since 10:10; B's first line ever at 12:00; now 12:03.
    entries = [
        entry(at(10), out=500, session="A"),
        entry(at(118), out=500, session="A"),
        entry(at(120), out=1500, session="B"),
    ]
    view = _view(entries, at(123))
    assert view["block"]["start"] == iso_ms(at(0))  # still the 10:00 block
    new = [w["session_id"] for w in view["warnings"] if w["kind"] == "new_session"]
    assert new == ["B"]
    b = next(s for s in view["sessions"] if s["session_id"] == "B")
    assert (b["elapsed_seconds"], b["share_percent"]) == (180, 60.0)
    # Six minutes later it is no longer new.
    later = _view(entries, at(126))
    assert not [w for w in later["warnings"] if w["kind"] == "new_session"]


def test_a_gap_longer_than_the_block() -> None:
    # 10:17, then 16:30 (6 h 13 min later).
    first, second = entry(at(17), out=1), entry(at(390), out=2)
    blocks = identify_blocks(priced(second, first))
    # The gap runs from the last activity + 5 h (15:17) to the next activity (16:30).
    assert [(clock(b.start_ms), clock(b.end_ms), b.gap) for b in blocks] == [
        ("10:00", "15:00", False),
        ("15:17", "16:30", True),
        ("16:00", "21:00", False),
    ]
    assert blocks[1].totals().total == 0
    # --token-limit max: the most tokens an earlier block used (1 here), in the 16:00 block.
    view = _view([first, second, entry(at(400), out=5)], at(401), token_limit_max=True)
    assert view["options"]["token_limit"] == 1
    assert view["block"]["limit"]["exceeded"] is True


def test_a_block_ends_five_hours_after_its_start_even_without_a_gap() -> None:
    # 10:59, 14:50, 15:10: the third is 5 h 10 min after the 10:00 start → new 15:00 block,
    # and only 20 min after the previous entry → no gap block.
    blocks = identify_blocks(priced(entry(at(59)), entry(at(290)), entry(at(310))))
    assert [(clock(b.start_ms), len(b.entries), b.gap) for b in blocks] == [
        ("10:00", 2, False),
        ("15:00", 1, False),
    ]
    # Exactly 5 h after the previous entry is not a gap either: 10:17 then 15:17.
    exact = identify_blocks(priced(entry(at(17)), entry(at(317))))
    assert [(clock(b.start_ms), b.gap) for b in exact] == [("10:00", False), ("15:00", False)]


def test_clock_skew_in_timestamps() -> None:
    # One machine writes +02:00 offsets, another UTC; files interleave out of order.
    skewed = timestamp_ms("2026-03-01T12:30:00+02:00")  # 10:30 UTC
    assert skewed == at(30)
    items = priced(entry(at(40), out=10), entry(skewed, out=10), entry(at(5), out=10))
    (block,) = identify_blocks(items)
    assert [e.entry.at_ms for e in block.entries] == [at(5), at(30), at(40)]
    # A session whose clock runs 3 minutes ahead: its 10:48 line arrives at 10:45. It counts
    # in the window as "now"; elapsed time never goes negative, and it is a new session.
    entries = [entry(at(5), out=1000, session="A"), entry(at(48), out=2000, session="B")]
    now = at(45)
    view = _view(entries, now)
    assert view["block"]["active"] is True
    # Window max(10:35, 10:05) = 10:35 → 2,000 tokens / 10 min.
    assert view["block"]["burn_rate"]["tokens_per_minute"] == 200.0
    b = next(s for s in view["sessions"] if s["session_id"] == "B")
    assert b["elapsed_seconds"] == 0
    assert b["burn_rate"]["tokens_per_minute"] == 2000.0  # all in the future: one minute
    assert [w["session_id"] for w in view["warnings"] if w["kind"] == "new_session"] == ["B"]


def test_bursts_above_ten_thousand_tokens_per_minute() -> None:
    # 30 responses of 500 in + 2,000 out, 6 s apart from 10:00:00; now 10:03:00.
    items = priced(*(entry(T0_MS + k * 6000, inp=500, out=2000) for k in range(30)))
    now = at(3)
    (block,) = identify_blocks(items)
    rate = burn_rate(block.entries, now)
    # 75,000 tokens over 3 min (window starts at the first entry) = 25,000/min, all non-cache.
    assert rate.tokens_per_minute == 25_000.0
    assert rate.non_cache_per_minute == 25_000.0
    assert rate.severity is Severity.HIGH
    totals = block.totals()
    projection = project(block, totals, rate, now)
    # 297 minutes left: 75,000 + 25,000 x 297 = 7,500,000.
    assert projection.tokens == 7_500_000
    # Limit 100,000: 25,000 to go at 25,000/min → one minute from now.
    status = limit_status(block, rate, projection, 100_000, now)
    assert (status.exceeded, status.eta_ms) == (False, now + MIN)
    # Limit 50,000: crossed by the 20th response (20 x 2,500), written at 10:01:54.
    crossed = limit_status(block, rate, projection, 50_000, now)
    assert crossed.exceeded
    assert crossed.exceeded_at_ms == T0_MS + 19 * 6000
    # One 50,000-token response in the block's first second reads as 50,000/min, not infinity.
    single = burn_rate(priced(entry(T0_MS, out=50_000)), T0_MS + 1000)
    assert (single.minutes, single.tokens_per_minute) == (1.0, 50_000.0)


def test_cost_rate_and_projected_cost() -> None:
    # 1,000,000 cache reads of opus 4.6 ($0.50) at 10:00 and 10:05; now 10:10.
    items = [entry(at(m), cr=1_000_000) for m in (0, 5)]
    view = _view(items, at(10), token_limit=3_000_000, cost_threshold=Decimal("1.5"))
    block = view["block"]
    assert block["cost_usd"] == 1.0
    # $1.00 in 10 minutes = $6/h; 290 minutes left → 1.00 + 0.10 x 290 = $30.00.
    assert block["burn_rate"]["cost_per_hour_usd"] == 6.0
    assert block["projection"]["cost_usd"] == pytest.approx(30.0)
    kinds = {w["kind"] for w in view["warnings"]}
    assert kinds == {"token_limit_approaching", "cost_threshold_approaching"}
    over = _view(items, at(10), token_limit=1_500_000, cost_threshold=Decimal("1"))
    assert {w["kind"] for w in over["warnings"]} == {
        "token_limit_exceeded",
        "cost_threshold_exceeded",
    }


def test_bad_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        identify_blocks([], 0)
