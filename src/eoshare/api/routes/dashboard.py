"""``GET /admin/dashboard``: what the operators' dashboard (``/ui/dashboard.html``) shows,
in one call: usage by country and by day over the last days (bytes, grants, scenes and
users reached), the top collections, the readiness of the node's parts, a few headline
figures from the Prometheus registry, and the latest entries of the change history.

Operators only: it names members, users and every collection, hidden ones included.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from eoshare.access.policy import is_operator
from eoshare.access.store import now_utc
from eoshare.api.deps import Caller
from eoshare.api.responses import JSONResponse
from eoshare.api.routes.auth import require_user, services
from eoshare.api.routes.health import check_parts
from eoshare.errors import AccessDeniedError

JSON = dict[str, Any]
router = APIRouter(prefix="/admin", tags=["Administration"])


def headline(state: Any) -> JSON:
    """Requests, server errors, bytes served and the tile cache's hit ratio."""
    metrics = state.metrics
    requests = metrics.totals("eoshare_http_requests")
    cache = state.tiles.cache
    lookups = cache.hits + cache.misses
    return {
        "requests": int(sum(value for _, value in requests)),
        "server_errors": int(
            sum(value for labels, value in requests if labels.get("status", "").startswith("5"))
        ),
        "bytes_served": int(sum(value for _, value in metrics.totals("eoshare_bytes_served"))),
        "tile_cache_hits": int(cache.hits),
        "tile_cache_misses": int(cache.misses),
        "tile_cache_hit_ratio": round(cache.hits / lookups, 4) if lookups else None,
    }


@router.get(
    "/dashboard",
    response_class=JSONResponse,
    summary="The operators' dashboard: usage, health, metrics and recent events",
)
async def dashboard(
    request: Request,
    caller: Caller,
    days: Annotated[int, Query(ge=1, le=366, description="days of usage to report")] = 30,
    events: Annotated[int, Query(ge=1, le=500, description="history entries to list")] = 50,
) -> JSONResponse:
    require_user(caller)
    if not is_operator(caller):
        raise AccessDeniedError("the dashboard is for operators")
    store = services(request).store
    since = (now_utc() - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    usage = await run_in_threadpool(store.reach, since=since)
    history = await run_in_threadpool(store.history, limit=events)
    parts = await check_parts(request)
    return JSONResponse(
        {
            "days": days,
            "usage": usage,
            "health": {
                "status": "ok" if all(p["status"] == "ok" for p in parts.values()) else "degraded",
                "checks": parts,
            },
            "metrics": headline(request.app.state),
            "events": history,
        }
    )
