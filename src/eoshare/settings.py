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


class WebSettings(BaseModel):
    """The browser UI (``EOSHARE_WEB__*``)."""

    # an online base map for a node with internet: an XYZ tile URL template such as
    # https://tile.example.org/{z}/{x}/{y}.png, and the attribution its provider asks for.
    # Unset: the offline Natural Earth outlines shipped with the UI.
    basemap_url: str = ""
    basemap_attribution: str = ""


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
    # one Combined Log Format line per request: a file path, "-" for standard error, or
    # unset for none
    access_log: str | None = None
    # on SIGTERM: stop accepting, let requests in flight (downloads, uploads) finish for
    # up to this long, then exit
    shutdown_grace_s: int = 30
    # origins whose pages may send credentials (the session cookie) cross-origin; every
    # other origin may still call the API without them (api/cors.py)
    cors_origins: list[str] = Field(default_factory=list)


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
    # open datasets kept between requests (each used by one request at a time), keyed
    # by the stored file and its version; 0 opens every file for every picture
    open_datasets: int = 32
    # PNG compression (zlib level 0-9): 1 encodes a tile several times faster than 6
    # (rio-tiler's and titiler's default) for ~15 % more bytes
    png_zlevel: int = Field(default=1, ge=0, le=9)


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
    # an S3 store: answer a download with a redirect (307) to a presigned URL of the S3
    # server, valid redirect_ttl_s, instead of streaming the bytes through the node. The
    # grant is decided, reserved against the quota and audited as for a streamed download
    # (the size asked for counts as served). Users must be able to reach the S3 server.
    redirect: bool = False
    redirect_ttl_s: int = 300
    # behind nginx with a local store: hand the file to nginx with X-Accel-Redirect under
    # this internal location (e.g. "/_eoshare_store/", aliased to the store's folder), so
    # that nginx sends the bytes (sendfile, ranges) once the node has decided, reserved
    # and audited the grant. Empty: the node streams the bytes itself.
    accel_redirect: str = ""
    # a local store without nginx: send files with sendfile(2) (the kernel copies from
    # the page cache to the socket) where the server offers zero-copy (eoshare serve does,
    # see eoshare.api.zerocopy); off: read and write them in chunks. With an S3 store on
    # an http:// endpoint, bodies of 1 MiB and more are spliced from the S3 server's
    # socket to the client's (eoshare.storage.s3raw); off: copied through obstore
    zero_copy: bool = True


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
    harvest_batch: int = 500
    # how often the node runs the mirrors whose time window is open (eoshare.federation.
    # mirror); 0: never (then `eoshare mirror run --loop` or cron does)
    mirror_interval_s: float = 600


class HousekeepingSettings(BaseModel):
    """Purging what expires (``EOSHARE_HOUSEKEEPING__*``): run by the node every
    ``interval_s`` seconds (0: never; then run ``eoshare housekeeping`` from cron)."""

    interval_s: float = 3600
    # expired orders are forgotten this long after their expiry (their status says why)
    order_retention_s: float = 30 * 24 * 3600
    # upload staging folders without an upload row older than this are left over from a
    # crashed process (ingest work folders go as soon as their process is gone)
    temp_max_age_s: float = 24 * 3600


class IngestSettings(BaseModel):
    """Limits on files that users hand to the node (``EOSHARE_INGEST__*``): uploads,
    ``eoshare ingest``, ``eoshare load`` (see eoshare.ingest.safe_open)."""

    # a raster's declared width x height x bands
    max_samples: int = 10_000_000_000
    # declared pixel bytes / bytes on disk ("decompression bomb"), checked only when the
    # declared pixels are over inflation_floor_bytes
    max_inflation: float = 200.0
    inflation_floor_bytes: int = 256 * 1024 * 1024
    # a .json STAC document is parsed whole; an NDJSON line is one document
    max_json_bytes: int = 1024 * 1024 * 1024
    max_ndjson_line_bytes: int = 64 * 1024 * 1024


