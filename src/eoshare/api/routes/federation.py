"""Federation on the HTTP side (the services are ``eoshare.federation``):

* ``GET /.well-known/eoshare-node``: this node's name, member and public key;
* ``GET /federation/peers``: the peers and their health (operators see their trust);
* ``GET /admin/mirrors``: the mirrors and their progress (operators); the node runs the
  mirrors whose window is open in the background (``start_mirrors``);
* ``PeerSignatureMiddleware``: a signed request from a peer is one more kind of
  credential. It runs right after ``AuthMiddleware`` and replaces the (anonymous)
  principal with the one ``PeerTrust`` accepts;
* ``federated_response``: what /search answers on a hub (a node with enabled peers);
* ``federated_collections``: what /collections answers on a hub: this node's and every
  peer's collections (a peer's as ``<peer>.<id>``, with ``federation:`` fields);
* ``peer_collection_target`` and the ``peer_*_response`` functions: ``/collections/
  <peer>.<id>[/items[/<item>]]`` answered through that peer, on behalf of the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio.from_thread
from fastapi import APIRouter, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eoshare.access.policy import is_operator
from eoshare.api import errors
from eoshare.api.deps import Caller, principal_of
from eoshare.api.links import GEOJSON, base_url, link, q, render_item
from eoshare.api.params import Fields, apply_fields
from eoshare.api.responses import GeoJSONResponse, JSONResponse
from eoshare.catalog.base import ItemPage, SearchQuery
from eoshare.errors import AccessDeniedError, NotAuthenticatedError, NotFoundError, StorageError
from eoshare.federation import FederationServices
from eoshare.federation.client import RENDER_HEADER
from eoshare.federation.fanout import LOCAL, FederatedSearch, MergedItem, mark_peer_item
from eoshare.federation.identity import WELL_KNOWN_PATH
from eoshare.federation.peers import Peer
from eoshare.federation.trust import PeerTrust

JSON = dict[str, Any]
log = logging.getLogger("eoshare.federation")
router = APIRouter(tags=["Federation"])
MISSING_HEADER = "Eoshare-Federation-Missing"


def services(request: Request) -> FederationServices:
    svc: FederationServices = request.app.state.federation
    return svc


@router.get(WELL_KNOWN_PATH, response_class=JSONResponse, summary="This node's identity")
def node_document(request: Request) -> JSONResponse:
    """Name, member and Ed25519 public key (check its fingerprint when adding a peer)."""
    return JSONResponse(services(request).identity.document(base_url(request)))


@router.get("/federation/peers", response_class=JSONResponse, summary="Peers and their health")
def list_peers(request: Request, caller: Caller) -> JSONResponse:
    svc = services(request)
    peers = []
    for peer in svc.registry.all():
        doc = peer.to_dict()
        if not is_operator(caller):
            doc.pop("trusted_members", None)
        doc["harvest"] = svc.registry.last_harvest(peer.name)
        peers.append(doc)
    return JSONResponse({"node": svc.identity.name, "peers": peers})


@router.get(
    "/admin/mirrors",
    response_class=JSONResponse,
    summary="Mirrors of peers' assets and their progress (operators)",
)
def list_mirrors(request: Request, caller: Caller) -> JSONResponse:
    """Each mirror: its peer, scope (collections, bbox, datetime), time window, state
    (idle, running, done, failed, interrupted), files and bytes done of the last plan,
    when it last ran and its last error. The operators' page reads exactly this."""
    if caller.user is None:
        raise NotAuthenticatedError("sign in first: this route needs a user")
    if not is_operator(caller):
        raise AccessDeniedError("the mirrors' status is for operators")
    return JSONResponse({"mirrors": services(request).mirrors.statuses()})


