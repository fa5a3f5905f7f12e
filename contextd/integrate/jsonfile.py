"""Careful edits of the JSON files Claude Code owns (``settings.json``, ``.claude.json``,
``.mcp.json``).

A file is read once, parsed, changed in memory and written back only when the data changed:
then a timestamped copy of the old file is kept next to it (``<name>.bak-<UTC time>``) and
the new one replaces it atomically, with the old file's mode (``.claude.json`` is 0600). The
new text keeps the file's key order, its indentation (detected: spaces or a tab; Claude Code
writes two spaces), non-ASCII characters as they are and its final newline, so a file in
Claude Code's own format differs only where contextd changed something. A file that did not
change is not touched at all. Invalid JSON is an error naming the file and the position;
the file stays as it was.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contextd.errors import ConfigError

_INDENT = re.compile(rb"\n([ \t]+)\S")


@dataclass(slots=True)
class JsonFile:
    """One JSON object file as read: its path, raw bytes (None: absent) and data."""

    path: Path
    raw: bytes | None
    data: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> JsonFile:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path, None, {})
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        if not raw.strip():
            return cls(path, raw, {})
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
                "nothing was changed"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; nothing was changed") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top; nothing was changed")
        return cls(path, raw, data)

    def render(self, data: dict[str, Any]) -> bytes:
        """``data`` in this file's style (indent, final newline)."""
        indent: str | int = 2
        newline = True
        if self.raw:
            found = _INDENT.search(self.raw)
            if found:
                unit = found.group(1).decode()
                indent = unit if unit.startswith("\t") else len(unit)
            newline = self.raw.endswith(b"\n")
        text = json.dumps(data, indent=indent, ensure_ascii=False)
        return (text + ("\n" if newline else "")).encode()

    def write(
        self, data: dict[str, Any], *, now: datetime | None = None, new_mode: int = 0o644
    ) -> Path | None:
        """Replace the file with ``data`` (atomically); return the backup made, if any. A new
        file gets ``new_mode``; an existing one keeps its mode.

        Refuses (ConfigError) when the file changed on disk since it was read: another
        program (a running Claude Code) wrote it meanwhile, and its change must not be lost.
        """
        current: bytes | None
        try:
            current = self.path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != self.raw:
            raise ConfigError(f"{self.path} changed while contextd was editing it; run again")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        backup = None
        mode = new_mode
        if self.raw is not None:
            mode = self.path.stat().st_mode & 0o7777
            stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
            backup = self.path.with_name(f"{self.path.name}.bak-{stamp}")
            n = 1
            while backup.exists():  # two runs within one second keep both backups
                n += 1
                backup = self.path.with_name(f"{self.path.name}.bak-{stamp}-{n}")
            _write_atomic(backup, self.raw, mode)
        _write_atomic(self.path, self.render(data), mode)
        return backup


def _write_atomic(path: Path, content: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
