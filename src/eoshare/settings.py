"""eoshare's settings: one object, read once (in ``create_app`` or the CLI).

Values come from ``EOSHARE_*`` environment variables (nested groups use ``__``, e.g.
``EOSHARE_API__MAX_LIMIT``) and, optionally, from a TOML file named by ``EOSHARE_CONFIG``.
Environment variables win over the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from eoshare.errors import InvalidRequestError


class ApiSettings(BaseModel):
    """Limits and identity of the HTTP API."""

    title: str = "eoshare"
    description: str = "An eoshare node: a STAC API for shared Earth-observation data."
    default_limit: int = 10
    max_limit: int = 1000
    max_body_bytes: int = 16 * 1024 * 1024
    # numberMatched is counted up to this many rows; past it, it is left out (it is
    # optional in STAC API) rather than scanning millions of rows for every page.
    count_limit: int = 100_000
    admin_token: str | None = None
    base_url: str | None = None


class Settings(BaseSettings):
    """Everything configurable about one eoshare node."""

    model_config = SettingsConfigDict(
        env_prefix="EOSHARE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("eoshare-data")
    # sqlite:///path/to/catalog.db, or empty for <data_dir>/catalog.db
    catalog: str = ""
    # file:///path/to/store, or empty for <data_dir>/store
    storage: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    api: ApiSettings = Field(default_factory=ApiSettings)

    @property
    def catalog_url(self) -> str:
        return self.catalog or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def storage_url(self) -> str:
        return self.storage or (self.data_dir / "store").resolve().as_uri()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by EOSHARE_CONFIG, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("EOSHARE_CONFIG")
        if not path:
            return {}
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except OSError as exc:
            raise InvalidRequestError(f"cannot read settings file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequestError(f"settings file {path} is not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, the TOML file and explicit overrides."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