@router.get(
    "/federation/peers/{peer}/collections/{collection_id}/items/{item_id}",
    response_class=GeoJSONResponse,
    summary="One item of a peer, as that peer shows it to you",
)
async def peer_item(
    request: Request, peer: str, collection_id: str, item_id: str, caller: Caller
) -> GeoJSONResponse:
    """Asked of the peer on your behalf (signed); the peer's agreements decide. Asset
    links are the peer's signed links, made for you."""
    svc = services(request)
    try:
        target = svc.registry.get(peer)
    except NotFoundError as exc:
        raise NotFoundError(f"no peer named {peer!r}") from exc
    if not target.enabled:
        raise NotFoundError(f"no peer named {peer!r}")
    item = await svc.hub.fetch_item(target, collection_id, item_id, caller)
    return GeoJSONResponse(_peer_item(request, MergedItem(target.name, item)))


# --- signed requests from peers --------------------------------------------------------
class PeerSignatureMiddleware:
    """Requests with ``Signature-Input`` are checked by ``PeerTrust``; a bad one is a 401.
    Other requests pass untouched (one header lookup)."""

    def __init__(self, app: ASGIApp, trust: PeerTrust, max_body_bytes: int) -> None:
        self.app = app
        self.trust = trust
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "signature-input" not in headers:
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            if headers.get("authorization"):
                raise NotAuthenticatedError("send a node signature or a bearer token, not both")
            raw_path = scope.get("raw_path") or scope["path"].encode()
            result = self.trust.authenticate(
                method=scope["method"],
                authority=headers.get("host", ""),
                path=raw_path.decode("latin-1").partition("?")[0],
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=dict(headers.items()),
                body=body,
            )
        except NotAuthenticatedError as exc:
            response = errors.problem(401, exc.detail)
            await response(scope, receive, send)
            return
        except StorageError as exc:  # the replay cache could not be written
            await errors.problem(503, exc.detail)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = result.principal
        state["auth_via"] = f"peer:{result.peer.name}"
        # a harvesting peer asks for items without the derived links it makes itself
        state["render_minimal"] = (
            headers.get(RENDER_HEADER.lower(), "").strip().lower() == "minimal"
        )
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# --- fan-out search --------------------------------------------------------------------
def hub_of(request: Request) -> FederatedSearch | None:
    """The fan-out service when this node has enabled peers, else None (local search).
    A request from a peer is answered from this node's catalogue only: two hubs that
    are each other's peers must not ask each other in a loop."""
    svc: FederationServices | None = getattr(request.app.state, "federation", None)
    if str(getattr(request.state, "auth_via", "")).startswith("peer:"):
        return None
    if svc is None or not svc.hub.active():
        return None
    return svc.hub


def _peer_item(request: Request, merged: MergedItem) -> JSON:
    item = dict(merged.item)
    links = []
    for x in item.get("links") or []:
        if not isinstance(x, dict):
            continue
        rel = x.get("rel")
        if rel == "self":
            links.append({**x, "rel": "canonical", "title": f"This item at {merged.source}"})
        elif rel not in ("root", "parent", "collection", "next", "prev"):
            links.append(x)
    base = base_url(request)
    origin = str(item.get("properties", {}).get("federation:via", merged.source))
    here = (
        f"{base}/federation/peers/{q(origin)}/collections/{q(str(item.get('collection')))}"
        f"/items/{q(str(item.get('id')))}"
    )
    links.insert(0, link("self", here, GEOJSON, title="This item, through this node"))
    links.append(link("root", f"{base}/", title="Landing page"))
    coll = item.get("collection")
    if isinstance(coll, str):
        links.append(
            link("collection", f"{base}/collections/{q(f'{origin}.{coll}')}", title="Collection")
        )
    item["links"] = links
    return item


def _source_entry(request: Request, source: str, item: JSON) -> JSON:
    props = item.get("properties") or {}
    href = next(
        (
            x.get("href")
            for x in item.get("links") or []
            if isinstance(x, dict) and x.get("rel") in ("self", "canonical")
        ),
        None,
    )
    return {
        "node": services(request).identity.name if source == LOCAL else source,
        "origin": props.get("federation:origin", services(request).identity.name),
        "collection": item.get("collection"),
        "id": item.get("id"),
        "href": href,
    }


