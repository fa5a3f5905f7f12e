"""``contextd install`` / ``uninstall`` on real settings files in a temporary CLAUDE_CONFIG_DIR."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contextd.cli import main
from contextd.integrate.install import (
    HOOK_EVENTS,
    MARK_HEADER,
    contextd_args,
    is_contextd_handler,
    is_contextd_server,
    is_contextd_status_line,
)

USER_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"], "deny": []},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}],
        "Notification": [{"hooks": [{"type": "command", "command": "notify-send hi"}]}],
    },
    "env": {"FOO": "bär"},
}
USER_STATE: dict[str, Any] = {
    "numStartups": 3,
    "oauthAccount": {"accountUuid": "0f0e0d0c-0000-4000-8000-000000000001"},
    "mcpServers": {"github": {"type": "http", "url": "https://example.invalid/mcp"}},
    "projects": {"/p": {"allowedTools": []}},
}


def js(data: object) -> bytes:
    """JSON as Claude Code writes it (JSON.stringify(data, null, 2))."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode()


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def install(*args: str) -> int:
    return main(["install", *args])


def backups(root: Path) -> list[Path]:
    return sorted(root.glob("*.bak-*"))


def test_install_into_an_empty_config_dir_writes_hooks_mcp_and_status_line(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install() == 0
    settings = load(claude_dir / "settings.json")
    assert list(settings["hooks"]) == list(HOOK_EVENTS)
    for event in HOOK_EVENTS:
        (group,) = settings["hooks"][event]
        (handler,) = group["hooks"]
        assert is_contextd_handler(handler)
        if event == "SessionStart":
            assert handler["type"] == "command"
            assert handler["async"] is True
            assert contextd_args(handler["command"]) == ["hook"]
        else:
            assert handler == {"type": "http", "url": "http://127.0.0.1:7323/hooks",
                               "timeout": 1, "headers": {MARK_HEADER: "1"}}  # fmt: skip
    assert contextd_args(settings["statusLine"]["command"]) == ["statusline"]
    assert settings["statusLine"]["type"] == "command"
    state_file = claude_dir / ".claude.json"  # inside CLAUDE_CONFIG_DIR, as Claude Code reads it
    server = load(state_file)["mcpServers"]["contextd"]
    assert server["type"] == "stdio"
    assert server["args"][-1] == "mcp"
    assert os.path.isabs(server["command"])
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert backups(claude_dir) == []  # nothing existed, nothing to back up
    out = capsys.readouterr().out
    assert "added hooks SessionStart" in out
    assert "mcpServers.contextd" in out
    assert not (Path(os.environ["HOME"]) / ".claude.json").exists()


def test_second_install_changes_nothing_byte_for_byte(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install() == 0
    before = {p.name: p.read_bytes() for p in claude_dir.iterdir()}
    capsys.readouterr()
    assert install() == 0
    assert {p.name: p.read_bytes() for p in claude_dir.iterdir()} == before
    assert capsys.readouterr().out.count(": unchanged") == 2


def test_install_keeps_the_users_hooks_and_settings_untouched(claude_dir: Path) -> None:
    original = js(USER_SETTINGS) + b"\n"
    (claude_dir / "settings.json").write_bytes(original)
    assert install() == 0
    settings = load(claude_dir / "settings.json")
    assert {k: v for k, v in settings.items() if k not in ("hooks", "statusLine")} == {
        k: v for k, v in USER_SETTINGS.items() if k != "hooks"
    }
    assert list(settings)[:4] == ["model", "permissions", "hooks", "env"]  # order kept
    pre = settings["hooks"]["PreToolUse"]
    assert pre[0] == USER_SETTINGS["hooks"]["PreToolUse"][0]  # the user's group comes first
    assert len(pre) == 2
    assert is_contextd_handler(pre[1]["hooks"][0])
    assert settings["hooks"]["Notification"] == USER_SETTINGS["hooks"]["Notification"]
    (backup,) = backups(claude_dir)
    assert backup.name.startswith("settings.json.bak-")
    assert backup.read_bytes() == original
    # Untouched parts keep their exact bytes: "bär" stays UTF-8, the indent stays 2.
    text = (claude_dir / "settings.json").read_text()
    assert '  "env": {\n    "FOO": "bär"\n  }' in text
    assert text.endswith("}\n")


def test_uninstall_restores_the_users_file_byte_for_byte(claude_dir: Path) -> None:
    original = js(USER_SETTINGS)  # no final newline: kept that way too
    state = js(USER_STATE)
    (claude_dir / "settings.json").write_bytes(original)
    (claude_dir / ".claude.json").write_bytes(state)
    assert install() == 0
    assert main(["uninstall"]) == 0
    assert (claude_dir / "settings.json").read_bytes() == original
    assert (claude_dir / ".claude.json").read_bytes() == state
    assert main(["uninstall"]) == 0  # nothing left to remove: still fine, still the same
    assert (claude_dir / "settings.json").read_bytes() == original


def test_install_keeps_existing_mcp_servers_and_the_rest_of_claude_json(claude_dir: Path) -> None:
    (claude_dir / ".claude.json").write_bytes(js(USER_STATE))
    os.chmod(claude_dir / ".claude.json", 0o600)
    assert install() == 0
    state = load(claude_dir / ".claude.json")
    assert list(state["mcpServers"]) == ["github", "contextd"]
    assert state["mcpServers"]["github"] == USER_STATE["mcpServers"]["github"]
    assert {k: v for k, v in state.items() if k != "mcpServers"} == {
        k: v for k, v in USER_STATE.items() if k != "mcpServers"
    }
    assert stat.S_IMODE((claude_dir / ".claude.json").stat().st_mode) == 0o600
    (backup,) = [p for p in backups(claude_dir) if p.name.startswith(".claude.json")]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # the backup holds the same secrets


def test_install_refuses_to_replace_the_users_status_line_without_force(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = {"statusLine": {"type": "command", "command": "~/bin/my-line.sh", "padding": 0}}
    (claude_dir / "settings.json").write_bytes(js(mine))
    assert install() == 1
    err = capsys.readouterr().err
    assert "my-line.sh" in err
    assert "--force" in err
    assert err.count("\n") == 1
    assert (claude_dir / "settings.json").read_bytes() == js(mine)
    assert not (claude_dir / ".claude.json").exists()  # refused as a whole

    assert install("--no-statusline") == 0
    assert load(claude_dir / "settings.json")["statusLine"] == mine["statusLine"]
    assert install("--force") == 0
    assert is_contextd_status_line(load(claude_dir / "settings.json")["statusLine"])
    assert any(b.read_bytes() == js(mine) for b in backups(claude_dir))


def test_invalid_json_is_a_one_line_error_and_the_file_is_untouched(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = b'{\n  "model": "opus",\n  "hooks": {\n}\n'
    (claude_dir / "settings.json").write_bytes(broken)
    assert install() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(claude_dir / "settings.json") in err
    assert "line 5 column 1" in err
    assert (claude_dir / "settings.json").read_bytes() == broken
    assert backups(claude_dir) == []
    assert not (claude_dir / ".claude.json").exists()
    assert main(["uninstall"]) == 2
    assert (claude_dir / "settings.json").read_bytes() == broken


@pytest.mark.parametrize(
    "content", [b"[1, 2]", b'{"hooks": []}', b'{"hooks": {"Stop": {}}}']
)  # fmt: skip
def test_settings_of_the_wrong_shape_are_refused_untouched(
    claude_dir: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    (claude_dir / "settings.json").write_bytes(content)
    assert install() == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert (claude_dir / "settings.json").read_bytes() == content


def test_dry_run_reports_and_writes_nothing(
    claude_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (claude_dir / "settings.json").write_bytes(js(USER_SETTINGS))
    assert install("--dry-run") == 0
    out = capsys.readouterr().out
    assert "added hooks" in out
    assert out.count("(dry run: not written)") == 2
    assert sorted(p.name for p in claude_dir.iterdir()) == ["settings.json"]
    assert (claude_dir / "settings.json").read_bytes() == js(USER_SETTINGS)


def test_a_new_daemon_port_updates_contextds_hooks_in_place(
    claude_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (claude_dir / "settings.json").write_bytes(js(USER_SETTINGS))
    install()
    monkeypatch.setenv("CONTEXTD_PORT", "9999")
    capsys.readouterr()
    assert install() == 0
    assert "updated hooks SessionEnd" in capsys.readouterr().out
    hooks = load(claude_dir / "settings.json")["hooks"]
    urls = [h["url"] for groups in hooks.values() for g in groups for h in g["hooks"]
            if h["type"] == "http"]  # fmt: skip
    assert urls
    assert set(urls) == {"http://127.0.0.1:9999/hooks"}
    assert len(hooks["PreToolUse"]) == 2  # replaced, not added twice


def test_command_hooks_for_claude_code_without_http_hooks(claude_dir: Path) -> None:
    assert install("--hook-type", "command", "--no-statusline") == 0
    hooks = load(claude_dir / "settings.json")["hooks"]
    for event in HOOK_EVENTS:
        (handler,) = hooks[event][0]["hooks"]
        assert handler["type"] == "command"
        assert contextd_args(handler["command"]) == ["hook"]
        assert "async" not in handler
    assert "statusLine" not in load(claude_dir / "settings.json")


def test_a_token_is_sent_from_the_environment_never_written(
    claude_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTEXTD_TOKEN", "s3cret-token-value")
    assert install() == 0
    text = (claude_dir / "settings.json").read_text()
    assert "s3cret-token-value" not in text
    stop = load(claude_dir / "settings.json")["hooks"]["Stop"][0]["hooks"][0]
    assert stop["headers"]["Authorization"] == "Bearer $CONTEXTD_TOKEN"
    assert stop["allowedEnvVars"] == ["CONTEXTD_TOKEN"]


def test_options_given_to_install_reach_every_command(claude_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "contextd.toml"
    config.write_text("port = 7400\n")
    assert main(["--config", str(config), "install"]) == 0  # before the command works too
    settings = load(claude_dir / "settings.json")
    assert settings["hooks"]["Stop"][0]["hooks"][0]["url"] == "http://127.0.0.1:7400/hooks"
    assert contextd_args(settings["statusLine"]["command"]) == [
        "statusline", "--config", str(config)]  # fmt: skip
    server = load(claude_dir / ".claude.json")["mcpServers"]["contextd"]
    assert server["args"][-3:] == ["mcp", "--config", str(config)]


def test_project_scope_writes_the_project_files(
    claude_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".mcp.json").write_bytes(js({"mcpServers": {"db": {"command": "db-mcp"}}}))
    monkeypatch.chdir(project)
    assert install("--scope", "project") == 0
    settings = load(project / ".claude" / "settings.json")
    assert settings["enabledMcpjsonServers"] == ["contextd"]
    assert list(load(project / ".mcp.json")["mcpServers"]) == ["db", "contextd"]
    assert sorted(p.name for p in claude_dir.iterdir()) == []  # user scope untouched
    assert main(["uninstall", "--scope", "project"]) == 0
    assert load(project / ".claude" / "settings.json") == {}
    assert load(project / ".mcp.json") == {"mcpServers": {"db": {"command": "db-mcp"}}}


def test_uninstall_leaves_lookalike_entries_of_the_user_alone(claude_dir: Path) -> None:
    settings = {
        "hooks": {"Stop": [{"hooks": [
            {"type": "http", "url": "http://127.0.0.1:7323/hooks"},  # added by hand, no mark
            {"type": "command", "command": "contextd-helper hook"},
        ]}]},
        "statusLine": {"type": "command", "command": "ccusage statusline"},
    }  # fmt: skip
    (claude_dir / "settings.json").write_bytes(js(settings))
    (claude_dir / ".claude.json").write_bytes(js({"mcpServers": {"contextd": {
        "type": "http", "url": "http://127.0.0.1:7323/mcp"}}}))  # fmt: skip
    assert main(["uninstall"]) == 0
    assert load(claude_dir / "settings.json") == settings
    assert backups(claude_dir) == []


@pytest.mark.parametrize(
    ("command", "args"),
    [("/opt/bin/contextd hook", ["hook"]), ("'/a b/contextd' statusline --config x",
      ["statusline", "--config", "x"]), ("python3 -m contextd hook", ["hook"]),
     ("contextdx hook", None), ("echo 'unterminated", None), (["contextd", "mcp"], ["mcp"]),
     (7, None)],
)  # fmt: skip
def test_contextd_commands_are_recognised_by_their_program(command: object, args: object) -> None:
    assert contextd_args(command) == args


def test_servers_are_recognised_by_their_command() -> None:
    assert is_contextd_server({"command": "/x/contextd", "args": ["mcp", "--db", "d"]})
    assert not is_contextd_server({"command": "/x/contextd", "args": "mcp"})
    assert not is_contextd_server(["contextd"])


def test_the_console_script_installs_with_its_own_absolute_path(
    claude_dir: Path, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("contextd")
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(claude_dir)}
    done = subprocess.run([str(script), "install"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings = load(claude_dir / "settings.json")
    assert settings["statusLine"]["command"] == f"{script.resolve()} statusline"
    assert load(claude_dir / ".claude.json")["mcpServers"]["contextd"]["command"] == str(
        script.resolve())  # fmt: skip
