"""The queryables document and the names a filter may use, shared by every backend: each
backend keeps the (collection, property, type) facts of what it loaded; the schema built
from them is the same everywhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]

# STAC common metadata: always queryable, whether or not any item carries them yet, so
# that a filter on e.g. ``mission`` matches nothing instead of being refused.
COMMON: dict[str, JSON] = {
    "title": {"title": "Title", "type": "string"},
    "description": {"title": "Description", "type": "string"},
    "platform": {"title": "Platform", "type": "string"},
    "constellation": {"title": "Constellation", "type": "string"},
    "mission": {"title": "Mission", "type": "string"},
    "instruments": {"title": "Instruments", "type": "array", "items": {"type": "string"}},
    "gsd": {"title": "Ground sample distance", "type": "number"},
    "created": {"title": "Created", "type": "string", "format": "date-time"},
    "updated": {"title": "Updated", "type": "string", "format": "date-time"},
    "start_datetime": {"title": "Acquisition start", "type": "string", "format": "date-time"},
    "end_datetime": {"title": "Acquisition end", "type": "string", "format": "date-time"},
}

# queryables every item has, held outside its properties
CORE = ("id", "collection", "datetime", "start_datetime", "end_datetime")

_TYPE_NAMES = {
    bool: "boolean",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}
_ISO_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def json_type(value: Any) -> str:
    """The queryable type of a property value (called for every property loaded)."""
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, str):
        return "datetime" if _ISO_LIKE.match(value) else "string"
    return "null"


def queryables_document(types: dict[str, set[str]]) -> JSON:
    """The JSON schema of /queryables from the property types seen in the items."""
    props: JSON = {
        "id": {"title": "Item id", "type": "string"},
        "collection": {"title": "Collection id", "type": "string"},
        "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
        "datetime": {"title": "Acquisition time", "type": "string", "format": "date-time"},
    }
    for name, common in COMMON.items():
        if name not in types:
            props[name] = dict(common)
    for name in sorted(types):
        if name in props and name not in COMMON:
            continue
        kinds = types[name] - {"null"}
        schema: JSON
        if kinds == {"datetime"}:
            schema = {"type": "string", "format": "date-time"}
        elif len(kinds) == 1:
            schema = {"type": next(iter(kinds))}
        else:
            schema = {"type": sorted({"datetime": "string"}.get(k, k) for k in kinds) or "null"}
        props[name] = {"title": name, **schema}
    return {"type": "object", "properties": props, "additionalProperties": False}


def known_names(types: dict[str, set[str]]) -> Callable[[str], bool]:
    """Whether a filter or sortby may name a property, given the types seen."""

    def known(name: str) -> bool:
        return name in CORE or name == "geometry" or name in types or name in COMMON

    return known


def property_names(expr: Any) -> set[str]:
    """Every ``{"property": name}`` a CQL2 JSON expression uses."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            prop = node.get("property")
            if isinstance(prop, str) and len(node) == 1:
                found.add(prop)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
