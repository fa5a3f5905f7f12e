"""Where contextd keeps its files. Standard library only, and no ``pathlib`` on the string
functions: the status line and hook commands start with them."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def state_home(env: Mapping[str, str]) -> str:
    """``$XDG_STATE_HOME/contextd`` (``~/.local/state/contextd``), as a string."""
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "contextd")


def runtime_home(env: Mapping[str, str]) -> str:
    """``$XDG_RUNTIME_DIR/contextd``, else ``<state dir>/run``, as a string."""
    runtime = env.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "contextd") if runtime else os.path.join(state_home(env), "run")


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/contextd`` (``~/.local/state/contextd``)."""
    from pathlib import Path  # noqa: PLC0415

    return Path(state_home(os.environ if env is None else env))


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/contextd``, else ``<state dir>/run``: where the unix socket lives."""
    from pathlib import Path  # noqa: PLC0415

    return Path(runtime_home(os.environ if env is None else env))
