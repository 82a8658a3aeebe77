"""``create_app``: the one place where settings are read and services are built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import eoshare
from eoshare.access.service import open_access
from eoshare.api import errors
from eoshare.api.routes import (
    admin,
    auth,
    collections,
    downloads,
    items,
    landing,
    search,
    tiles,
    transactions,
    usage,
    web,
)
from eoshare.api.routes import federation as federation_routes
from eoshare.catalog import open_catalog
from eoshare.logs import setup_logging
from eoshare.settings import Settings, load_settings
from eoshare.storage import open_store
from eoshare.tiles import TileService


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.catalog.close()
        app.state.access_services.close()
        app.state.federation.close()

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
    # map tiles, previews, WMTS (eoshare.tiles): tile links on items, WMTS on collections
    app.state.tiles = TileService(app.state.store, settings.tiles)
    app.state.item_decorators = [*app.state.item_decorators, tiles.decorate_item]
    app.state.collection_decorators = [*app.state.collection_decorators, tiles.decorate_collection]

    errors.install(app)
    for module in (landing, collections, items, search, transactions):
        app.include_router(module.router)
    app.include_router(web.router)  # the browser UI under /ui/ (eoshare.web)
    for module in (auth, admin, usage):
        app.include_router(module.router)
    # downloads, signed links, orders, uploads (builds their services, adds the href decorator)
    downloads.install(app, settings)
    app.include_router(tiles.router)  # /tiles/... (eoshare.tiles)

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

    # who is calling: sets request.state.principal (401 problems for bad credentials)
    app.add_middleware(
        auth.AuthMiddleware,
        auth=app.state.access_services.auth,
        cookie_name=settings.access.cookie_name,
    )
    # GZip for documents only: asset bytes (/download, order zips) pass through untouched
    app.add_middleware(downloads.GZipExceptBytes, minimum_size=4096)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    return app
