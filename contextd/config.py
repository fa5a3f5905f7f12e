"""Settings: defaults, then a TOML file (``--config``), then ``CONTEXTD_*`` environment variables,
then command-line options. Invalid values raise :class:`~contextd.errors.ConfigError` naming the
setting.

Keys (TOML top level / environment):

==================  =========================  ==========================================
key                 environment                meaning
==================  =========================  ==========================================
``db``              ``CONTEXTD_DB``            state database (SQLite file)
``config_dirs``     ``CONTEXTD_CONFIG_DIRS``   Claude Code config roots (comma-separated)
``idle_after``      ``CONTEXTD_IDLE_AFTER``    seconds without activity before "idle"
``expire_after``    ``CONTEXTD_EXPIRE_AFTER``  seconds without activity before "expired"
``warn_percent``    ``CONTEXTD_WARN_PERCENT``  first context threshold (default 70)
``critical_percent`` ``CONTEXTD_CRITICAL_PERCENT`` second threshold (default 90)
``default_window``  ``CONTEXTD_DEFAULT_WINDOW`` window of unknown models (default 200000)
``max_line_bytes``  ``CONTEXTD_MAX_LINE_BYTES`` transcript lines above this are skipped
``host``            ``CONTEXTD_HOST``          HTTP address (default 127.0.0.1)
``port``            ``CONTEXTD_PORT``          HTTP port (default 7323)
``socket``          ``CONTEXTD_SOCKET``        unix socket (default $XDG_RUNTIME_DIR/contextd/)
``token``           ``CONTEXTD_TOKEN``         bearer token; required off loopback
``allowed_hosts``   ``CONTEXTD_ALLOWED_HOSTS`` extra Host header values to accept
``max_body_bytes``  ``CONTEXTD_MAX_BODY_BYTES`` request bodies above this get 413
``max_series``      ``CONTEXTD_MAX_SERIES``    per-session metric series cap (default 500)
``tick_interval``   ``CONTEXTD_TICK_INTERVAL`` seconds between idle/expiry checks
``rescan_interval`` ``CONTEXTD_RESCAN_INTERVAL`` seconds between full transcript rescans
``prometheus_url``  ``CONTEXTD_PROMETHEUS_URL`` PromQL backend of ``contextd monitor``
                                               (default VictoriaMetrics, 127.0.0.1:8428)
``monitor_refresh`` ``CONTEXTD_MONITOR_REFRESH`` seconds between two monitor refreshes (5)
``pricing``         ``CONTEXTD_PRICING``       LiteLLM-format price file over the bundled table
``usage_interval``  ``CONTEXTD_USAGE_INTERVAL`` seconds between usage (cost, block) refreshes
``identity_hash``   ``CONTEXTD_IDENTITY_HASH`` user ids: ``hmac`` (keyed, default) or ``sha256``
``usage_horizon_hours`` ``CONTEXTD_USAGE_HORIZON_HOURS`` hours of usage entries the daemon
                                               keeps (24; at least 5, one block)
``proxy``           ``CONTEXTD_PROXY``         run the API proxy (``true``/``false``)
``proxy_port``      ``CONTEXTD_PROXY_PORT``    its port on 127.0.0.1 (default 7324)
``proxy_upstream``  ``CONTEXTD_PROXY_UPSTREAM`` API base URL it forwards to
``proxy_max_body_bytes`` ``CONTEXTD_PROXY_MAX_BODY_BYTES`` proxied request bodies cap (32 MiB)
``proxy_connect_timeout`` ``CONTEXTD_PROXY_CONNECT_TIMEOUT`` seconds to connect upstream
``proxy_read_timeout`` ``CONTEXTD_PROXY_READ_TIMEOUT`` seconds of upstream silence tolerated
``proxy_session_header`` ``CONTEXTD_PROXY_SESSION_HEADER`` extra header naming the session
``store``           ``CONTEXTD_STORE``         session records: a SQLite file (default
                                               ``history.db`` by the state db) or a
                                               ``postgresql://`` URL
``retention_days``  ``CONTEXTD_RETENTION_DAYS`` session records older than this are deleted
``record_project``  ``CONTEXTD_RECORD_PROJECT`` records name the project (``name``) or hash it
``record_settle``   ``CONTEXTD_RECORD_SETTLE`` seconds after a session's end before its record
``forward``         ``CONTEXTD_FORWARD``       central contextd to send session records to
``forward_token``   ``CONTEXTD_FORWARD_TOKEN`` the central's bearer token
==================  =========================  ==========================================
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from contextd.errors import ConfigError
from contextd.identity import IDENTITY_HASHES
from contextd.ingest.tailer import DEFAULT_MAX_LINE
from contextd.paths import runtime_dir, state_dir
from contextd.sessions import EngineConfig

__all__ = ["DEFAULT_PORT", "LOOPBACK", "Settings", "load_settings", "runtime_dir", "state_dir"]


DEFAULT_PORT = 7323
DEFAULT_PROXY_PORT = 7324
ANTHROPIC_API = "https://api.anthropic.com"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class Settings:
    db: Path = field(default_factory=lambda: state_dir() / "contextd.db")
    config_dirs: tuple[str, ...] = ()
    engine: EngineConfig = field(default_factory=EngineConfig)
    max_line_bytes: int = DEFAULT_MAX_LINE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    socket: Path = field(default_factory=lambda: runtime_dir() / "contextd.sock")
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    max_series: int = 500
    tick_interval: float = 5.0
    rescan_interval: float = 60.0
    prometheus_url: str = "http://127.0.0.1:8428"
    monitor_refresh: float = 5.0
    pricing: Path | None = None
    usage_interval: float = 5.0
    identity_hash: str = "hmac"
    usage_horizon_hours: float = 24.0
    proxy: bool = False
    proxy_port: int = DEFAULT_PROXY_PORT
    proxy_upstream: str = ANTHROPIC_API
    proxy_max_body_bytes: int = 32 * 1024 * 1024
    proxy_connect_timeout: float = 10.0
    proxy_read_timeout: float = 600.0  # Claude Code's own request timeout
    proxy_session_header: str | None = None
    store: str | None = None
    retention_days: float | None = None
    record_project: str = "name"
    record_settle: float = 30.0
    forward: str | None = None
    forward_token: str | None = None

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK


def _number(name: str, value: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name}: must be positive, got {value!r}")
    return number


def _int(name: str, value: object) -> int:
    return int(_number(name, value, int))


def _float(name: str, value: object) -> float:
    return float(_number(name, value, float))


def _port(name: str, value: object) -> int:
    port = _int(name, value)
    if port >= 65536:
        raise ConfigError(f"{name}: not a TCP port: {value!r}")
    return port


def _horizon(name: str, value: object) -> float:
    hours = _float(name, value)
    if not 5 <= hours < float("inf"):
        raise ConfigError(f"{name}: at least 5 hours (one 5-hour block), got {value!r}")
    return hours


def _path(name: str, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: expected a path")
    return Path(value).expanduser()


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: expected a non-empty string")
    return value


def _identity_hash(name: str, value: object) -> str:
    if value not in IDENTITY_HASHES:
        raise ConfigError(f"{name}: expected one of {', '.join(IDENTITY_HASHES)}, got {value!r}")
    return str(value)


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                     "no", "off"):  # fmt: skip
        return value.lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def http_url(name: str, value: object) -> str:
    """An http(s) base URL, without a trailing slash (else a ConfigError naming ``name``)."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _record_project(name: str, value: object) -> str:
    if value not in ("name", "hash"):
        raise ConfigError(f"{name}: expected name or hash, got {value!r}")
    return str(value)


