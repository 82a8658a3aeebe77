"""``create_app``: the one place where settings are read and services are built."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import eoshare
from eoshare.access.egress import AssetGate
from eoshare.access.service import open_access
from eoshare.api import compat, errors, openapi
from eoshare.api.cors import CorsMiddleware
from eoshare.api.observability import (
    AccessLog,
    Metrics,
    NodeCollector,
    Observe,
)
from eoshare.api.ratelimit import RateLimitMiddleware
from eoshare.api.routes import (
    activations,
    admin,
    auth,
    collections,
    downloads,
    health,
    items,
    landing,
    openeo,
    search,
    tiles,
    transactions,
    usage,
    web,
)
from eoshare.api.routes import dashboard as dashboard_routes
from eoshare.api.routes import federation as federation_routes
from eoshare.api.routes import peers_admin as peers_admin_routes
from eoshare.catalog import open_catalog
from eoshare.catalog.base import SearchQuery
from eoshare.disaster.products import ProductService
from eoshare.disaster.service import open_disaster
from eoshare.freshness import FreshPerRequest
from eoshare.housekeeping import Housekeeper
from eoshare.leases import Leases, lease_location
from eoshare.logs import setup_logging
from eoshare.processing.service import open_processing
from eoshare.settings import Settings, load_settings
from eoshare.storage import open_store
from eoshare.tiles.lazy import LazyTileService


class BodyLimit:
    """Refuses request bodies over a size, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = errors.problem(
            413, f"the request body is larger than the limit of {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class OpenApiMediaType:
    """Serves the OpenAPI document (/api) as ``application/vnd.oai.openapi+json``, the type
    STAC API's service-desc link names. Plain ASGI: no cost on the other routes."""

    MEDIA_TYPE = b"application/vnd.oai.openapi+json;version=3.0"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/api":
            await self.app(scope, receive, send)
            return

        async def retype(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(k, v) for k, v in message["headers"] if k != b"content-type"]
                message["headers"] = [*headers, (b"content-type", self.MEDIA_TYPE)]
            await send(message)

        await self.app(scope, receive, retype)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the eoshare ASGI application."""
    settings = settings or load_settings()
    setup_logging(settings.log_level)
    access_log = AccessLog(settings.api.access_log) if settings.api.access_log else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # expired uploads, orders and stale temporary folders (eoshare.housekeeping)
        interval = settings.housekeeping.interval_s
        chores = (
            asyncio.create_task(app.state.housekeeper.run_periodically(interval))
            if interval > 0
            else None
        )
        app.state.disaster.alerts.start()  # the worker that turns new items into alerts
        # mirrors of peers' assets whose time window is open (eoshare.federation.mirror)
        mirrors = federation_routes.start_mirrors(app, settings.federation.mirror_interval_s)
        yield
        await federation_routes.stop_mirrors(app, mirrors)
        if chores is not None:
            chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chores
        if app.state.housekeeper.leases is not None:
            app.state.housekeeper.leases.close()
        app.state.products.close()
        app.state.processing.close()
        app.state.disaster.close()
        app.state.catalog.close()
        app.state.access_services.close()
        await app.state.federation.hub.aclose()
        app.state.federation.close()
        if access_log is not None:
            access_log.close()

    app = FastAPI(
        title=settings.api.title,
        description=settings.api.description,
        version=eoshare.__version__,
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.base_url = settings.api.base_url
    # services are built here, once, and reached through dependencies (api/deps.py)
    app.state.catalog = open_catalog(settings.catalog_url, count_limit=settings.api.count_limit)
    app.state.store = open_store(settings.storage_url, **settings.s3.model_dump(exclude_none=True))
    # members, agreements, tokens: the one place that decides access (eoshare.access)
    app.state.access_services = open_access(settings)
    app.state.access = app.state.access_services.policy
    app.state.item_decorators = [*getattr(app.state, "item_decorators", []), auth.decorate_item]
    app.state.collection_decorators = [
        *getattr(app.state, "collection_decorators", []),
        auth.decorate_collection,
    ]
    # disaster activations, orbits, alerts (eoshare.disaster): the policy honours the
    # activations' grants; the catalogue is wrapped so that every write reaches alerts
    app.state.disaster = open_disaster(
        settings, app.state.catalog, app.state.access_services, worker=False
    )
    app.state.catalog = app.state.disaster.catalog
    # map tiles, previews, WMTS (eoshare.tiles): tile links on items, WMTS on collections
    # (built on the first picture: rio-tiler's imports are most of a start, eoshare.tiles.lazy)
    app.state.tiles = LazyTileService(app.state.store, settings.tiles)
    app.state.item_decorators = [*app.state.item_decorators, tiles.decorate_item]
    # left out for a harvesting peer (federation): derived links and UI hints it makes itself
    app.state.optional_item_decorators = (auth.decorate_item, tiles.decorate_item)
    app.state.collection_decorators = [*app.state.collection_decorators, tiles.decorate_collection]
    # proj:epsg beside proj:code, for readers of projection extension v1 (api/compat.py)
    app.state.item_decorators = [*app.state.item_decorators, compat.decorate_item]

    errors.install(app)
    openapi.install(app)  # problem responses declared on every operation (eoshare.api.openapi)
    for module in (landing, collections, items, search, transactions):
        app.include_router(module.router)
    app.include_router(web.router)  # the browser UI under /ui/ (eoshare.web)
    for module in (auth, admin, usage):
        app.include_router(module.router)
    # downloads, signed links, orders, uploads (builds their services, adds the href decorator)
    downloads.install(app, settings)
    # the one path for bytes: every route that hands out asset bytes or pixels asks it
    app.state.gate = AssetGate(
        app.state.catalog,
        app.state.access,
        quotas=app.state.access_services.quotas,
        links=app.state.signer,
        subjects=app.state.access_services.auth,
    )
    app.state.housekeeper = Housekeeper(
        app.state.uploads,
        app.state.orders,
        lock_path=settings.data_dir / "housekeeping.lock",
        order_retention_s=settings.housekeeping.order_retention_s,
        temp_max_age_s=settings.housekeeping.temp_max_age_s,
        # the periodic pass runs in one process of the node (eoshare.leases)
        leases=Leases(lease_location(settings)),
    )
    app.include_router(tiles.router)  # /tiles/... (eoshare.tiles)
    app.include_router(activations.router)  # /activations, /planning, /alerts (eoshare.disaster)
    app.include_router(health.router)  # /health, /ready, /metrics
    app.include_router(dashboard_routes.router)  # /admin/dashboard (operators' dashboard)
    app.include_router(peers_admin_routes.router)  # /admin/peers (operators' peers page)

    # Prometheus figures: request counters here, node gauges read from the services
    app.state.metrics = Metrics()
    app.state.metrics.add_collector(NodeCollector(node_gauges(app)))
    # openEO processing on Dask, results published back (eoshare.processing)
    app.state.processing = open_processing(settings, app.state)
    # value-added products of activations, made by the processing engine
    app.state.products = ProductService(app.state.disaster, app.state.processing)
    openeo.install(app)

    app.add_middleware(OpenApiMediaType)

    # federation (eoshare.federation): node identity, peers, fan-out search; signed
    # requests from peers are a credential checked right after AuthMiddleware
    from eoshare.federation import open_federation

    def _member_country(code: str) -> str | bool | None:
        member = app.state.access.member(code)
        return (member.country or True) if member is not None else None

    federation_routes.install(
        app, open_federation(settings, _member_country), settings.api.max_body_bytes
    )
    # peers' harvest schedules run with housekeeping (eoshare.federation.schedule)
    app.state.housekeeper.chores.append(
        app.state.federation.harvest_chore(
            app.state.catalog,
            settings.federation.harvest_batch,
            app.state.housekeeper.leases or Leases(lease_location(settings)),
        )
    )

    # who is calling: sets request.state.principal (401 problems for bad credentials)
    app.add_middleware(
        auth.AuthMiddleware,
        auth=app.state.access_services.auth,
        cookie_name=settings.access.cookie_name,
    )
    # GZip for documents only: asset bytes (/download, order zips) pass through untouched
    app.add_middleware(downloads.GZipExceptBytes, minimum_size=4096)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    # openEO bearer forms and error documents on /openeo (outside the authentication)
    app.add_middleware(openeo.OpenEOMiddleware)
    # CORS headers on every answer, errors included; preflights (api/cors.py)
    app.add_middleware(CorsMiddleware, credentialed_origins=settings.api.cors_origins)
    if settings.security.rate_limit_per_minute > 0:
        # before authentication and parsing: a refused request costs nothing else
        app.add_middleware(
            RateLimitMiddleware,
            per_minute=settings.security.rate_limit_per_minute,
            burst=settings.security.rate_limit_burst,
            cookie_name=settings.access.cookie_name,
        )
    # cached access views read their version once per request (eoshare.freshness): a
    # change made by any process of the node decides the next request
    app.add_middleware(FreshPerRequest)
    # outermost: a request id on every response and log line, metrics, the access log
    app.add_middleware(Observe, metrics=app.state.metrics, access_log=access_log)
    return app


def node_gauges(app: FastAPI) -> dict[str, Any]:
    """What ``/metrics`` reads from the services at scrape time."""
    state = app.state

    def items() -> list[tuple[list[str], float]]:
        counts = []
        for collection in state.catalog.list_collections():
            page = state.catalog.search(SearchQuery(collections=(collection["id"],), limit=1))
            if page.number_matched is not None:
                counts.append(([collection["id"]], float(page.number_matched)))
        return counts

    def tile_cache() -> list[tuple[list[str], float]]:
        cache = state.tiles.cache
        return [(["hits"], float(cache.hits)), (["misses"], float(cache.misses))]

    def tile_cache_bytes() -> list[tuple[list[str], float]]:
        return [([], float(state.tiles.cache.size))]

    return {
        "eoshare_catalog_items": ("Items in the catalogue, by collection", ["collection"], items),
        "eoshare_tile_cache_lookups": (
            "Lookups of the rendered-tile cache since start (misses were rendered)",
            ["result"],
            tile_cache,
        ),
        "eoshare_tile_cache_bytes": ("Bytes held by the rendered-tile cache", [], tile_cache_bytes),
    }