class SecuritySettings(BaseModel):
    """Brute-force protection, request rate limits, filter and geometry bounds
    (``EOSHARE_SECURITY__*``)."""

    # sign-in: after this many wrong passwords an account is locked (429 + Retry-After)
    # for lockout_s, or until an operator unlocks it (eoshare users unlock NAME)
    login_max_failures: int = 10
    lockout_s: int = 15 * 60
    # failed sign-ins from one client address within login_window_s (any accounts)
    login_max_failures_per_address: int = 50
    login_window_s: int = 15 * 60
    # requests per minute for each caller (token, session or client address); 0 = off
    rate_limit_per_minute: int = 0
    # how many requests a caller may send at once above the steady rate
    rate_limit_burst: int = 60
    # CQL2 filters: nesting depth (parentheses, JSON levels) and length
    max_filter_depth: int = 32
    max_filter_chars: int = 256 * 1024
    # vertices of one geometry in intersects or a CQL2 spatial literal
    max_geometry_vertices: int = 100_000
    # serve demo users (published password) on an address other than loopback
    allow_demo_users: bool = False


class ProcessingSettings(BaseModel):
    """openEO processing on Dask (``EOSHARE_PROCESSING__*``; the cluster is ``EOSHARE_DASK``)."""

    # the jobs database; empty: <data_dir>/processing.db
    db: str = ""
    # batch jobs that run at once on this node, and per member
    workers: int = 2
    per_member: int = 1
    # a synchronous /result reads at most this many pixels (bands x scenes x rows x columns)
    sync_max_pixels: int = 400_000_000
    # where jobs write before their results are committed; empty: <data_dir>/processing
    work_dir: str = ""


class DisasterSettings(BaseModel):
    """Disaster activations, orbits and alerts (``EOSHARE_DISASTER__*``)."""

    # <data_dir>/disaster.db when empty
    db: str = ""
    # a platforms TOML (NORAD id -> STAC platform, swath, field of regard) replacing the
    # packaged eoshare/disaster/platforms.toml
    platforms: str = ""
    # webhooks to loopback/private addresses are refused unless this is set
    allow_private_webhooks: bool = False
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 5.0
    # the longest pass plan one request may ask for
    max_pass_hours: float = 240.0


class Settings(BaseSettings):
    """Everything configurable about one eoshare node."""

    model_config = SettingsConfigDict(
        env_prefix="EOSHARE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("eoshare-data")
    # sqlite:///path/to/catalog.db, postgresql://user@host:port/db (pgstac), or empty for
    # <data_dir>/catalog.db
    catalog: str = ""
    # file:///path/to/store, or empty for <data_dir>/store
    storage: str = ""
    # every other piece of node state (access, orders, uploads, jobs, disaster, peers):
    # postgresql://user@host:port/db (one schema per area, eoshare.statedb), or empty for
    # the SQLite files in <data_dir>
    database: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # the command line's logs: "json" puts JSON lines on stderr (the server always writes
    # JSON); otherwise only warnings, as human lines; log_file gets every record as JSON
    log_format: str = ""
    log_file: str | None = None
    web: WebSettings = Field(default_factory=WebSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    tiles: TilesSettings = Field(default_factory=TilesSettings)
    downloads: DownloadsSettings = Field(default_factory=DownloadsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    housekeeping: HousekeepingSettings = Field(default_factory=HousekeepingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    # a Dask scheduler (tcp://host:8786) for processing; empty: Dask's local scheduler
    dask: str = ""
    disaster: DisasterSettings = Field(default_factory=DisasterSettings)

    @property
    def catalog_url(self) -> str:
        return self.catalog or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    def state_db(self, path: Path) -> str | Path:
        """Where a store of node state lives: ``EOSHARE_DATABASE`` when set, else the
        SQLite file ``path``."""
        return self.database or path

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
    def disaster_db_path(self) -> Path:
        return Path(self.disaster.db) if self.disaster.db else (self.data_dir / "disaster.db")

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
