"""Configuration: environment variables and an optional TOML file, in that order of precedence.

    DATABASE_URL         use this PostgreSQL instead of the embedded one
    PAYENGINE_DATA_DIR   where the embedded database and other local state live
                         (default: $XDG_DATA_HOME/payengine, else ~/.local/share/payengine;
                         /var/lib/payengine for root)
    PAYENGINE_CONFIG     path of a TOML file (default: ./payengine.toml when it exists)

The TOML file may hold `database_url`, `data_dir` and an `[engine]` table whose keys are the
fields of `engine.limits.EngineConfig` (e.g. `capture_attempts_max = 12`). An unknown key or a
value of the wrong type is an error that names it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from engine.errors import InvalidInput
from engine.limits import EngineConfig
from payengine.database import default_data_dir


class ConfigError(InvalidInput):
    """The configuration is unusable; the message names the key."""


@attrs.frozen
class Config:
    data_dir: Path
    database_url: str | None = None
    engine: EngineConfig = attrs.Factory(EngineConfig)
    source: str = "defaults"


def _engine_from_table(table: Mapping[str, Any], origin: str) -> EngineConfig:
    fields = {f.name: f for f in attrs.fields(EngineConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{origin}: unknown engine setting {key!r}")
        default = fields[key].default
        if isinstance(default, frozenset):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{origin}: engine.{key} must be a list of strings")
            value = frozenset(value)
        elif isinstance(default, bool) or isinstance(value, bool):
            raise ConfigError(f"{origin}: engine.{key} must be a number, got {value!r}")
        elif isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"{origin}: engine.{key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if not isinstance(value, int | float):
                raise ConfigError(f"{origin}: engine.{key} must be a number, got {value!r}")
            value = float(value)
        values[key] = value
    try:
        return EngineConfig(**values).check()
    except InvalidInput as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_config(env: Mapping[str, str] | None = None, path: str | None = None) -> Config:
    env = os.environ if env is None else env
    file_path = path or env.get("PAYENGINE_CONFIG")
    table: dict[str, Any] = {}
    source = "defaults"
    if file_path is None and Path("payengine.toml").is_file():
        file_path = "payengine.toml"
    if file_path is not None:
        try:
            with open(file_path, "rb") as handle:
                table = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {file_path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file_path} is not valid TOML: {exc}") from None
        source = file_path
    known = {"database_url", "data_dir", "engine"}
    for key in table:
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}")
    engine_table = table.get("engine", {})
    if not isinstance(engine_table, dict):
        raise ConfigError(f"{source}: [engine] must be a table")
    data_dir = env.get("PAYENGINE_DATA_DIR") or table.get("data_dir")  # env wins over the file
    database_url = env.get("DATABASE_URL") or table.get("database_url")
    if database_url is not None and not str(database_url).startswith(
        ("postgres://", "postgresql://")
    ):
        raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")
    return Config(
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(env),
        database_url=database_url or None,
        engine=_engine_from_table(engine_table, source),
        source=source,
    )
