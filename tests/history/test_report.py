"""``contextd report`` (JSON and CSV) and ``contextd history`` on a known history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from contextd.cli import main
from contextd.records.store import SqliteRecordStore
from tests.history.records import ME, OTHER, T0, record

# Four sessions: three of ME, one of OTHER; two projects; two days (UTC) of ends.
HISTORY = [
    record(0),  # spotter, 2026-05-28, 2 checkpoints, warning
    record(
        1, cost_usd=None, critical_crossings=1, peak_percent=95.0, checkpoints=0, tokens_saved=0
    ),  # atlas, unknown cost
    record(2, OTHER, cost_usd=2.5, session_type="headless"),  # spotter
    record(3, started_at=T0 + 86_400, ended_at=T0 + 86_400 + 1800),  # atlas, 2026-05-29
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    store = SqliteRecordStore(state / "history.db")
    store.add(HISTORY)
    store.close()
    return state / "contextd.db"


def report(db: Path, out: Path, *extra: str) -> list[Path]:
    assert main(["report", "--db", str(db), "--out", str(out), *extra]) == 0
    return [out.with_name(out.stem + s + out.suffix) for s in ("", ".sessions", ".analytics")]


def test_the_json_report_totals_and_groups_a_known_history(db: Path, tmp_path: Path) -> None:
    main_path, sessions_path, analytics_path = report(db, tmp_path / "r.json")
    main_doc = json.loads(main_path.read_text())
    totals = main_doc["totals"]
    assert totals["sessions"] == 4
    assert totals["cost_usd"] == 5.0  # 1.25 + 2.5 + 1.25: the unknown one is not a 0 ...
    assert totals["cost_complete"] is False  # ... and the report says so
    assert totals["tokens"]["output"] == 2000 + 2001 + 2002 + 2003
    assert totals["tokens"]["total"] == 4 * (100 + 5000 + 90000) + 8006
    assert (totals["checkpoints"], totals["tokens_saved"]) == (6, 240_000)
    assert totals["tokens_saved_per_checkpoint"] == 40_000.0
    assert (totals["warn_crossings"], totals["critical_crossings"]) == (4, 1)
    assert totals["peak_percent"] == 95.0
    by = main_doc["by"]
    assert [(g["key"], g["sessions"]) for g in by["project"]] == [("atlas", 2), ("spotter", 2)]
    assert [(g["key"], g["sessions"]) for g in by["day"]] == [("2026-05-28", 3),
                                                               ("2026-05-29", 1)]  # fmt: skip
    assert {g["key"]: g["sessions"] for g in by["user"]} == {ME: 3, OTHER: 1}
    assert {g["key"]: g["sessions"] for g in by["session_type"]} == {"interactive": 3,
                                                                      "headless": 1}  # fmt: skip
    assert by["project"][0]["cost_usd"] == 1.25
    assert by["project"][0]["cost_complete"] is False

    sessions = json.loads(sessions_path.read_text())
    assert [s["session_id_hash"][-1] for s in sessions] == ["0", "1", "2", "3"]
    assert sessions[0]["duration_seconds"] == 1800.0
    assert sessions[0]["ended"] == "2026-05-28T20:56:40Z"

    analytics = {a["session_id_hash"][-1]: a for a in json.loads(analytics_path.read_text())}
    assert analytics["0"]["efficiency"]["tokens_saved_per_checkpoint"] == 40_000.0
    assert analytics["0"]["efficiency"]["tokens_saved_per_hour"] == 160_000.0
    assert analytics["1"]["efficiency"]["tokens_saved_per_checkpoint"] is None
    assert analytics["0"]["thresholds"]["highest_level"] == "warning"
    assert analytics["1"]["thresholds"]["highest_level"] == "critical"
    assert analytics["1"]["usage"]["cost_usd"] is None
    assert analytics["1"]["usage"]["cost_per_million_tokens"] is None
    assert analytics["0"]["usage"]["tokens_per_response"] == round(97_100 / 30, 1)
    assert analytics["0"]["usage"]["cache_read_share"] == round(90_000 / 95_100, 4)


def test_the_csv_report_has_the_same_figures(db: Path, tmp_path: Path) -> None:
    main_path, sessions_path, analytics_path = report(db, tmp_path / "r.csv")
    assert main_path.name == "r.csv"
    with main_path.open() as fh:
        rows = list(csv.DictReader(fh))
    total = rows[0]
    assert (total["group"], total["sessions"], total["cost_usd"]) == ("total", "4", "5.0")
    assert total["cost_complete"] == "False"
    assert total["tokens.output"] == "8006"
    projects = {r["key"]: r for r in rows if r["group"] == "project"}
    assert projects["atlas"]["sessions"] == "2"
    with sessions_path.open() as fh:
        sessions = list(csv.DictReader(fh))
    assert len(sessions) == 4
    assert sessions[1]["cost_usd"] == ""  # unknown stays empty, not 0
    assert sessions[0]["models"] == "claude-opus-4-6"
    with analytics_path.open() as fh:
        analytics = list(csv.DictReader(fh))
    assert analytics[0]["efficiency.tokens_saved_per_checkpoint"] == "40000.0"
    assert analytics[1]["thresholds.highest_level"] == "critical"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--user", ME], ["0", "1", "3"]),
        (["--user", OTHER], ["2"]),
        (["--project", "atlas"], ["1", "3"]),
        (["--since", "2026-05-29"], ["3"]),
        (["--until", "2026-05-28"], ["0", "1", "2"]),
        (["--since", "2026-05-28T21:00:00Z", "--until", "2026-05-28T23:00:00+00:00"], ["1", "2"]),
        (["--project", "nothing"], []),
    ],
)
def test_report_filters_select_sessions(
    db: Path, tmp_path: Path, options: list[str], expected: list[str]
) -> None:
    _, sessions_path, _ = report(db, tmp_path / "r.json", *options)
    sessions = json.loads(sessions_path.read_text())
    assert [s["session_id_hash"][-1] for s in sessions] == expected


def test_history_lists_newest_first_in_a_table_or_json(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--db", str(db), "--json", "--limit", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["session_id_hash"][-1] for r in rows] == ["3", "2"]
    assert all(r["is_me"] is False for r in rows)  # the test identities are not this user
    assert main(["history", "--db", str(db), "--project", "spotter"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ENDED", "SESSION", "USER"]
    assert len(lines) == 3
    assert "$2.50" in lines[1]
    assert main(["history", "--db", str(db), "--user", "me"]) == 0
    assert "no session records" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history", "--user", "someone"], "--user: expected a 16-hex user id"),
        (["history", "--since", "yesterday"], "--since: expected YYYY-MM-DD"),
        (["report", "--out", "/nonexistent/dir/r.json"], "--out: no such directory"),
        (["history", "--limit", "-1"], "--limit: expected a count"),
        (["history", "--store", "mysql://x"], None),
    ],
)
def test_bad_options_exit_2_with_one_line(
    db: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str | None
) -> None:
    code = main([*args, "--db", str(db)])
    err = capsys.readouterr().err
    if message is None:  # an unknown store scheme is a SQLite path: nothing to read there
        assert code == 0
        return
    assert code == 2
    assert err.count("\n") == 1
    assert message in err


def test_sessions_user_keeps_that_users_sessions_only(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sessions", "--all", "--json", "--config-dir", str(samples_root),
            "--db", str(tmp_path / "s.db")]  # fmt: skip
    assert main(base) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main([*base, "--user", OTHER]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main([*base, "--user", "nobody"]) == 2
    assert "--user" in capsys.readouterr().err
