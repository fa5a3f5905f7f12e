"""``contextd doctor``: one line per check, what to fix, exit 0 only when all is well."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contextd.cli import main
from tests.served import Served, free_port


@pytest.fixture(autouse=True)
def no_claude_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # `claude` is not found


@pytest.fixture
def served(tmp_path: Path, claude_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    s = Served(tmp_path / "daemon")
    s.start()
    monkeypatch.setenv("CONTEXTD_PORT", str(s.port))
    monkeypatch.setenv("CONTEXTD_SOCKET", str(s.socket))
    monkeypatch.setenv("CONTEXTD_DB", str(s.db))
    yield s
    s.stop()


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    capsys.readouterr()
    code = main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    checks = {}
    for line in lines:
        status, rest = line.split(" ", 1)
        name, detail = rest.strip().split(": ", 1)
        checks[name] = f"{status} {detail}"
    return code, checks


@pytest.mark.slow
def test_after_install_with_the_daemon_up_every_check_is_ok(
    served: Served, claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install"]) == 0
    code, checks = doctor(capsys)
    assert all(v.startswith("OK") for v in checks.values()), checks
    assert code == 0
    assert set(checks) >= {"hooks", "status line", "mcp server", "programs", "daemon (http)",
                           "daemon (socket)", "database", "versions"}  # fmt: skip
    assert f"127.0.0.1:{served.port}/hooks" in checks["hooks"]


def test_nothing_installed_and_no_daemon_fails_saying_what_to_do(
    claude_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("CONTEXTD_PORT", str(free_port()))
    monkeypatch.setenv("CONTEXTD_SOCKET", str(tmp_path / "none.sock"))
    monkeypatch.setenv("CONTEXTD_DB", str(tmp_path / "state" / "c.db"))
    code, checks = doctor(capsys)
    assert code == 1
    for name in ("hooks", "status line", "mcp server"):
        assert checks[name].startswith("FAIL")
        assert "contextd install" in checks[name]
    for name in ("daemon (http)", "daemon (socket)"):
        assert checks[name].startswith("FAIL")
        assert "contextd serve" in checks[name]
    assert checks["database"].startswith("OK")
    assert "not on PATH" in checks["versions"]


@pytest.mark.slow
def test_hooks_for_another_port_a_foreign_status_line_and_a_missing_program_fail(
    served: Served, claude_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("CONTEXTD_PORT", "7999")
    assert main(["install"]) == 0
    monkeypatch.setenv("CONTEXTD_PORT", str(served.port))
    settings = json.loads((claude_dir / "settings.json").read_text())
    settings["statusLine"] = {"type": "command", "command": "my-line"}
    settings["hooks"]["SessionStart"][0]["hooks"][0]["command"] = "/gone/contextd hook"
    (claude_dir / "settings.json").write_text(json.dumps(settings))
    code, checks = doctor(capsys)
    assert code == 1
    assert "127.0.0.1:7999/hooks" in checks["hooks"]
    assert checks["hooks"].startswith("FAIL")
    assert "--force" in checks["status line"]
    assert checks["programs"].startswith("FAIL /gone/contextd hook")
    assert checks["daemon (http)"].startswith("OK")


def test_invalid_settings_and_disabled_hooks_are_reported(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (claude_dir / "settings.json").write_text("{oops")
    _, checks = doctor(capsys)
    assert checks["settings.json"].startswith("FAIL")
    assert "line 1 column 2" in checks["settings.json"]
    (claude_dir / "settings.json").write_text('{"disableAllHooks": true}')
    _, checks = doctor(capsys)
    assert "disableAllHooks" in checks["hooks"]
