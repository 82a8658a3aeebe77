"""``GET /admin/peers``: what the operators' peers page (``/ui/peers.html``) shows: every
peer (URL, member, key fingerprint, trust), its health checked live (reachable, round
trip, clock skew, last error: the same check as ``eoshare peers check``, recorded the
same way) and its harvest lag (last run, items, cursor age).

Operators only: it names every peer and which members each may vouch for. Mirror
progress is another route (``GET /admin/mirrors``), read by the page on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Request

from eoshare.access.policy import is_operator
from eoshare.api.deps import Caller
from eoshare.api.responses import JSONResponse
from eoshare.api.routes.auth import require_user
from eoshare.errors import AccessDeniedError
from eoshare.federation import FederationServices
from eoshare.federation.health import PeerCheck, check_peer, peer_report
from eoshare.federation.peers import Peer

JSON = dict[str, Any]
router = APIRouter(prefix="/admin", tags=["Administration"])


@router.get(
    "/peers",
    response_class=JSONResponse,
    summary="Peers: trust, live health and harvest lag (operators)",
)
async def admin_peers(
    request: Request,
    caller: Caller,
    check: Annotated[
        bool, Query(description="check every peer now (false: the last recorded check)")
    ] = True,
) -> JSONResponse:
    require_user(caller)
    if not is_operator(caller):
        raise AccessDeniedError("the peers page is for operators")
    svc: FederationServices = request.app.state.federation
    settings = request.app.state.settings.federation
    peers = await anyio.to_thread.run_sync(svc.registry.all)
    checks: dict[str, PeerCheck] = {}

    async def run(peer: Peer) -> None:
        # the peers are checked in parallel, each within the fan-out deadline per request
        checks[peer.name] = await anyio.to_thread.run_sync(
            lambda: check_peer(peer, svc.identity, svc.registry, timeout_s=settings.deadline_s)
        )

    if check:
        async with anyio.create_task_group() as tg:
            for peer in peers:
                tg.start_soon(run, peer)
    else:
        checks = {p.name: PeerCheck(p, None, None) for p in peers}

    def reports() -> list[JSON]:
        return [peer_report(checks[p.name], svc.registry) for p in peers]

    return JSONResponse(
        {
            "node": {
                "name": svc.identity.name,
                "member": svc.identity.member,
                "fingerprint": svc.identity.fingerprint,
            },
            "checked_live": check,
            "clock_skew_tolerance_s": settings.clock_skew_s,
            "peers": await anyio.to_thread.run_sync(reports),
        }
    )
