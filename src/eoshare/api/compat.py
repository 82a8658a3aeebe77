"""Items as readers of both generations of the projection extension need them.

Projection extension v2 names the CRS ``proj:code`` ("EPSG:32633"); v1 named it
``proj:epsg`` (32633). Readers still in use look for ``proj:epsg`` only: GDAL before 3.9
(Debian 12's 3.6 STACIT driver skips every asset "lacking the 'proj:epsg' member"),
stackstac, some odc-stac paths, QGIS builds on GDAL 3.6. Newer readers look for
``proj:code``. So every item is served with both, wherever either is given (item
properties and each asset), and names projection extension **v1.2.0**: the one schema
that defines both fields (v1.1 forbids ``proj:code``, v2.0 forbids ``proj:epsg``), so
the served item still validates. The stored document is not changed (ADR 0003): this
runs on the way out, as an item decorator (``app.state.item_decorators``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

JSON = dict[str, Any]
PROJECTION_V1_2 = "https://stac-extensions.github.io/projection/v1.2.0/schema.json"
_PROJECTION = re.compile(r"^https://stac-extensions\.github\.io/projection/v[^/]+/schema\.json$")
_EPSG = re.compile(r"^EPSG:(\d+)$", re.IGNORECASE)


def both_projection_fields(fields: JSON) -> JSON | None:
    """``fields`` with ``proj:epsg`` and ``proj:code`` both set where one of them says
    the CRS; None when there is nothing to add."""
    has_code, has_epsg = "proj:code" in fields, "proj:epsg" in fields
    if has_code == has_epsg:
        return None
    out = dict(fields)
    if has_code:
        code = fields["proj:code"]
        match = _EPSG.match(code) if isinstance(code, str) else None
        # v1: null when the CRS has no EPSG code (then proj:wkt2 or proj:projjson says it)
        out["proj:epsg"] = int(match.group(1)) if match else None
    else:
        epsg = fields["proj:epsg"]
        out["proj:code"] = f"EPSG:{epsg}" if isinstance(epsg, int) else None
    return out


def decorate_item(request: Request, base: str, item: JSON) -> JSON:
    """Both projection fields on the item and its assets; extension v1.2.0 named."""
    changed = False
    out = dict(item)
    props = item.get("properties")
    if isinstance(props, dict):
        new = both_projection_fields(props)
        if new is not None:
            out["properties"], changed = new, True
    assets = item.get("assets")
    if isinstance(assets, dict):
        new_assets = dict(assets)
        for key, asset in assets.items():
            if isinstance(asset, dict):
                new = both_projection_fields(asset)
                if new is not None:
                    new_assets[key], changed = new, True
        out["assets"] = new_assets
    if not changed:
        return item
    extensions = [x for x in item.get("stac_extensions") or [] if not _PROJECTION.match(str(x))]
    out["stac_extensions"] = [*extensions, PROJECTION_V1_2]
    return out
