"""The command line: output shapes, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contextd.cli import main
from tests.conftest import MAIN_SESSION, SHORT_SESSION


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "contextd", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_sessions_all_json_lists_the_sample_sessions(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    code = main(["sessions", "--all", "--json", "--config-dir", str(samples_root), "--db", str(db)])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    by_id = {r["session_id"]: r for r in rows}
    assert set(by_id) == {MAIN_SESSION, SHORT_SESSION}
    main_row = by_id[MAIN_SESSION]
    assert main_row["context_tokens"] == 106_060
    assert main_row["context_window"] == 200_000
    assert main_row["context_percent"] == 53.03
    assert main_row["checkpoints"] == 1
    assert main_row["tokens_saved"] == 134_170
    assert main_row["status"] == "expired"
    assert main_row["threshold_state"] == "ok"
    assert main_row["tokens"]["total"] == 233 + 28_899 + 559_475 + 12_387_553


def test_sessions_without_all_hides_expired_sessions(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sessions", "--config-dir", str(samples_root), "--db", str(tmp_path / "d")]) == 0
    assert "no live sessions" in capsys.readouterr().out


def test_sessions_table_shows_one_row_per_session(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["sessions", "--all", "--config-dir", str(samples_root), "--db", str(tmp_path / "d")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["SESSION", "PROJECT", "MODEL"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(
        [MAIN_SESSION[:8], SHORT_SESSION[:8]]
    )


def test_scan_reports_lines_then_nothing_new(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["scan", "--json", "--config-dir", str(samples_root), "--db", str(tmp_path / "d")]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["files"] == second["files"] == 4
    assert first["lines"] == sum(
        len(p.read_bytes().splitlines()) for p in samples_root.rglob("*.jsonl")
    )
    assert second["lines"] == 0
    assert second["sessions"] == 2


def test_a_missing_config_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("scan", "--config-dir", str(tmp_path / "nope"), "--db", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"contextd: error: Claude config dir not found: {tmp_path / 'nope'}"
    ]
    assert not (tmp_path / "d").exists()  # nothing was created


def test_an_unreadable_config_dir_is_exit_2(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    result = run("scan", "--config-dir", str(locked), "--db", str(tmp_path / "d"))
    locked.chmod(0o700)
    if result.returncode == 0:
        pytest.skip("running as a user that ignores directory permissions")
    assert result.returncode == 2
    assert "not readable" in result.stderr


def test_an_unknown_option_is_one_line_and_exit_2() -> None:
    result = run("sessions", "--bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "contextd: error: unrecognized arguments: --bogus"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [("idle_after = 'soon'", "idle_after: expected a number"), ("nonsense = 1", "unknown setting"),
     ("[[[", "config file"), ("warn_percent = 95", "thresholds")],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_and_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    result = run("scan", "--config", str(cfg), "--config-dir", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contextd", "scan", "--config-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CONTEXTD_EXPIRE_AFTER": "-5"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "CONTEXTD_EXPIRE_AFTER: must be positive" in result.stderr


def test_an_unusable_database_is_exit_1_and_keeps_the_file(tmp_path: Path) -> None:
    db = tmp_path / "d"
    db.write_bytes(b"not a database at all" * 50)
    result = run("scan", "--config-dir", str(tmp_path), "--db", str(db))
    assert result.returncode == 1
    assert "cannot open state database" in result.stderr
    assert db.read_bytes() == b"not a database at all" * 50
