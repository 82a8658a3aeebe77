"""The OpenAPI document (``/api``) as the node really answers: FastAPI's generated
document, plus the RFC 9457 problem responses that every operation may give (the error
handlers of ``eoshare.api.errors`` answer them for any route), without FastAPI's 422
(the node answers invalid requests with 400 problems).

Schemathesis checks every response against this document (tests/api/test_schemathesis.py):
a route whose answers differ from what it declares fails there."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from eoshare.api.errors import PROBLEM

JSON = dict[str, Any]

PROBLEM_SCHEMA: JSON = {
    "title": "Problem",
    "description": "An RFC 9457 problem document, with STAC API's code/description.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "description": {"type": "string"},
    },
}

# what any operation may answer, whatever it does
ERRORS: dict[int, str] = {
    400: "the request is malformed (the problem says what is wrong)",
    401: "credentials are missing, expired, revoked or forged",
    403: "the caller may not do this (the problem names the agreement)",
    404: "absent, or hidden from the caller",
    405: "the method is not allowed here",
    409: "it conflicts with what exists",
    413: "the body or the requested size is over a limit",
    429: "too many requests; retry after the time in Retry-After",
    502: "a service the node depends on failed",
    503: "the store or another service is unavailable; try again",
    507: "the node's disk is full",
}
# byte routes answer ranges outside the object with 416
RANGE_ERRORS: dict[int, str] = {416: "the requested range is outside the object"}
_UNUSED = ("HTTPValidationError", "ValidationError")

# --- what the main routes answer (STAC API core, trimmed to what every answer has) ----
_LINK: JSON = {
    "type": "object",
    "required": ["href", "rel"],
    "properties": {"href": {"type": "string"}, "rel": {"type": "string"}},
}
_LINKS: JSON = {"type": "array", "items": {"$ref": "#/components/schemas/Link"}}
_CATALOG: JSON = {
    "type": "object",
    "required": ["type", "id", "description", "links", "conformsTo"],
    "properties": {
        "type": {"const": "Catalog"},
        "id": {"type": "string"},
        "description": {"type": "string"},
        "links": _LINKS,
        "conformsTo": {"type": "array", "items": {"type": "string"}},
    },
}
_COLLECTION: JSON = {
    "type": "object",
    "required": ["type", "id", "description", "license", "extent", "links"],
    "properties": {
        "type": {"const": "Collection"},
        "id": {"type": "string"},
        "description": {"type": "string"},
        "license": {"type": "string"},
        "extent": {"type": "object", "required": ["spatial", "temporal"]},
        "links": _LINKS,
    },
}
_ITEM: JSON = {
    "type": "object",
    "required": ["type", "id", "geometry", "properties", "assets", "links"],
    "properties": {
        "type": {"const": "Feature"},
        "id": {"type": "string"},
        "collection": {"type": "string"},
        "geometry": {"type": ["object", "null"]},
        "properties": {"type": "object"},
        "assets": {"type": "object"},
        "links": _LINKS,
    },
}
_ITEMS: JSON = {
    "type": "object",
    "required": ["type", "features", "links"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
        "links": _LINKS,
        "numberMatched": {"type": "integer", "minimum": 0},
        "numberReturned": {"type": "integer", "minimum": 0},
    },
}
_TILEJSON: JSON = {
    "type": "object",
    "required": ["tilejson", "tiles", "minzoom", "maxzoom", "bounds"],
    "properties": {
        "tilejson": {"type": "string"},
        "tiles": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "minzoom": {"type": "integer", "minimum": 0},
        "maxzoom": {"type": "integer", "minimum": 0},
        "bounds": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
    },
}
_ME: JSON = {
    "type": "object",
    "required": ["user", "member", "roles", "anonymous", "operator", "via"],
    "properties": {
        "user": {"type": ["string", "null"]},
        "member": {"type": ["string", "null"]},
        "country": {"type": ["string", "null"]},
        "roles": {"type": "array", "items": {"type": "string"}},
        "anonymous": {"type": "boolean"},
        "operator": {"type": "boolean"},
        "via": {"type": "string"},
    },
}
SCHEMAS: dict[str, JSON] = {
    "Link": _LINK,
    "Catalog": _CATALOG,
    "Collection": _COLLECTION,
    "Item": _ITEM,
    "ItemCollection": _ITEMS,
    "TileJSON": _TILEJSON,
    "Me": _ME,
}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


_GEO = "application/geo+json"
_JSON = "application/json"
_ITEM_PATH = "/collections/{collection_id}/items/{item_id}"
_TILES = "/tiles/collections/{collection_id}"
# (method, path) -> {status: {media type: schema}}: replaces what FastAPI could not know
SUCCESS: dict[tuple[str, str], dict[str, dict[str, JSON]]] = {
    ("get", "/"): {"200": {_JSON: _ref("Catalog")}},
    ("get", "/conformance"): {
        "200": {
            _JSON: {
                "type": "object",
                "required": ["conformsTo"],
                "properties": {"conformsTo": _CATALOG["properties"]["conformsTo"]},
            }
        }
    },
    ("get", "/collections"): {
        "200": {
            _JSON: {
                "type": "object",
                "required": ["collections", "links"],
                "properties": {
                    "collections": {"type": "array", "items": _ref("Collection")},
                    "links": _LINKS,
                },
            }
        }
    },
    ("post", "/collections"): {"201": {_JSON: _ref("Collection")}},
    ("get", "/collections/{collection_id}"): {"200": {_JSON: _ref("Collection")}},
    ("put", "/collections/{collection_id}"): {"200": {_JSON: _ref("Collection")}, "204": {}},
    ("patch", "/collections/{collection_id}"): {"200": {_JSON: _ref("Collection")}, "204": {}},
    ("get", "/collections/{collection_id}/items"): {"200": {_GEO: _ref("ItemCollection")}},
    # one item (geo+json), or {"inserted": n} for a FeatureCollection of them
    ("post", "/collections/{collection_id}/items"): {
        "201": {
            _GEO: _ref("Item"),
            _JSON: {
                "type": "object",
                "required": ["inserted"],
                "properties": {"inserted": {"type": "integer"}},
            },
        }
    },
    ("get", _ITEM_PATH): {"200": {_GEO: _ref("Item")}},
    ("put", _ITEM_PATH): {"200": {_GEO: _ref("Item")}, "204": {}},
    ("patch", _ITEM_PATH): {"200": {_GEO: _ref("Item")}, "204": {}},
    ("get", "/search"): {"200": {_GEO: _ref("ItemCollection")}},
    ("post", "/search"): {"200": {_GEO: _ref("ItemCollection")}},
    ("get", "/auth/me"): {"200": {_JSON: _ref("Me")}},
    ("post", "/auth/login"): {"200": {_JSON: _ref("Me")}},
    ("get", "/orders/{order_id}/manifest.json"): {"200": {_GEO: _ref("ItemCollection")}},
    ("get", "/orders/{order_id}/urls.txt"): {"200": {"text/plain": {"type": "string"}}},
    ("get", "/orders/{order_id}/order.meta4"): {
        "200": {"application/metalink4+xml": {"type": "string"}}
    },
    ("get", "/orders/{order_id}/download.zip"): {
        "200": {"application/zip": {"type": "string", "format": "binary"}}
    },
    ("get", f"{_TILES}/items/{{item_id}}/tilejson.json"): {"200": {_JSON: _ref("TileJSON")}},
    ("get", f"{_TILES}/tilejson.json"): {"200": {_JSON: _ref("TileJSON")}},
    ("get", "/alerts/stream"): {"200": {"text/event-stream": {"type": "string"}}},
}


# the openEO API (/openeo/...) answers errors in openEO's own shape
OPENEO_PREFIX = "/openeo/"
OPENEO_ERROR_SCHEMA: JSON = {
    "title": "OpenEOError",
    "description": "An openEO API error document.",
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "links": {"type": "array"},
    },
}


def _problem_response(description: str, path: str = "") -> JSON:
    if path.startswith(OPENEO_PREFIX):
        media, schema = "application/json", "OpenEOError"
    else:
        media, schema = PROBLEM, "Problem"
    return {
        "description": description,
        "content": {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def build_document(app: FastAPI) -> JSON:
    """The document, built once per app."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["OpenEOError"] = OPENEO_ERROR_SCHEMA
    for name in _UNUSED:
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    for path, methods in doc.get("paths", {}).items():
        for method, operation in methods.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code, content in SUCCESS.get((method, path), {}).items():
                declared = responses.setdefault(code, {"description": "Successful Response"})
                if content:
                    declared["content"] = {media: {"schema": sc} for media, sc in content.items()}
                else:
                    declared.pop("content", None)
            errors = {**ERRORS, **(RANGE_ERRORS if path.startswith("/download/") else {})}
            for error, description in errors.items():
                declared = responses.setdefault(str(error), _problem_response(description, path))
                # a route that describes an error code keeps its words; the body is a problem
                declared.setdefault("content", _problem_response("", path)["content"])
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    """Serve ``build_document`` at the app's OpenAPI URL (called by ``create_app``)."""

    def openapi() -> JSON:
        return build_document(app)

    app.openapi = openapi  # type: ignore[method-assign]