def _settle(name: str, value: object) -> float:
    return 0.0 if value in (0, "0") else _float(name, value)


def _strings(name: str, value: object) -> tuple[str, ...]:
    items = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise ConfigError(f"{name}: expected a list of strings")
    return tuple(items)


_SETTINGS: dict[str, Callable[[str, object], object]] = {
    "db": _path, "config_dirs": _strings, "max_line_bytes": _int, "host": _text,
    "port": _port, "socket": _path, "token": _text, "allowed_hosts": _strings,
    "max_body_bytes": _int, "max_series": _int, "tick_interval": _float,
    "rescan_interval": _float, "prometheus_url": _text, "monitor_refresh": _float,
    "pricing": _path, "usage_interval": _float, "identity_hash": _identity_hash,
    "usage_horizon_hours": _horizon, "proxy": _flag, "proxy_port": _port,
    "proxy_upstream": http_url, "proxy_max_body_bytes": _int, "proxy_connect_timeout": _float,
    "proxy_read_timeout": _float, "proxy_session_header": _text,
    "store": _text, "retention_days": _float, "record_project": _record_project,
    "record_settle": _settle, "forward": _text, "forward_token": _text,
}  # fmt: skip
_ENGINE: dict[str, Callable[[str, object], object]] = {
    "idle_after": _float, "expire_after": _float, "warn_percent": _float,
    "critical_percent": _float, "default_window": _int,
}  # fmt: skip


def apply_settings(settings: Settings, values: Mapping[str, object], where: str) -> Settings:
    """``settings`` with ``values`` (checked, errors prefixed with ``where``) applied."""
    return _apply(settings, values, where)


def _apply(settings: Settings, values: Mapping[str, object], where: str) -> Settings:
    engine_changes: dict[str, object] = {}
    changes: dict[str, object] = {}
    for key, value in values.items():
        name = f"{where}{key.upper()}" if where == "CONTEXTD_" else f"{where}{key}"
        if key in _SETTINGS:
            changes[key] = _SETTINGS[key](name, value)
        elif key in _ENGINE:
            engine_changes[key] = _ENGINE[key](name, value)
        else:
            raise ConfigError(f"{name}: unknown setting")
    if engine_changes:
        try:
            changes["engine"] = replace(settings.engine, **engine_changes)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigError(f"{where}engine: {exc}") from None
    return replace(settings, **changes)  # type: ignore[arg-type]


def load_settings(
    config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults ← TOML file ← ``CONTEXTD_*`` environment."""
    env = os.environ if env is None else env
    settings = Settings(
        db=state_dir(env) / "contextd.db", socket=runtime_dir(env) / "contextd.sock"
    )
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        settings = _apply(settings, data, f"{config_file}: ")
    from_env = {
        key[len("CONTEXTD_") :].lower(): value
        for key, value in env.items()
        if key.startswith("CONTEXTD_") and value != ""
    }
    return _apply(settings, from_env, "CONTEXTD_") if from_env else settings
