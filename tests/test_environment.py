"""Session environment detection: each type, and the documented precedence."""

from __future__ import annotations

import pytest

from contextd.environment import SESSION_TYPES, describe, session_type


def kind(env: dict[str, str], *, tty: bool = False, container: bool = False) -> str:
    return session_type(env, tty=lambda: tty, container=lambda: container)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"CLAUDE_CODE_ENTRYPOINT": "sdk-cli", "SSH_CONNECTION": "a b c d"}, "noninteractive"),
     ({"CLAUDE_CODE_ENTRYPOINT": "sdk-ts"}, "noninteractive"),
     ({"TERM_PROGRAM": "vscode", "SSH_CONNECTION": "a b c d"}, "vscode"),
     ({"CLAUDE_CODE_ENTRYPOINT": "claude-vscode"}, "vscode"),
     ({"VSCODE_PID": "12", "TMUX": "x"}, "vscode"),
     ({"TERMINAL_EMULATOR": "JetBrains-JediTerm", "SSH_CLIENT": "a b c"}, "jetbrains"),
     ({"__INTELLIJ_COMMAND_HISTFILE__": "/h"}, "jetbrains"),
     ({"JPY_PARENT_PID": "7", "TMUX": "x"}, "jupyter"),
     ({"SSH_CONNECTION": "a b c d", "TMUX": "x", "container": "podman"}, "ssh"),
     ({"SSH_TTY": "/dev/pts/1"}, "ssh"),
     ({"TMUX": "/tmp/tmux,1,0", "STY": "1.pts"}, "tmux"),
     ({"STY": "1.pts-0.host"}, "screen"),
     ({"container": "podman"}, "container"),
     ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "container"),
     ({"TERM_PROGRAM": "iTerm.app", "CLAUDE_CODE_ENTRYPOINT": "cli"}, "terminal"),
     ({}, "unknown")],
)  # fmt: skip
def test_each_environment_gets_its_type_by_precedence(env: dict[str, str], expected: str) -> None:
    assert kind(env) == expected
    assert expected in SESSION_TYPES


def test_a_container_marker_file_and_a_terminal_are_detected() -> None:
    assert kind({}, container=True, tty=True) == "container"
    assert kind({}, tty=True) == "terminal"
    assert kind({"TMUX": "x"}, container=True) == "tmux"


def test_describe_carries_the_entrypoint_when_there_is_one() -> None:
    assert describe({"CLAUDE_CODE_ENTRYPOINT": "cli", "SSH_TTY": "/dev/pts/3"}) == {
        "session_type": "ssh", "entrypoint": "cli"}  # fmt: skip
    assert "entrypoint" not in describe({})
