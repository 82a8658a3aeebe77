"""Absolute URLs and the STAC links that every response carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request

JSON = dict[str, Any]
GEOJSON = "application/geo+json"
JSONT = "application/json"

# Links the server owns: whatever a document carried under these rels is replaced.
SERVER_RELS = {"self", "root", "parent", "collection", "items", "next", "prev", "queryables"}


def base_url(request: Request) -> str:
    """The node's root URL, without a trailing slash."""
    configured = getattr(request.app.state, "base_url", None)
    if configured:
        return str(configured).rstrip("/")
    return str(request.base_url).rstrip("/")


def q(segment: str) -> str:
    return quote(segment, safe="")


def link(rel: str, href: str, type: str = JSONT, **extra: Any) -> JSON:
    return {"rel": rel, "type": type, "href": href, **extra}


def own_links(doc: JSON) -> list[JSON]:
    return [x for x in doc.get("links", []) if x.get("rel") not in SERVER_RELS]


def item_links(base: str, item: JSON) -> JSON:
    """An item as served: its own links kept, the server's links set."""
    cid = item.get("collection", "")
    coll = f"{base}/collections/{q(cid)}"
    out = dict(item)
    out["links"] = [
        link("self", f"{coll}/items/{q(item['id'])}", GEOJSON, title="This item"),
        link("parent", coll, title="The collection"),
        link("collection", coll, title="The collection"),
        link("root", f"{base}/", title="Landing page"),
        *own_links(item),
    ]
    return out


def collection_links(base: str, collection: JSON) -> JSON:
    coll = f"{base}/collections/{q(collection['id'])}"
    out = dict(collection)
    out["links"] = [
        link("self", coll, title="This collection"),
        link("parent", f"{base}/", title="Landing page"),
        link("root", f"{base}/", title="Landing page"),
        link("items", f"{coll}/items", GEOJSON, title="Items"),
        link(
            "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            f"{coll}/queryables",
            "application/schema+json",
            title="Queryables",
        ),
        *own_links(collection),
    ]
    return out


def with_query(url: str, params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v is not None and v != ""}
    return f"{url}?{urlencode(clean)}" if clean else url


# Functions that add to an item on its way out (asset download hrefs, tile links...).
# Each area registers its own in ``create_app`` (``app.state.item_decorators``); they run
# in order after the server links are set, and must not change the stored document.
ItemDecorator = Callable[[Request, str, JSON], JSON]


def render_item(request: Request, item: JSON) -> JSON:
    """An item exactly as a client should get it: server links + every decorator."""
    base = base_url(request)
    out = item_links(base, item)
    # a peer harvesting (signed, ``Eoshare-Render: minimal``) skips the decorators that
    # only add derived links (tiles): it re-derives them itself (eoshare.federation)
    skip = (
        getattr(request.app.state, "optional_item_decorators", ())
        if getattr(request.state, "render_minimal", False)
        else ()
    )
    for decorate in getattr(request.app.state, "item_decorators", ()):
        if decorate not in skip:
            out = decorate(request, base, out)
    return out


# Functions that shape a collection for the caller (``app.state.collection_decorators``,
# registered in ``create_app``): the access area adds ``eoshare:agreement`` and returns
# None for a collection the caller may not know exists.
CollectionDecorator = Callable[[Request, str, JSON], JSON | None]


def render_collection(request: Request, collection: JSON) -> JSON | None:
    """A collection as the caller should get it, or None when it is hidden from them."""
    base = base_url(request)
    out: JSON | None = collection_links(base, collection)
    for decorate in getattr(request.app.state, "collection_decorators", ()):
        if out is None:
            break
        out = decorate(request, base, out)
    return out


def visible_collection(request: Request, collection: JSON) -> JSON:
    """``render_collection``, answering a hidden collection exactly like an absent one."""
    out = render_collection(request, collection)
    if out is None:
        from eoshare.errors import NotFoundError

        raise NotFoundError(f"collection {collection.get('id')!r} does not exist")
    return out
