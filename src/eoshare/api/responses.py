"""JSON responses with the exact STAC media types, serialised with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette import responses


class JSONResponse(responses.JSONResponse):
    """A subclass of starlette's, so that FastAPI documents a JSON body in the OpenAPI
    document (any other response class it documents as a plain string)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


class SchemaJSONResponse(JSONResponse):
    media_type = "application/schema+json"
