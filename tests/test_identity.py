"""User ids: which material identifies the user, and how it is hashed."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

from contextd.identity import (
    account_uuid,
    hashed_id,
    identity_material,
    install_secret,
    local_user_id,
)

KEY = "sk-ant-api03-identity-test"
UUID = "0f0e0d0c-0000-4000-8000-000000000001"


def test_a_key_in_the_environment_comes_first(tmp_path: Path) -> None:
    env = {"ANTHROPIC_AUTH_TOKEN": "tok", "ANTHROPIC_API_KEY": KEY,
           "CLAUDE_CONFIG_DIR": str(tmp_path)}  # fmt: skip
    assert identity_material(env) == KEY
    assert identity_material({"ANTHROPIC_AUTH_TOKEN": "tok", "ANTHROPIC_API_KEY": ""}) == "tok"
    assert identity_material({"CLAUDE_CODE_OAUTH_TOKEN": "oat"}) == "oat"


def test_without_a_key_the_account_uuid_then_the_os_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    state = {"numStartups": 1, "projects": {"/p": {"x": "accountUuid"}},
             "oauthAccount": {"emailAddress": "a@b.c", "accountUuid": UUID}}  # fmt: skip
    (tmp_path / ".claude.json").write_text(json.dumps(state, indent=2))
    assert identity_material({"CLAUDE_CONFIG_DIR": str(tmp_path)}) == f"account:{UUID}"
    assert account_uuid(tmp_path / "absent.json") is None
    assert identity_material({}) == f"os-user:{getpass.getuser()}"  # no ~/.claude.json


def test_hmac_ids_are_keyed_and_sha256_ids_are_the_plain_prefix(tmp_path: Path) -> None:
    secret = install_secret(tmp_path)
    assert stat.S_IMODE((tmp_path / "install.secret").stat().st_mode) == 0o600
    keyed = hashed_id(KEY, secret, "hmac")
    assert keyed == hmac.new(secret, KEY.encode(), hashlib.sha256).hexdigest()[:16]
    assert keyed != hashlib.sha256(KEY.encode()).hexdigest()[:16]
    assert hashed_id(KEY, secret, "sha256") == hashlib.sha256(KEY.encode()).hexdigest()[:16]
    assert install_secret(tmp_path) == secret  # stable across calls (and restarts)
    assert local_user_id(secret, "sha256") == hashed_id(f"os-user:{getpass.getuser()}", b"",
                                                        "sha256")  # fmt: skip


def test_the_mcp_server_takes_the_same_id_as_the_hooks_in_the_same_environment(
    tmp_path: Path,
) -> None:
    from contextd.mcp.stdio import local_user  # noqa: PLC0415

    secret = install_secret(tmp_path)
    env = {"ANTHROPIC_API_KEY": KEY}
    assert local_user(tmp_path, "hmac", env) == hashed_id(KEY, secret, "hmac")
    assert local_user(tmp_path, "sha256", env) == hashlib.sha256(KEY.encode()).hexdigest()[:16]
    fresh = tmp_path / "none"
    assert local_user(fresh, "hmac", env) != local_user(fresh, "hmac", env)  # no secret: ephemeral
    assert not fresh.exists()
