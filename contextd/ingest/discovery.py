"""Where Claude Code keeps transcripts, and which files are transcripts.

Roots: the directories given explicitly (``--config-dir``), else every entry of
``$CLAUDE_CONFIG_DIR`` (comma-separated) plus ``~/.claude`` and ``$XDG_CONFIG_HOME/claude``
(``~/.config/claude``; only Claude Code 1.0.30-1.0.31 wrote there). Transcripts are the
``*.jsonl`` files under ``<root>/projects/``, sub-agent files under ``<session>/subagents/``
included. Explicitly named roots must exist and be readable; default ones are used if present.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from contextd.errors import ConfigDirError


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _checked(path: Path) -> Path:
    if not path.is_dir():
        raise ConfigDirError(f"Claude config dir not found: {path}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigDirError(f"Claude config dir not readable: {path}")
    return path


def claude_roots(
    explicit: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[Path]:
    """The Claude Code config roots to scan, without duplicates (by real path)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    chosen: list[Path] = []
    if explicit:
        for item in explicit:
            chosen.extend(_checked(Path(p).expanduser()) for p in _split(item))
    else:
        chosen.extend(
            _checked(Path(p).expanduser()) for p in _split(env.get("CLAUDE_CONFIG_DIR", ""))
        )
        xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        chosen.extend(p for p in (home / ".claude", Path(xdg) / "claude") if p.is_dir())
    unique: dict[str, Path] = {}
    for path in chosen:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def transcript_files(roots: Sequence[Path]) -> list[Path]:
    """Every transcript under ``<root>/projects``, in full-path order per root.

    Path order puts ``<session>.jsonl`` right before its ``<session>/subagents/`` files, and it
    is the order ccusage uses, so a response that two files share is credited the same way.
    """
    found: list[Path] = []
    for root in roots:
        projects = root / "projects"
        if not projects.is_dir():
            continue
        batch = [
            os.path.join(dirpath, name)
            for dirpath, _, filenames in os.walk(projects)
            for name in filenames
            if name.endswith(".jsonl")
        ]
        found.extend(Path(p) for p in sorted(batch))
    return found