def federated_response(
    request: Request,
    hub: FederatedSearch,
    query: SearchQuery,
    token: str | None,
    fields: Fields,
    *,
    self_url: str,
    post_body: JSON | None = None,
) -> GeoJSONResponse:
    """A /search page over this node and its peers. Called from the (sync) search
    handlers, in a worker thread: the fan-out runs on the event loop."""
    catalog = request.app.state.catalog
    caller = principal_of(request)
    visible = request.app.state.access.visible_filter(caller)

    def local(offset: int, limit: int) -> ItemPage:
        page: ItemPage = catalog.search(replace(query, offset=offset, limit=limit, visible=visible))
        return page

    page = anyio.from_thread.run(hub.search, query, token, caller, local)
    features = []
    for merged in page.items:
        if merged.source == LOCAL:
            item = render_item(request, merged.item)
        else:
            item = _peer_item(request, merged)
        if merged.also:
            sources = [_source_entry(request, merged.source, item)]
            sources += [_source_entry(request, s, other) for s, other in merged.also]
            item = {**item, "properties": {**item.get("properties", {})}}
            item["properties"]["federation:sources"] = sources
        features.append(apply_fields(item, fields))
    base = base_url(request)
    links = [link("self", self_url, GEOJSON), link("root", f"{base}/")]
    if page.next_token is not None:
        if post_body is None:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            query_text = urlencode([*params, ("token", page.next_token)])
            links.append(link("next", f"{base}{request.url.path}?{query_text}", GEOJSON))
        else:
            links.append(
                link(
                    "next",
                    f"{base}/search",
                    GEOJSON,
                    method="POST",
                    body={**post_body, "token": page.next_token},
                    merge=False,
                )
            )
    body: JSON = {"type": "FeatureCollection", "features": features, "links": links}
    if page.number_matched is not None:
        body["numberMatched"] = page.number_matched
    body["numberReturned"] = len(features)
    body["federation:missing"] = page.missing
    body["federation:peers"] = page.report()
    headers = {MISSING_HEADER: ", ".join(page.missing)} if page.missing else None
    return GeoJSONResponse(body, headers=headers)


def install(app: Any, services: FederationServices, max_body_bytes: int) -> None:
    """Routes and the signature middleware (call before AuthMiddleware is added, so that
    it runs after it)."""
    app.state.federation = services
    app.include_router(router)
    app.add_middleware(PeerSignatureMiddleware, trust=services.trust, max_body_bytes=max_body_bytes)


# --- collections of peers ----------------------------------------------------------------
_PEER_COLLECTION_RELS = {"root", "parent", "items", "child", "next", "prev", "search"}


def _peer_collection(request: Request, peer: str, doc: JSON) -> JSON:
    """A peer's collection as this node shows it: ``<peer>.<id>``, where it comes from,
    the origin's agreement, links through this node and a ``canonical`` one to the origin."""
    cid = str(doc["id"])
    hid = f"{peer}.{cid}"
    base = base_url(request)
    out = {k: v for k, v in doc.items() if k not in ("links", "eoshare:agreement")}
    out["id"] = hid
    out["federation:origin"] = peer
    out["federation:origin_collection"] = cid
    if "eoshare:agreement" in doc:
        out["federation:agreement"] = doc["eoshare:agreement"]
    here = f"{base}/collections/{q(hid)}"
    links = [
        link("self", here, title="This collection, through this node"),
        link("root", f"{base}/", title="Landing page"),
        link("parent", f"{base}/", title="Landing page"),
        link("items", f"{here}/items", GEOJSON, title="Items, through this node"),
    ]
    for x in doc.get("links") or []:
        if not isinstance(x, dict):
            continue
        rel = x.get("rel")
        if rel == "self":
            links.append({**x, "rel": "canonical", "title": f"This collection at {peer}"})
        elif rel not in _PEER_COLLECTION_RELS:
            links.append(x)
    out["links"] = links
    return out


