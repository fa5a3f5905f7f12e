"""Where contextd keeps its files (stdlib only: the status line and hook commands use it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/contextd`` (``~/.local/state/contextd``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "contextd"


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/contextd``, else ``<state dir>/run``: where the unix socket lives."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "contextd" if runtime else state_dir(env) / "run"
