"""A hidden collection or item answers exactly like one that does not exist, on every
route of the OpenAPI document that names a collection or an item in its path — reads,
writes, administration, tiles, downloads — and on the routes that name one in their body
(uploads, orders), for a provider-admin of another member, a member user and anonymous.

Status and problem detail must be identical once the two ids are swapped; so must the
media type. The routes are read from ``/api``, so a new route joins the test by itself."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest

from access.conftest import OTHER, PROVIDER, Node

JSON = dict[str, Any]
# hidden from members other than PROVIDER (and from anonymous callers)
HIDDEN_COLLECTION = "t-provider"
# visible collection (its old items are public) whose young items are hidden
PARTIAL_COLLECTION, HIDDEN_ITEM = "t-embargo", "t-embargo-0"
UNKNOWN_COLLECTION, UNKNOWN_ITEM = "zz-no-such-coll", "zz-never-was"
CALLERS = ["other_admin", "other", "anonymous"]
PLACEHOLDER = "<ID>"

PARAMS = {
    "asset_key": "data",
    "tileMatrixSetId": "WebMercatorQuad",
    "z": "10",
    "x": "600",
    "y": "400",
    "lon": "36.8",
    "lat": "-1.3",
}


def _operations(http: httpx.Client) -> list[tuple[str, str]]:
    doc = http.get("/api").json()
    ops = []
    for path, methods in doc["paths"].items():
        if "{collection_id}" not in path:
            continue
        for method in methods:
            if method.upper() in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
                ops.append((method.upper(), path))
    return sorted(ops)


def _body(node: Node, method: str, path: str, cid: str, iid: str) -> Any:
    """A plausible body for a write: what an attacker would send."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    template = node.items[(PARTIAL_COLLECTION, HIDDEN_ITEM)]
    if path.startswith("/admin/agreements/"):
        # claim the collection for the attacker's own member
        return {"provider": OTHER, "access": "open"}
    if path.endswith("/statistics"):
        return {"type": "Feature", "properties": {}, "geometry": template["geometry"]}
    if method == "PATCH":
        return {"title": "patched by someone else"}
    if "{item_id}" in path or path.endswith("/items"):
        item = copy.deepcopy(template)
        item.update({"id": iid, "collection": cid})
        return item
    if path == "/collections/{collection_id}":
        return {"type": "Collection", "id": cid, "description": "x", "license": "CC-BY-4.0",
                "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]},
                           "temporal": {"interval": [[None, None]]}}, "links": [],
                "stac_version": "1.0.0"}  # fmt: skip
    return None


def _answer(r: httpx.Response, ids: tuple[str, ...]) -> tuple[int, str, Any]:
    ctype = r.headers.get("content-type", "").split(";")[0]
    body: Any = r.content
    if ctype.endswith("json") and r.content:
        body = r.json()
    text = str(body)
    for i in sorted(ids, key=len, reverse=True):
        text = text.replace(i, PLACEHOLDER)
    # request ids and timings differ from call to call
    text = re.sub(r"[0-9a-f]{32}", "<REQ>", text)
    return r.status_code, ctype, text


def _call(
    http: httpx.Client, node: Node, caller: str, method: str, path: str, cid: str, iid: str
) -> httpx.Response:
    url = path
    for name, value in {**PARAMS, "collection_id": cid, "item_id": iid}.items():
        url = url.replace("{" + name + "}", value)
    body = _body(node, method, path, cid, iid)
    return http.request(
        method, url, json=body, headers=node.callers[caller].headers if caller else {}
    )


@pytest.mark.parametrize("caller", CALLERS)
def test_every_collection_route_hides_as_unknown(
    access_node: Node, http: httpx.Client, caller: str
) -> None:
    ops = _operations(http)
    assert len(ops) >= 25, ops  # the catalogue, transactions, admin, tiles, downloads
    differ = []
    for method, path in ops:
        for (hc, hi), (uc, ui) in [
            ((HIDDEN_COLLECTION, f"{HIDDEN_COLLECTION}-0"), (UNKNOWN_COLLECTION, UNKNOWN_ITEM)),
            ((PARTIAL_COLLECTION, HIDDEN_ITEM), (PARTIAL_COLLECTION, UNKNOWN_ITEM)),
        ]:
            if "{item_id}" not in path and hc == PARTIAL_COLLECTION:
                continue  # the collection itself is visible: only its items are hidden
            hidden = _call(http, access_node, caller, method, path, hc, hi)
            unknown = _call(http, access_node, caller, method, path, uc, ui)
            a = _answer(hidden, (hc, hi) if hc != uc else (hi,))
            b = _answer(unknown, (uc, ui) if hc != uc else (ui,))
            assert hidden.status_code < 500 and unknown.status_code < 500, (method, path)
            assert hidden.status_code not in (200, 201, 204), (method, path, hidden.text)
            if a != b:
                differ.append(f"{method} {path} [{hc}/{hi}]: hidden {a} vs unknown {b}")
    assert not differ, "\n".join(differ)


@pytest.mark.parametrize("caller", ["other_admin", "other"])
def test_body_references_hide_as_unknown(
    access_node: Node, http: httpx.Client, caller: str
) -> None:
    """Uploads and orders name collections and items in their body."""
    h = access_node.callers[caller].headers
    for hc, hi, uc, ui in [
        (HIDDEN_COLLECTION, f"{HIDDEN_COLLECTION}-0", UNKNOWN_COLLECTION, UNKNOWN_ITEM),
        (PARTIAL_COLLECTION, HIDDEN_ITEM, PARTIAL_COLLECTION, UNKNOWN_ITEM),
    ]:
        ids = (hc, hi) if hc != uc else (hi,)
        uids = (uc, ui) if hc != uc else (ui,)
        up = {"filename": "a.tif", "size": 10, "sha256": "0" * 64}
        a = http.post("/uploads", json={**up, "collection": hc, "item_id": hi}, headers=h)
        b = http.post("/uploads", json={**up, "collection": uc, "item_id": ui}, headers=h)
        assert _answer(a, ids) == _answer(b, uids)
        assert a.status_code in (403, 404)
        a = http.post("/orders", json={"ids": [{"collection": hc, "id": hi}]}, headers=h)
        b = http.post("/orders", json={"ids": [{"collection": uc, "id": ui}]}, headers=h)
        assert _answer(a, ids) == _answer(b, uids)
        assert a.status_code == 404


def test_the_provider_still_sees_its_own(access_node: Node, http: httpx.Client) -> None:
    """The same routes answer the owner normally: the test above compares refusals."""
    h = access_node.callers["owner_admin"].headers
    assert http.get(f"/collections/{HIDDEN_COLLECTION}", headers=h).status_code == 200
    r = http.get(f"/admin/agreements/{HIDDEN_COLLECTION}", headers=h)
    assert r.status_code == 200 and r.json()["provider"] == PROVIDER
    r = http.get(f"/admin/agreements/{UNKNOWN_COLLECTION}", headers=h)
    assert r.status_code == 404
