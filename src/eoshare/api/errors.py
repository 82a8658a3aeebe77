"""How errors become HTTP: one status table, RFC 9457 problem documents that also carry
STAC API's ``code``/``description``. Nothing below ``api`` knows about status codes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    EoshareError,
    IngestError,
    InsufficientStorageError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    StorageError,
    UpstreamError,
)

log = logging.getLogger("eoshare.api")

PROBLEM = "application/problem+json"

# Most specific first: the first class that matches decides.
STATUS: list[tuple[type[EoshareError], int, str]] = [
    (PayloadTooLargeError, 413, "Payload Too Large"),
    (InvalidRequestError, 400, "Bad Request"),
    (IngestError, 400, "Bad Request"),
    (NotFoundError, 404, "Not Found"),
    (ConflictError, 409, "Conflict"),
    (NotAuthenticatedError, 401, "Unauthorized"),
    (AccessDeniedError, 403, "Forbidden"),
    (InsufficientStorageError, 507, "Insufficient Storage"),
    (RateLimitedError, 429, "Too Many Requests"),
    (StorageError, 503, "Service Unavailable"),
    (UpstreamError, 502, "Bad Gateway"),
]

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


def problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """An RFC 9457 problem response."""
    title = _TITLES.get(status, "Error")
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        # STAC API's error shape, for clients that read it
        "code": title.replace(" ", ""),
        "description": detail,
        **extra,
    }
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def status_of(exc: EoshareError) -> int:
    for cls, status, _ in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return "the request body is not valid JSON"
        if tuple(err.get("loc", ())) == ("body",):
            return "the request body must be a JSON object"
        parts.append(f"{loc}: {msg}" if loc else str(msg))
    return "; ".join(parts) or "the request is not valid"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(EoshareError)
    async def _eoshare(request: Request, exc: EoshareError) -> Response:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after_s)}
        if status >= 500:
            log.error("request failed", extra={"path": request.url.path, "error": exc.detail})
        # some errors carry fields for the problem document (a quota's "remaining")
        extra = getattr(exc, "problem_extra", None) or {}
        return problem(status, exc.detail, headers=headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem(400, _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", extra={"path": request.url.path})
        return problem(500, "an unexpected error occurred; it has been logged")
