from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def claude_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``CLAUDE_CONFIG_DIR`` (and a scratch HOME: nothing may land in the real one),
    with no ``CONTEXTD_*`` setting from outside."""
    root = tmp_path / "claude-config"
    root.mkdir()
    for key in [k for k in os.environ if k.startswith("CONTEXTD_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root
