"""``create_app``: the one place where settings are read and services are built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import eoshare
from eoshare.access import OpenAccess
from eoshare.api import errors
from eoshare.api.routes import collections, items, landing, search, transactions
from eoshare.catalog import open_catalog
from eoshare.logs import setup_logging
from eoshare.settings import Settings, load_settings
from eoshare.storage import open_store


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


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the eoshare ASGI application."""
    settings = settings or load_settings()
    setup_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.catalog.close()

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
    app.state.store = open_store(settings.storage_url)
    app.state.access = OpenAccess()

    errors.install(app)
    for module in (landing, collections, items, search, transactions):
        app.include_router(module.router)

    @app.middleware("http")
    async def _openapi_type(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path == "/api" and response.status_code == 200:
            response.headers["content-type"] = "application/vnd.oai.openapi+json;version=3.0"
        return response

    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    return app
