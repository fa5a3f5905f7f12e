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
==================  =========================  ==========================================
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from contextd.errors import ConfigError
from contextd.ingest.tailer import DEFAULT_MAX_LINE
from contextd.sessions import EngineConfig


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/contextd`` (``~/.local/state/contextd``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "contextd"


@dataclass(frozen=True, slots=True)
class Settings:
    db: Path = field(default_factory=lambda: state_dir() / "contextd.db")
    config_dirs: tuple[str, ...] = ()
    engine: EngineConfig = field(default_factory=EngineConfig)
    max_line_bytes: int = DEFAULT_MAX_LINE


_ENGINE_FLOATS = ("idle_after", "expire_after", "warn_percent", "critical_percent")
_ENGINE_INTS = ("default_window",)


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


def _apply(settings: Settings, values: Mapping[str, object], where: str) -> Settings:
    engine_changes: dict[str, int | float] = {}
    changes: dict[str, object] = {}
    for key, value in values.items():
        name = f"{where}{key.upper()}" if where == "CONTEXTD_" else f"{where}{key}"
        if key == "db":
            changes["db"] = Path(str(value)).expanduser()
        elif key == "config_dirs":
            dirs = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else value
            if not isinstance(dirs, list) or not all(isinstance(p, str) for p in dirs):
                raise ConfigError(f"{name}: expected a list of paths")
            changes["config_dirs"] = tuple(dirs)
        elif key in _ENGINE_FLOATS:
            engine_changes[key] = _number(name, value, float)
        elif key in _ENGINE_INTS:
            engine_changes[key] = _number(name, value, int)
        elif key == "max_line_bytes":
            changes["max_line_bytes"] = _number(name, value, int)
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
    settings = Settings(db=state_dir(env) / "contextd.db")
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
