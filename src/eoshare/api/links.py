"""Absolute URLs and the STAC links that every response carries."""

from __future__ import annotations

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
        link("self", f"{coll}/items/{q(item['id'])}", GEOJSON),
        link("parent", coll),
        link("collection", coll),
        link("root", f"{base}/"),
        *own_links(item),
    ]
    return out


def collection_links(base: str, collection: JSON) -> JSON:
    coll = f"{base}/collections/{q(collection['id'])}"
    out = dict(collection)
    out["links"] = [
        link("self", coll),
        link("parent", f"{base}/"),
        link("root", f"{base}/"),
        link("items", f"{coll}/items", GEOJSON),
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
