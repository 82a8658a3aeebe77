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


class OidcProviderSettings(BaseModel):
    """One external OpenID Connect identity provider (an agency's own IdP)."""

    issuer: str
    audience: str
    # keys: a JWKS file, or a JWKS URL (fetched and cached); one of them is needed
    jwks_file: Path | None = None
    jwks_url: str | None = None
    # asymmetric algorithms only: HS* would let a public key act as a shared secret
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    # every token of this IdP belongs to this member; or read it from member_claim
    member: str | None = None
    member_claim: str = "eoshare_member"
    roles_claim: str = "eoshare_roles"
    username_claim: str = "sub"
    # roles an external IdP may grant; operator stays local by default
    allowed_roles: list[str] = Field(
        default_factory=lambda: ["viewer", "analyst", "provider-admin"]
    )
    leeway_s: int = 10


class AccessSettings(BaseModel):
    """Members, agreements and authentication (``EOSHARE_ACCESS__*``)."""

    # <data_dir>/access.db when empty
    db: str = ""
    # collections without an agreement: "open" to all, or seen by "operators" only
    unlisted: str = "open"
    # the access level of a collection a provider-admin creates before setting terms
    new_collection_access: str = "provider"
    token_days: float = 90
    session_ttl_s: int = 8 * 3600
    cookie_name: str = "eoshare_session"
    # Secure cookies need https; set false for http://127.0.0.1 development only
    cookie_secure: bool = True
    oidc: list[OidcProviderSettings] = Field(default_factory=list)


class TilesSettings(BaseModel):
    """Map tiles, previews, point values and statistics (``EOSHARE_TILES__*``)."""

    # the in-process cache of rendered tiles and previews, in bytes (0 turns it off)
    cache_bytes: int = 64 * 1024 * 1024
    # Cache-Control max-age of tiles, previews and TileJSON/WMTS documents
    max_age_s: int = 3600
    # the largest image (width x height, in pixels) one request may ask for
    max_pixels: int = 4096 * 4096
    # the default and the largest preview/statistics size (longest side, in pixels)
    preview_size: int = 1024
    max_preview_size: int = 4096
    # how many items a mosaic tile reads at most (newest first)
    mosaic_max_items: int = 30
    # the longest band-math expression accepted
    max_expression_chars: int = 512


class S3Settings(BaseModel):
    """Credentials for an ``s3://`` store (else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None


class DownloadsSettings(BaseModel):
    """Downloads, signed links, bulk orders and uploads (``EOSHARE_DOWNLOADS__*``)."""

    # "kid:secret" entries, newest first: the first signs, all verify (key rotation).
    # Empty: a key is generated once and kept in <data_dir>/signing-keys.json.
    signing_keys: list[str] = Field(default_factory=list)
    link_ttl_s: int = 3600
    max_link_ttl_s: int = 7 * 24 * 3600
    chunk_bytes: int = 4 * 1024 * 1024
    order_ttl_s: int = 7 * 24 * 3600
    order_max_items: int = 1000
    order_max_bytes: int = 500 * 1024**3
    # open (unexpired) orders one caller may hold at once
    orders_per_caller: int = 20
    upload_chunk_bytes: int = 8 * 1024 * 1024
    upload_max_bytes: int = 50 * 1024**3
    upload_ttl_s: int = 2 * 24 * 3600


class FederationSettings(BaseModel):
    """Peers, node identity, fan-out and harvest (``EOSHARE_FEDERATION__*``)."""

    # this node's name as peers see it (default: the data directory's name)
    name: str = ""
    # the member agency that runs this node, published at /.well-known/eoshare-node
    member: str | None = None
    # <data_dir>/node-key.pem and <data_dir>/federation.db when empty
    key_file: str = ""
    db: str = ""
    # a fan-out search answers within this, with or without every peer
    deadline_s: float = 5.0
    # how far apart two nodes' clocks may be; the longest life of a request signature
    clock_skew_s: int = 120
    max_signature_ttl_s: int = 300
    # how long this node's signatures live
    signature_ttl_s: int = 60
    # items per request while harvesting
    harvest_batch: int = 200


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
    access: AccessSettings = Field(default_factory=AccessSettings)
    tiles: TilesSettings = Field(default_factory=TilesSettings)
    downloads: DownloadsSettings = Field(default_factory=DownloadsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    federation: FederationSettings = Field(default_factory=FederationSettings)

    @property
    def catalog_url(self) -> str:
        return self.catalog or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def access_db_path(self) -> Path:
        return Path(self.access.db) if self.access.db else (self.data_dir / "access.db")

    @property
    def federation_db_path(self) -> Path:
        db = self.federation.db
        return Path(db) if db else (self.data_dir / "federation.db")

    @property
    def node_key_path(self) -> Path:
        key = self.federation.key_file
        return Path(key) if key else (self.data_dir / "node-key.pem")

    @property
    def node_name(self) -> str:
        return self.federation.name or self.data_dir.resolve().name.lower() or "eoshare"

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