def _peer_query(**params: str | None) -> str:
    pairs = [(k, v) for k, v in params.items() if v is not None]
    return urlencode(pairs)


def federated_collections(
    request: Request,
    hub: FederatedSearch,
    *,
    bbox: str | None,
    datetime: str | None,
    q_: str | None,
    limit: int,
    offset: int,
    params: JSON,
) -> JSONResponse:
    """/collections on a hub: this node's collections (as a local listing shows them)
    and every peer's, asked on behalf of the caller in parallel within the deadline."""
    from eoshare.api.links import render_collection, with_query
    from eoshare.api.params import encode_token, parse_bbox_text, parse_datetime_range, split_csv
    from eoshare.catalog.collection_search import CollectionQuery, search_collections

    catalog = request.app.state.catalog
    caller = principal_of(request)
    shown = [r for c in catalog.list_collections() if (r := render_collection(request, c))]
    local_ids = {str(c.get("id")) for c in shown}
    query = _peer_query(bbox=bbox, datetime=datetime, q=q_, limit="1000")
    found, answers = anyio.from_thread.run(hub.peers_collections, query, caller)
    for peer, doc in found:
        if f"{peer.name}.{doc['id']}" not in local_ids:  # a harvested copy here wins
            shown.append(_peer_collection(request, peer.name, doc))
    box = parse_bbox_text(bbox)
    start, end = parse_datetime_range(datetime)
    # the peers searched already; the same search here covers plain STAC APIs that cannot
    matched = search_collections(shown, CollectionQuery(box, start, end, split_csv(q_)))
    page = matched[offset : offset + limit]
    base = base_url(request)
    here = f"{base}/collections"
    links = [
        link("self", with_query(here, {**params, "token": params.get("token")})),
        link("root", f"{base}/"),
    ]
    if offset + limit < len(matched):
        links.append(
            link("next", with_query(here, {**params, "token": encode_token(offset + limit)}))
        )
    if offset > 0:
        prev = encode_token(max(offset - limit, 0))
        links.append(link("prev", with_query(here, {**params, "token": prev})))
    missing = sorted(n for n, a in answers.items() if a.status in ("timeout", "error"))
    body: JSON = {"collections": page, "links": links}
    if not missing and not any(a.more for a in answers.values()):
        body["numberMatched"] = len(matched)  # else unknown: never wrong
    body["numberReturned"] = len(page)
    body["federation:missing"] = missing
    body["federation:peers"] = {
        name: {"status": a.status, **({"detail": a.detail} if a.detail else {})}
        for name, a in sorted(answers.items())
    }
    headers = {MISSING_HEADER: ", ".join(missing)} if missing else None
    return JSONResponse(body, headers=headers)


def peer_collection_target(
    request: Request, collection_id: str
) -> tuple[FederatedSearch, Peer, str] | None:
    """``(hub, peer, its collection id)`` when ``collection_id`` is ``<peer>.<id>`` for an
    active peer and no collection of that id is held here (a harvested copy wins)."""
    if "." not in collection_id:
        return None
    hub = hub_of(request)
    if hub is None:
        return None
    name, _, cid = collection_id.partition(".")
    peer = next((p for p in hub.active() if p.name == name), None)
    if peer is None or not cid:
        return None
    try:
        request.app.state.catalog.get_collection(collection_id)
    except NotFoundError:
        return hub, peer, cid
    return None


def peer_collection_response(
    request: Request, hub: FederatedSearch, peer: Peer, cid: str
) -> JSONResponse:
    doc = anyio.from_thread.run(
        functools.partial(
            hub.fetch_json,
            peer,
            f"/collections/{q(cid)}",
            principal_of(request),
            what=f"collection '{peer.name}.{cid}'",
        )
    )
    if not isinstance(doc.get("id"), str):
        raise NotFoundError(f"collection '{peer.name}.{cid}' does not exist")
    return JSONResponse(_peer_collection(request, peer.name, doc))


