"""Session and daily reports, project names and filters, and the option parser."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from contextd.errors import OptionError
from contextd.usage.options import parse_options, parse_report
from contextd.usage.pricing import CostMode
from contextd.usage.report import (
    UsageOptions,
    blocks_report,
    daily_report,
    live_view,
    session_report,
)
from contextd.usage.service import bundled_prices
from tests.usage.lines import HOUR, T0_MS, entry

TABLE = bundled_prices()


def test_sessions_are_rows_per_project_dir_and_session_with_models_and_cost() -> None:
    entries = [
        entry(T0_MS, out=1_000_000, session="A"),
        entry(T0_MS + HOUR, cr=1_000_000, session="A", model="claude-haiku-4-5-20251001"),
        entry(T0_MS + 2 * HOUR, out=1, session="A", project_dir="-other", cwd="/x/other"),
        entry(T0_MS, session="Z"),  # no tokens: no row
    ]
    report = session_report(entries, TABLE, UsageOptions())
    rows = {(r["project_dir"], r["session_id"]): r for r in report["sessions"]}
    assert set(rows) == {("-home-u-proj", "A"), ("-other", "A")}
    a = rows["-home-u-proj", "A"]
    assert a["tokens"] == {
        "input": 0,
        "output": 1_000_000,
        "cache_creation": 0,
        "cache_read": 1_000_000,
        "total": 2_000_000,
    }
    # $25 (1M opus output) + $0.10 (1M haiku reads)
    assert a["cost_usd"] == 25.1
    assert [m["model"] for m in a["models"]] == ["claude-haiku-4-5-20251001", "claude-opus-4-6"]
    assert (a["first_activity"], a["last_activity"]) == (
        "2026-03-01T10:00:00.000Z",
        "2026-03-01T11:00:00.000Z",
    )
    assert a["project"] == "proj"
    assert report["totals"]["tokens"]["total"] == 2_000_001


def test_unknown_models_make_the_cost_incomplete_not_zero() -> None:
    entries = [entry(T0_MS, out=10, model="claude-foo-9"), entry(T0_MS, out=10, session="B")]
    rows = {r["session_id"]: r for r in session_report(entries, TABLE, UsageOptions())["sessions"]}
    assert rows["S1"]["cost_usd"] is None
    assert rows["S1"]["cost_complete"] is False
    assert rows["S1"]["unpriced_models"] == ["claude-foo-9"]
    assert rows["S1"]["models"][0]["cost_usd"] is None
    assert rows["B"]["cost_complete"] is True
    view = live_view(entries, TABLE, UsageOptions(), T0_MS + 60_000)
    assert view["block"]["cost_complete"] is False
    assert [w["kind"] for w in view["warnings"] if w["kind"] == "unknown_price"] == [
        "unknown_price"
    ]


def test_days_follow_the_time_zone() -> None:
    # 23:30 UTC on 1 March is 00:30 on 2 March in Berlin (UTC+1).
    late = T0_MS + 13 * HOUR + 30 * 60_000
    entries = [entry(T0_MS, out=5), entry(late, out=7)]
    utc = daily_report(entries, TABLE, UsageOptions())
    assert [(r["date"], r["tokens"]["total"]) for r in utc["daily"]] == [("2026-03-01", 12)]
    berlin = daily_report(entries, TABLE, UsageOptions(tz=ZoneInfo("Europe/Berlin")))
    assert [(r["date"], r["tokens"]["total"]) for r in berlin["daily"]] == [
        ("2026-03-01", 5),
        ("2026-03-02", 7),
    ]
    only_second = UsageOptions(tz=ZoneInfo("Europe/Berlin"), since=date(2026, 3, 2))
    assert [r["date"] for r in daily_report(entries, TABLE, only_second)["daily"]] == ["2026-03-02"]
    until_first = UsageOptions(until=date(2026, 3, 1))
    assert len(daily_report(entries, TABLE, until_first)["daily"]) == 1


def test_projects_are_named_from_cwd_and_same_names_get_their_parent() -> None:
    entries = [
        entry(T0_MS, out=1, session="a", cwd="/home/u/work/app", project_dir="-home-u-work-app"),
        entry(T0_MS, out=2, session="b", cwd="/home/u/play/app", project_dir="-home-u-play-app"),
        entry(T0_MS, out=4, session="c", cwd=None, project_dir="-srv-legacy"),
        entry(T0_MS, out=8, session="d", cwd="/srv/api", project_dir="-srv-api"),
        entry(T0_MS + 1, out=16, session="d", cwd=None, project_dir="-srv-api"),
    ]
    view = live_view(entries, TABLE, UsageOptions(), T0_MS + 60_000)
    tokens = {p["project"]: p["tokens"]["total"] for p in view["projects"]}
    assert tokens == {"work/app": 1, "play/app": 2, "-srv-legacy": 4, "api": 24}


def test_project_filters_match_names_or_directories() -> None:
    entries = [
        entry(T0_MS, out=1, session="a", cwd="/w/web"),
        entry(T0_MS, out=2, session="b", cwd="/w/api"),
        entry(T0_MS, out=4, session="c", cwd="/w/cli"),
    ]

    def total(**options: object) -> int:
        report = session_report(entries, TABLE, UsageOptions(**options))  # type: ignore[arg-type]
        return int(report["totals"]["tokens"]["total"])

    assert total() == 7
    assert total(projects=("web", "/w/api")) == 3
    assert total(exclude=("API",)) == 5
    assert total(projects=("web", "api"), exclude=("api",)) == 1


def test_options_parse_the_cli_and_query_spellings() -> None:
    options = parse_options(
        {
            "mode": "calculate",
            "token_limit": "500000",
            "cost_threshold": "12.5",
            "session_duration": "2.5",
            "burn_window": "3",
            "projects": "a, b",
            "exclude": "c",
            "since": "20260301",
            "until": "2026-03-05",
            "timezone": "Europe/Berlin",
            "report": "x",
        }
    )
    assert options.mode is CostMode.CALCULATE
    assert (options.token_limit, options.cost_threshold) == (500_000, Decimal("12.5"))
    assert (options.session_duration_ms, options.burn_window_ms) == (9_000_000, 180_000)
    assert (options.projects, options.exclude) == (("a", "b"), ("c",))
    assert (options.since, options.until) == (date(2026, 3, 1), date(2026, 3, 5))
    assert options.tz == ZoneInfo("Europe/Berlin")
    assert parse_options({"token_limit": "max"}).token_limit_max
    assert parse_options({"token_limit": ""}).token_limit is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"token_limit": "abc"}, "token_limit"),
        ({"token_limit": "-5"}, "token_limit"),
        ({"since": "2026-13-01"}, "since"),
        ({"until": "tomorrow"}, "until"),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "until"),
        ({"cost_threshold": "cheap"}, "cost_threshold"),
        ({"cost_threshold": "-1"}, "cost_threshold"),
        ({"session_duration": "0"}, "session_duration"),
        ({"burn_window": "inf"}, "burn_window"),
        ({"mode": "guess"}, "mode"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_options_name_their_field(values: dict[str, str], field: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_options(values)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"--{field.replace('_', '-')}: ")
    assert "\n" not in str(caught.value)


def test_reports_are_live_daily_or_session() -> None:
    assert parse_report(None) == "live"
    assert parse_report("daily") == "daily"
    with pytest.raises(OptionError, match="report"):
        parse_report("weekly")


def test_the_blocks_report_lists_blocks_and_gaps_with_totals() -> None:
    # 10:00 and 10:30, then 17:00 (6 h 30 min after 10:30 → a gap from 15:30 to 17:00).
    entries = [
        entry(T0_MS, out=1_000_000),
        entry(T0_MS + HOUR // 2, out=10),
        entry(T0_MS + 7 * HOUR, out=5, model="claude-foo-9"),
    ]
    report = blocks_report(entries, TABLE, UsageOptions(), T0_MS + 7 * HOUR + 60_000)
    rows = [
        (
            b["start"][11:16],
            b["end"][11:16],
            b["gap"],
            b["active"],
            b["entries"],
            b["tokens"]["total"],
            b["cost_usd"],
        )
        for b in report["blocks"]
    ]
    assert rows == [
        ("10:00", "15:00", False, False, 2, 1_000_010, 25.00025),
        ("15:30", "17:00", True, False, 0, 0, 0.0),
        ("17:00", "22:00", False, True, 1, 5, None),
    ]
    assert report["totals"]["tokens"]["total"] == 1_000_015
    assert report["totals"]["unpriced_models"] == ["claude-foo-9"]
