"""The transaction extension: create, replace, patch and delete collections and items.

Publishing rights: operators and the provider-admins of the collection's member
(``deps.require_admin``).

Documents are a client's: ids and asset keys must be safe ids and asset types valid media
types (``catalog.validate``, 400 otherwise), and the fields only the node writes
(``eoshare:key``, the store key of a held asset) are never taken from them: they are
removed from created items, and a replaced or patched item keeps the node's keys of the
assets that keep their name (``catalog.assetkeys``). Removing rather than refusing lets
a client send back the document it got (which shows the key). See
docs/adr/0006-one-path-for-bytes.md."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from eoshare.api.deps import Admin, Catalog
from eoshare.api.links import base_url, q, render_item, visible_collection
from eoshare.api.responses import GeoJSONResponse, JSONResponse
from eoshare.catalog.assetkeys import keep_node_keys, strip_node_fields
from eoshare.errors import InvalidRequestError

router = APIRouter(tags=["Transactions"])

AnyBody = Annotated[dict[str, Any], Body(description="a STAC document")]
PatchBody = Annotated[
    dict[str, Any] | list[dict[str, Any]],
    Body(description="a JSON merge patch (RFC 7396) or a JSON Patch (RFC 6902)"),
]


def _answer(request: Request, response: Response) -> Response:
    """RFC 7240: ``Prefer: return=minimal`` asks for 204 No Content instead of the
    updated document (OGC API Features Part 4 allows either)."""
    prefer = request.headers.get("prefer", "")
    if any(p.strip().lower() == "return=minimal" for p in prefer.split(",")):
        return Response(status_code=204, headers={"Preference-Applied": "return=minimal"})
    return response


def _from_uri(body: dict[str, Any], collection_id: str, item_id: str) -> dict[str, Any]:
    """The transaction extension: PUT and PATCH "must populate the id and collection fields
    in the Item from the URI", and answer 400 when the document names others."""
    for key, want in (("id", item_id), ("collection", collection_id)):
        given = body.get(key)
        if given is not None and given != want:
            raise InvalidRequestError(
                f"the item's {key} {given!r} does not match the URL's {want!r}"
            )
    return {**body, "id": item_id, "collection": collection_id}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise InvalidRequestError(f"JSON Patch path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        try:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise InvalidRequestError(f"JSON Patch path segment {part!r} does not exist") from exc
    return cur, parts[-1]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON Patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise InvalidRequestError("each JSON Patch operation needs a string 'path'")
        parts = _pointer(path)
        if not parts:
            raise InvalidRequestError("JSON Patch may not replace the whole document")
        if kind in ("move", "copy"):
            src_parent, src_key = _parent(doc, _pointer(str(op.get("from", ""))))
            try:
                value = (
                    src_parent[int(src_key)]
                    if isinstance(src_parent, list)
                    else src_parent[src_key]
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise InvalidRequestError(
                    f"JSON Patch 'from' {op.get('from')!r} does not exist"
                ) from exc
            if kind == "move":
                if isinstance(src_parent, list):
                    src_parent.pop(int(src_key))
                else:
                    del src_parent[src_key]
            kind, op = "add", {**op, "value": copy.deepcopy(value)}
        parent, key = _parent(doc, parts)
        try:
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if key == "-" else int(key), op.get("value"))
                else:
                    parent[key] = op.get("value")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(key))
                else:
                    del parent[key]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(key)] = op.get("value")
                else:
                    if key not in parent:
                        raise KeyError(key)
                    parent[key] = op.get("value")
            elif kind == "test":
                current = parent[int(key)] if isinstance(parent, list) else parent[key]
                if current != op.get("value"):
                    raise InvalidRequestError(f"JSON Patch test failed at {path!r}")
            else:
                raise InvalidRequestError(f"unknown JSON Patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise InvalidRequestError(f"JSON Patch path {path!r} does not exist") from exc
    return doc


def apply_patch(
    doc: dict[str, Any], patch: dict[str, Any] | list[dict[str, Any]]
) -> dict[str, Any]:
    result = json_patch(doc, patch) if isinstance(patch, list) else merge_patch(doc, patch)
    if not isinstance(result, dict):
        raise InvalidRequestError("the patch must leave a JSON object")
    return result


@router.post(
    "/collections", status_code=201, response_class=JSONResponse, summary="Create a collection"
)
def create_collection(request: Request, body: AnyBody, catalog: Catalog, _: Admin) -> JSONResponse:
    created = catalog.create_collection(body)
    base = base_url(request)
    return JSONResponse(
        visible_collection(request, created),
        status_code=201,
        headers={"Location": f"{base}/collections/{q(created['id'])}"},
    )


@router.put(
    "/collections/{collection_id}", response_class=JSONResponse, summary="Replace a collection"
)
def replace_collection(
    request: Request, collection_id: str, body: AnyBody, catalog: Catalog, _: Admin
) -> Response:
    updated = catalog.update_collection(collection_id, body)
    return _answer(request, JSONResponse(visible_collection(request, updated)))


@router.patch(
    "/collections/{collection_id}", response_class=JSONResponse, summary="Patch a collection"
)
def patch_collection(
    request: Request, collection_id: str, body: PatchBody, catalog: Catalog, _: Admin
) -> Response:
    current = catalog.get_collection(collection_id)
    updated = catalog.update_collection(collection_id, apply_patch(current, body))
    return _answer(request, JSONResponse(visible_collection(request, updated)))


@router.delete("/collections/{collection_id}", status_code=204, summary="Delete a collection")
def delete_collection(collection_id: str, catalog: Catalog, _: Admin) -> Response:
    catalog.delete_collection(collection_id)
    return Response(status_code=204)


@router.post(
    "/collections/{collection_id}/items",
    status_code=201,
    response_class=GeoJSONResponse,
    summary="Create an item (or items, from a FeatureCollection)",
)
def create_item(
    request: Request, collection_id: str, body: AnyBody, catalog: Catalog, _: Admin
) -> Response:
    catalog.get_collection(collection_id)
    base = base_url(request)
    if body.get("type") == "FeatureCollection":
        features = body.get("features")
        if not isinstance(features, list):
            raise InvalidRequestError("a FeatureCollection needs a 'features' array")
        features = [strip_node_fields(f) if isinstance(f, dict) else f for f in features]
        report = catalog.upsert_items(features, collection_id=collection_id, on_conflict="error")
        return JSONResponse({"inserted": report.inserted}, status_code=201)
    created = catalog.create_item(collection_id, strip_node_fields(body))
    return GeoJSONResponse(
        render_item(request, created),
        status_code=201,
        headers={"Location": f"{base}/collections/{q(collection_id)}/items/{q(created['id'])}"},
    )


@router.put(
    "/collections/{collection_id}/items/{item_id}",
    response_class=GeoJSONResponse,
    summary="Replace an item",
)
def replace_item(
    request: Request, collection_id: str, item_id: str, body: AnyBody, catalog: Catalog, _: Admin
) -> Response:
    current = catalog.get_item(collection_id, item_id)
    body = _from_uri(body, collection_id, item_id)
    updated = catalog.update_item(collection_id, item_id, keep_node_keys(body, current))
    return _answer(request, GeoJSONResponse(render_item(request, updated)))


@router.patch(
    "/collections/{collection_id}/items/{item_id}",
    response_class=GeoJSONResponse,
    summary="Patch an item",
)
def patch_item(
    request: Request,
    collection_id: str,
    item_id: str,
    body: PatchBody,
    catalog: Catalog,
    _: Admin,
) -> Response:
    current = catalog.get_item(collection_id, item_id)
    patched = keep_node_keys(_from_uri(apply_patch(current, body), collection_id, item_id), current)
    updated = catalog.update_item(collection_id, item_id, patched)
    return _answer(request, GeoJSONResponse(render_item(request, updated)))


@router.delete(
    "/collections/{collection_id}/items/{item_id}", status_code=204, summary="Delete an item"
)
def delete_item(collection_id: str, item_id: str, catalog: Catalog, _: Admin) -> Response:
    catalog.delete_item(collection_id, item_id)
    return Response(status_code=204)