def peer_items_response(
    request: Request, hub: FederatedSearch, peer: Peer, cid: str
) -> GeoJSONResponse:
    """A page of a peer's collection, as the peer shows it to the caller; its query
    string (bbox, datetime, filter, limit, token...) goes to the peer as it came."""
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "sign"])
    hid = f"{peer.name}.{cid}"
    doc = anyio.from_thread.run(
        functools.partial(
            hub.fetch_json,
            peer,
            f"/collections/{q(cid)}/items",
            principal_of(request),
            query=query,
            what=f"collection {hid!r}",
        )
    )
    features = []
    for item in doc.get("features") or []:
        if isinstance(item, dict) and "id" in item:
            mark_peer_item(item, peer.name)
            features.append(_peer_item(request, MergedItem(peer.name, item)))
    base = base_url(request)
    here = f"{base}/collections/{q(hid)}/items"
    links = [
        link("self", f"{here}?{query}" if query else here, GEOJSON),
        link("root", f"{base}/"),
        link("collection", f"{base}/collections/{q(hid)}"),
    ]
    for x in doc.get("links") or []:
        if isinstance(x, dict) and x.get("rel") in ("next", "prev"):
            href = x.get("href")
            if isinstance(href, str) and x.get("method", "GET") == "GET":
                peer_query = urlsplit(href).query
                links.append(link(str(x["rel"]), f"{here}?{peer_query}", GEOJSON))
    body: JSON = {"type": "FeatureCollection", "features": features, "links": links}
    if isinstance(doc.get("numberMatched"), int):
        body["numberMatched"] = doc["numberMatched"]
    body["numberReturned"] = len(features)
    return GeoJSONResponse(body)


def peer_item_response(
    request: Request, hub: FederatedSearch, peer: Peer, cid: str, item_id: str
) -> GeoJSONResponse:
    item = anyio.from_thread.run(hub.fetch_item, peer, cid, item_id, principal_of(request))
    return GeoJSONResponse(_peer_item(request, MergedItem(peer.name, item)))


# --- mirrors in the background ---------------------------------------------------------
def start_mirrors(app: Any, interval_s: float) -> asyncio.Task[None] | None:
    """Run the mirrors whose window is open now and every ``interval_s`` (called in the
    lifespan; None when ``interval_s`` is 0). A run holds its mirror's lock, so several
    workers or a CLI run at the same time never run one mirror twice."""
    if interval_s <= 0:
        return None
    from eoshare.federation.mirror import Mirrorer

    svc = services_of(app)
    mirrorer = Mirrorer(
        svc.mirrors,
        svc.registry,
        svc.identity,
        app.state.catalog,
        app.state.store,
        app.state.access_services.store,
    )
    app.state.mirrorer = mirrorer

    async def loop() -> None:
        while True:
            # a thread cannot be cancelled: at a stop (stop_mirrors) the run under way is
            # awaited up to its next chunk, so that it never outlives the app's lifespan,
            # which then closes the catalogue and stores it writes to
            work = asyncio.ensure_future(asyncio.to_thread(mirrorer.run_due))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                mirrorer.stop.set()
                with contextlib.suppress(Exception):
                    await work
                raise
            except Exception:
                log.exception("mirrors failed; trying again in %.0f s", interval_s)
            await asyncio.sleep(interval_s)

    return asyncio.create_task(loop())


async def stop_mirrors(app: Any, task: asyncio.Task[None] | None) -> None:
    """Stop a running mirror at its next chunk (its partial file stays for the next run)."""
    if task is None:
        return
    app.state.mirrorer.stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def services_of(app: Any) -> FederationServices:
    svc: FederationServices = app.state.federation
    return svc
