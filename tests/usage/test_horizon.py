"""The daemon's usage horizon: only recent entries are kept, pruned at block boundaries.

Generated transcripts with the clock injected; the bound is proved by counting what the reader
keeps, and the blocks against a service that keeps the whole history.
"""

from __future__ import annotations

import os
from datetime import UTC, date
from pathlib import Path

import pytest

from contextd.config import load_settings
from contextd.errors import ConfigError, NotKeptError
from contextd.usage.entries import iso_ms
from contextd.usage.report import UsageOptions
from contextd.usage.service import UsageService
from tests.usage.lines import HOUR, MIN, T0_MS, assistant, write

DAY = 24 * HOUR
PRICE_OUT = 25 / 1_000_000  # claude-opus-4-6, US dollars per output token


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000


def line(at_ms: int, n: int, session: str) -> dict[str, object]:
    return assistant(f"m{n}", f"r{n}", out=100, inp=0, cc=0, cr=0, ts=iso_ms(at_ms),
                     session=session)  # fmt: skip


def days_of_work(root: Path, days: int) -> int:
    """One session a day, a response every 30 minutes from 08:00 to 20:00 (25 a day); the
    time of the last one."""
    n = 0
    for d in range(days):
        session = f"day{d}"
        start = T0_MS - 2 * HOUR + d * DAY  # 08:00
        stamps = [start + k * 30 * MIN for k in range(25)]
        write(root / "projects" / "-p" / f"{session}.jsonl",
              *(line(at, n + k, session) for k, at in enumerate(stamps)))  # fmt: skip
        n += 25
    return T0_MS - 2 * HOUR + (days - 1) * DAY + 12 * HOUR


def test_entries_older_than_the_horizon_are_never_kept(tmp_path: Path) -> None:
    last = days_of_work(tmp_path, 10)
    clock = Clock(last + 10 * MIN)
    service = UsageService([tmp_path], clock=clock, horizon_hours=24)
    assert service.refresh() == 250  # every usage line is parsed ...
    assert len(service.reader.entries()) == 25  # ... only the last day's are kept
    assert service.reader.too_old == 225
    assert service.coverage() == {"from": iso_ms(last + 10 * MIN - DAY), "horizon_hours": 24.0}
    # A resumed session copying old responses into a new file adds nothing.
    write(tmp_path / "projects" / "-p" / "resumed.jsonl",
          *(line(T0_MS + k * HOUR, k, "resumed") for k in range(5)))  # fmt: skip
    assert service.refresh() == 5
    assert len(service.reader.entries()) == 25
    assert service.reader.too_old == 230


def test_the_floor_moves_to_a_block_start_and_session_costs_never_drop(tmp_path: Path) -> None:
    last = days_of_work(tmp_path, 10)
    clock = Clock(last + 10 * MIN)
    service = UsageService([tmp_path], clock=clock, horizon_hours=24)
    service.refresh()
    before = service.metrics(["day9"], UsageOptions()).session_costs["day9"]
    assert before == pytest.approx(25 * 100 * PRICE_OUT, abs=1e-12)
    # A day later the horizon starts at 20:10: the last block (18:00-23:00, entries from
    # 18:30) still ends after it and is kept whole; the rest of the day is forgotten.
    clock.now_ms += DAY
    service.refresh()
    kept = sorted(e.at_ms for e in service.reader.entries())
    assert kept == [last - 90 * MIN, last - 60 * MIN, last - 30 * MIN, last]
    assert service.reader.floor_ms == last - 90 * MIN
    after = service.metrics(["day9"], UsageOptions()).session_costs["day9"]
    assert after == pytest.approx(before, abs=1e-12)
    # Once nothing of the session is kept, neither is its folded cost.
    clock.now_ms += DAY
    service.refresh()
    assert service.reader.entries() == []
    assert service.metrics(["day9"], UsageOptions()).session_costs == {}


def test_blocks_stay_those_of_the_whole_history_while_time_moves_on(tmp_path: Path) -> None:
    """40 hours without a 5-hour pause: the floor moves only at block starts, so the active
    block is the one the whole history has, hour after hour."""
    path = tmp_path / "projects" / "-p" / "long.jsonl"
    path.parent.mkdir(parents=True)
    path.touch()
    clock = Clock(T0_MS)
    bounded = UsageService([tmp_path], clock=clock, horizon_hours=6)
    whole = UsageService([tmp_path], clock=clock)
    starts = set()
    for n in range(80):
        write(path, line(clock.now_ms, n, "long"), append=True)
        clock.now_ms += 30 * MIN
        bounded.refresh()
        whole.refresh()
        mine = bounded.report("live", UsageOptions(tz=UTC))["block"]
        theirs = whole.report("live", UsageOptions(tz=UTC))["block"]
        assert mine == theirs
        if mine is not None:
            starts.add(mine["start"])
        # At most the horizon plus one block (a response every 30 minutes).
        assert len(bounded.reader.entries()) <= (6 + 5) * 2 + 1
    assert len(starts) == 8  # 40 hours: eight blocks went by
    assert len(whole.reader.entries()) == 80


def test_files_not_modified_within_the_horizon_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "projects" / "-p" / "old.jsonl"
    write(path, line(T0_MS, 1, "old"))
    os.utime(path, (T0_MS / 1000, T0_MS / 1000))
    service = UsageService([tmp_path], clock=Clock(T0_MS + 3 * DAY), horizon_hours=24)
    assert service.refresh() == 0
    assert service.reader.too_old == 0
    # Appended to later, only what was appended is read.
    write(path, line(T0_MS + 3 * DAY - HOUR, 2, "old"), append=True)
    assert service.refresh() == 1
    assert len(service.reader.entries()) == 1


def test_reports_reaching_before_the_kept_period_are_refused_naming_since(
    tmp_path: Path,
) -> None:
    last = days_of_work(tmp_path, 3)
    service = UsageService([tmp_path], clock=Clock(last + 10 * MIN), horizon_hours=24)
    service.refresh()
    with pytest.raises(NotKeptError) as refused:
        service.report("daily", UsageOptions(tz=UTC))
    assert refused.value.field == "since"
    assert "since >= 2026-03-03" in refused.value.detail
    with pytest.raises(NotKeptError):
        service.report("live", UsageOptions(tz=UTC, since=date(2026, 3, 2)))
    daily = service.report("daily", UsageOptions(tz=UTC, since=date(2026, 3, 3)))
    assert [(d["date"], d["tokens"]["output"]) for d in daily["daily"]] == [("2026-03-03", 2500)]
    # Without a horizon (the CLI) the whole history is there.
    whole = UsageService([tmp_path], clock=Clock(last + 10 * MIN))
    whole.refresh()
    assert len(whole.report("daily", UsageOptions(tz=UTC))["daily"]) == 3
    assert whole.coverage() == {"from": None, "horizon_hours": None}


def test_a_horizon_shorter_than_a_block_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "contextd.toml"
    config.write_text("usage_horizon_hours = 4\n")
    with pytest.raises(ConfigError, match="usage_horizon_hours: at least 5 hours"):
        load_settings(config, env={})
    assert load_settings(None, env={"CONTEXTD_USAGE_HORIZON_HOURS": "72"}).usage_horizon_hours == 72
