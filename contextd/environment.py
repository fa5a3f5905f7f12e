"""What kind of environment a Claude Code session runs in: its ``session_type``.

Seen by ``contextd hook`` and ``contextd statusline``, which Claude Code starts with its own
environment (the daemon, reached by http hooks, sees none of it). Standard library only, and
cheap: a few environment look-ups and at most three ``stat``/``open`` calls.

Types, by precedence (the first that matches wins):

==================  ===========================================================================
``noninteractive``  ``CLAUDE_CODE_ENTRYPOINT`` starts with ``sdk`` (``claude -p`` is
                    ``sdk-cli``; the Agent SDKs ``sdk-ts``/``sdk-py``)
``vscode``          ``TERM_PROGRAM=vscode``, ``VSCODE_PID``/``VSCODE_IPC_HOOK_CLI``, or the
                    ``claude-vscode`` entrypoint (also Cursor and other VS Code forks)
``jetbrains``       ``TERMINAL_EMULATOR=JetBrains-JediTerm`` or ``__INTELLIJ_COMMAND_HISTFILE__``
``jupyter``         ``JPY_PARENT_PID``, ``JPY_SESSION_NAME`` or ``JUPYTER_SERVER_ROOT``
``ssh``             ``SSH_CONNECTION``, ``SSH_CLIENT`` or ``SSH_TTY``
``tmux``            ``TMUX``
``screen``          ``STY``
``container``       ``/.dockerenv``, ``/run/.containerenv``, ``$container`` or
                    ``KUBERNETES_SERVICE_HOST``
``terminal``        a controlling terminal (``/dev/tty`` opens) or ``TERM_PROGRAM`` set
``unknown``         none of these
==================  ===========================================================================

An IDE wins over SSH (VS Code Remote-SSH is still VS Code), SSH over the multiplexer it runs,
and a multiplexer over the container it runs in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

SESSION_TYPES = ("noninteractive", "vscode", "jetbrains", "jupyter", "ssh", "tmux", "screen",
                 "container", "terminal", "unknown")  # fmt: skip
UNKNOWN = "unknown"

_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vscode", ("VSCODE_PID", "VSCODE_IPC_HOOK_CLI")),
    ("jetbrains", ("__INTELLIJ_COMMAND_HISTFILE__",)),
    ("jupyter", ("JPY_PARENT_PID", "JPY_SESSION_NAME", "JUPYTER_SERVER_ROOT")),
    ("ssh", ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")),
    ("tmux", ("TMUX",)),
    ("screen", ("STY",)),
    ("container", ("container", "KUBERNETES_SERVICE_HOST")),
)


def has_controlling_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def in_container() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def session_type(
    env: Mapping[str, str],
    *,
    tty: Callable[[], bool] = has_controlling_terminal,
    container: Callable[[], bool] = in_container,
) -> str:
    """The session type of a process with environment ``env`` (see the module table)."""
    entrypoint = env.get("CLAUDE_CODE_ENTRYPOINT", "")
    if entrypoint.startswith("sdk"):
        return "noninteractive"
    if env.get("TERM_PROGRAM") == "vscode" or entrypoint == "claude-vscode":
        return "vscode"
    if env.get("TERMINAL_EMULATOR", "").startswith("JetBrains"):
        return "jetbrains"
    for kind, names in _RULES:
        if any(env.get(name) for name in names):
            return kind
    if container():
        return "container"
    if tty() or env.get("TERM_PROGRAM"):
        return "terminal"
    return UNKNOWN


def describe(env: Mapping[str, str]) -> dict[str, str]:
    """The ``contextd_env`` fields of a forwarded payload (besides the user id)."""
    out = {"session_type": session_type(env)}
    entrypoint = env.get("CLAUDE_CODE_ENTRYPOINT")
    if entrypoint:
        out["entrypoint"] = entrypoint[:64]
    return out
