"""The proxy's settings and options: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextd.cli import main
from contextd.config import Settings, load_settings
from contextd.errors import ConfigError
from tests.served import free_port


def test_the_proxy_is_off_by_default_and_forwards_to_the_official_api() -> None:
    settings = Settings()
    assert settings.proxy is False
    assert (settings.proxy_port, settings.proxy_upstream) == (7324, "https://api.anthropic.com")
    assert settings.proxy_max_body_bytes == 32 * 1024 * 1024


def test_proxy_settings_come_from_the_environment_and_the_toml_file(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('proxy = true\nproxy_upstream = "https://gw.example/anthropic/"\n')
    env = {"CONTEXTD_PROXY_PORT": "9000", "CONTEXTD_PROXY_READ_TIMEOUT": "30",
           "CONTEXTD_PROXY_SESSION_HEADER": "X-Trace"}  # fmt: skip
    settings = load_settings(toml, env)
    assert settings.proxy is True
    assert settings.proxy_upstream == "https://gw.example/anthropic"
    assert (settings.proxy_port, settings.proxy_read_timeout) == (9000, 30.0)
    assert settings.proxy_session_header == "X-Trace"
    assert load_settings(None, {"CONTEXTD_PROXY": "off"}).proxy is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("CONTEXTD_PROXY", "maybe"), ("CONTEXTD_PROXY_UPSTREAM", "ftp://x"),
     ("CONTEXTD_PROXY_PORT", "70000"), ("CONTEXTD_PROXY_MAX_BODY_BYTES", "-1")],
)  # fmt: skip
def test_a_bad_proxy_setting_names_itself(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, {name: value})


def test_serve_refuses_a_bad_upstream_or_the_daemons_own_port_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["serve", "--config-dir", str(tmp_path), "--db", str(tmp_path / "s" / "d.db"),
              "--socket", str(tmp_path / "r" / "s.sock")]  # fmt: skip
    assert main([*common, "--proxy", "--upstream", "api.anthropic.com"]) == 2
    assert "--upstream: expected an http(s) URL" in capsys.readouterr().err
    port = free_port()
    assert main([*common, "--port", str(port), "--proxy", "--proxy-port", str(port)]) == 2
    assert "is the daemon's own port" in capsys.readouterr().err
    assert main([*common, "--proxy", "--proxy-port", "0"]) == 2
    assert "--proxy-port: not a TCP port" in capsys.readouterr().err
