"""User identity without raw identifiers.

A user id is the first 16 hex characters of HMAC-SHA-256 over some identifying material (an
API key, an OAuth token, an account uuid or the OS user name) keyed with a per-install secret
(a 0600 file in the state directory). So no raw key is ever stored, logged or exported, and
ids do not link across installs. ``plain_sha256`` offers the anthropic-spy convention
(SHA-256[:16] of the material) for tools that share ids across installs.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
from collections import OrderedDict
from pathlib import Path

USER_ID = re.compile(r"^[0-9a-f]{16}$")


def install_secret(state_dir: Path) -> bytes:
    """The per-install secret, created (0600, atomically) on first use."""
    path = state_dir / "install.secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    try:
        os.link(tmp, path)  # never replace a secret another process wrote meanwhile
    except FileExistsError:
        os.unlink(tmp)
        return bytes.fromhex(path.read_text().strip())
    os.unlink(tmp)
    return secret


def user_id(secret: bytes, material: str) -> str:
    """The keyed user id of ``material``."""
    return hmac.new(secret, material.encode(), hashlib.sha256).hexdigest()[:16]


def plain_sha256(material: str) -> str:
    """SHA-256[:16] of ``material``, as anthropic-spy computes its user ids."""
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def local_user_id(secret: bytes) -> str:
    """The id of the OS user running this process (no API key is visible to the daemon)."""
    return user_id(secret, f"os-user:{getpass.getuser()}")


class ToolUseIndex:
    """A short-lived ``tool_use_id`` → session map, filled by ``PreToolUse`` hooks.

    An MCP ``tools/call`` carries ``_meta["claudecode/toolUseId"]``, the id of the tool use the
    ``PreToolUse`` hook announced just before: the join from an MCP request to its session.
    Entries live ``ttl`` seconds; at most ``size`` are kept (oldest dropped first).
    """

    def __init__(self, ttl: float = 900.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def add(self, tool_use_id: str, session_id: str, now: float) -> None:
        self._entries[tool_use_id] = (session_id, now + self.ttl)
        self._entries.move_to_end(tool_use_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def session(self, tool_use_id: str, now: float) -> str | None:
        found = self._entries.get(tool_use_id)
        if found is None or found[1] < now:
            return None
        return found[0]

    def __len__(self) -> int:
        return len(self._entries)
