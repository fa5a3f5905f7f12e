"""Where transcripts are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextd.errors import ConfigDirError
from contextd.ingest.discovery import claude_roots, transcript_files


def _root(base: Path, name: str) -> Path:
    root = base / name
    (root / "projects").mkdir(parents=True)
    return root


def test_claude_config_dir_accepts_a_comma_separated_list(tmp_path: Path) -> None:
    a, b = _root(tmp_path, "a"), _root(tmp_path, "b")
    home = tmp_path / "home"
    home.mkdir()
    roots = claude_roots((), {"CLAUDE_CONFIG_DIR": f"{a}, {b},"}, home)
    assert roots == [a, b]


def test_default_roots_are_used_when_present(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dot = _root(home, ".claude")
    legacy = _root(home / ".config", "claude")
    assert claude_roots((), {}, home) == [dot, legacy]
    xdg = _root(tmp_path / "xdg", "claude")
    assert claude_roots((), {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, home) == [dot, xdg]


def test_the_same_directory_is_listed_once(tmp_path: Path) -> None:
    root = _root(tmp_path, "c")
    link = tmp_path / "link"
    link.symlink_to(root)
    assert claude_roots([f"{root},{link}"], {}, tmp_path) == [root]


def test_explicit_dirs_replace_the_defaults_and_must_exist(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _root(home, ".claude")
    only = _root(tmp_path, "only")
    assert claude_roots([str(only)], {}, home) == [only]
    with pytest.raises(ConfigDirError, match="not found"):
        claude_roots([str(tmp_path / "missing")], {}, home)
    with pytest.raises(ConfigDirError, match="not found"):
        claude_roots((), {"CLAUDE_CONFIG_DIR": str(tmp_path / "nope")}, home)


def test_transcripts_include_subagent_files_in_full_path_order(tmp_path: Path) -> None:
    root = _root(tmp_path, "c")
    proj = root / "projects" / "-home-u-p"
    (proj / "s1" / "subagents").mkdir(parents=True)
    for rel in ["s2.jsonl", "s1.jsonl", "s1/subagents/agent-a1.jsonl", "notes.txt"]:
        (proj / rel).write_text("{}\n")
    names = [p.relative_to(proj).as_posix() for p in transcript_files([root])]
    assert names == ["s1.jsonl", "s1/subagents/agent-a1.jsonl", "s2.jsonl"]


def test_a_root_without_projects_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert list(transcript_files([tmp_path / "empty"])) == []
