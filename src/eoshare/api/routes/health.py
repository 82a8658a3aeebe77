"""``/health`` (the process answers), ``/ready`` (its databases and store answer) and
``/metrics`` (Prometheus text format, for operators).

``/health`` and ``/ready`` are public and say nothing about the data. ``/metrics`` names
collections and members, so it answers operators only (a Prometheus scraper sends an
operator's API token as its bearer token).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from eoshare.access.policy import is_operator
from eoshare.api.deps import principal_of
from eoshare.api.responses import JSONResponse
from eoshare.errors import AccessDeniedError, NotAuthenticatedError

router = APIRouter(tags=["Operations"])
log = logging.getLogger(__name__)
_PROBE_KEY = ".eoshare-ready-probe"


@router.get("/health", response_class=JSONResponse, summary="Liveness: the process answers")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _checks(request: Request) -> dict[str, Callable[[], Any]]:
    state = request.app.state
    return {
        "catalogue": state.catalog.list_collections,
        "store": lambda: state.store.exists(_PROBE_KEY),
        "access": state.access_services.store.version,
    }


@router.get(
    "/ready",
    response_class=JSONResponse,
    summary="Readiness: the catalogue, the store and the access database answer",
    responses={503: {"description": "a part of the node does not answer"}},
)
async def ready(request: Request) -> JSONResponse:
    results = await check_parts(request)
    ok = all(r["status"] == "ok" for r in results.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503
    )


async def check_parts(request: Request) -> dict[str, dict[str, Any]]:
    """Ask each part of the node (``/ready`` and the operators' dashboard)."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in _checks(request).items():
        started = time.perf_counter()
        try:
            await run_in_threadpool(check)
        except Exception as exc:  # any failure of a part means "not ready"
            log.warning("readiness check failed", extra={"part": name, "error": str(exc)})
            results[name] = {"status": "failed"}
        else:
            ms = round((time.perf_counter() - started) * 1000, 2)
            results[name] = {"status": "ok", "ms": ms}
    return results


@router.get(
    "/metrics",
    summary="Prometheus metrics (operators)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    principal = principal_of(request)
    if not is_operator(principal):
        if principal.anonymous:
            raise NotAuthenticatedError(
                "metrics are for operators: sign in or send the metrics token"
            )
        raise AccessDeniedError("metrics are for operators")
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
