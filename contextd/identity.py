"""User identity without raw identifiers.

A user id is the first 16 hex characters of HMAC-SHA-256 over some identifying material (an
API key, an OAuth token, an account uuid or the OS user name) keyed with a per-install secret
(a 0600 file in the state directory). So no raw key is ever stored, logged or exported, and
ids do not link across installs. ``plain_sha256`` offers the anthropic-spy convention
(SHA-256[:16] of the material) for tools that share ids across installs (setting
``identity_hash = "sha256"``).

Which material (:func:`identity_material`), first found wins: ``ANTHROPIC_API_KEY``,
``ANTHROPIC_AUTH_TOKEN``, ``CLAUDE_CODE_OAUTH_TOKEN`` (the key itself, so the sha256 option
matches other tools), then the OAuth account uuid in Claude Code's ``.claude.json``
(``oauthAccount.accountUuid``, as ``account:<uuid>``), then the OS user (``os-user:<name>``).
The daemon cannot see a key; ``contextd hook`` and ``contextd statusline``, which run in
Claude Code's environment, compute the id there and send only the id. This module uses the
standard library only: it is on the status line's start-up path.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

USER_ID = re.compile(r"^[0-9a-f]{16}$")
IDENTITY_HASHES = ("hmac", "sha256")
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
_ACCOUNT = re.compile(rb'"accountUuid"\s*:\s*"([0-9A-Za-z-]{1,64})"')


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


def os_user_material() -> str:
    return f"os-user:{getpass.getuser()}"


def local_user_id(secret: bytes, mode: str = "hmac") -> str:
    """The id of the OS user running this process (no API key is visible to the daemon)."""
    return hashed_id(os_user_material(), secret, mode)


def hashed_id(material: str, secret: bytes, mode: str) -> str:
    """The user id of ``material``: keyed (``hmac``) or plain (``sha256``)."""
    return plain_sha256(material) if mode == "sha256" else user_id(secret, material)


def account_uuid(claude_json: Path) -> str | None:
    """``oauthAccount.accountUuid`` of Claude Code's ``.claude.json``, found without parsing
    the whole file (it can be megabytes, and the status line runs often)."""
    try:
        raw = claude_json.read_bytes()
    except OSError:
        return None
    start = raw.find(b'"oauthAccount"')
    found = _ACCOUNT.search(raw, start, start + 4096) if start >= 0 else None
    return found.group(1).decode() if found else None


def identity_material(env: Mapping[str, str]) -> str:
    """What identifies the user of a Claude Code session whose environment is ``env``."""
    for name in KEY_VARIABLES:
        if env.get(name):
            return env[name]
    config = env.get("CLAUDE_CONFIG_DIR")
    claude_json = Path(config) / ".claude.json" if config else Path.home() / ".claude.json"
    account = account_uuid(claude_json)
    if account:
        return f"account:{account}"
    return os_user_material()


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
