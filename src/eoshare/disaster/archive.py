"""The archive of an activation: pre- and post-event scenes over its area, ranked by
usefulness, as a STAC ItemCollection.

The score of a scene is the product of four factors in [0, 1]:

* coverage: the fraction of the area its footprint covers;
* clear sky: ``1 - cloud/100`` with the cloud cover over the area when the item states
  it (``eoshare:area_cloud_cover``), else the scene's ``eo:cloud_cover``; radar scenes
  (``sar:*`` properties) and items without cloud cover count as clear;
* resolution: ``min(1, 10 m / gsd)`` (10 m or finer scores 1; no ``gsd``: 0.5);
* time: ``1 / (1 + days from the event / 5)``, so that a scene a day after the event
  beats one two weeks later.

Post-event scenes come first (that is what responders need), each phase by score.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import shapely
from shapely.geometry import shape

from eoshare.access.policy import item_acquired

JSON = dict[str, Any]


def _number(props: JSON, *keys: str) -> float | None:
    for key in keys:
        value = props.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _gsd(item: JSON) -> float | None:
    props = item.get("properties") or {}
    gsd = _number(props, "gsd")
    if gsd is not None:
        return gsd
    values = [
        a["gsd"]
        for a in (item.get("assets") or {}).values()
        if isinstance(a, dict) and isinstance(a.get("gsd"), int | float)
    ]
    return float(min(values)) if values else None


def score(item: JSON, area: Any, event: datetime) -> JSON | None:
    """The ranking facts of one item, or None when it has no usable footprint/time."""
    acquired = item_acquired(item)
    geometry = item.get("geometry")
    if acquired is None or not isinstance(geometry, dict):
        return None
    try:
        footprint = shape(geometry)
    except (ValueError, TypeError, AttributeError):
        return None
    coverage = float(shapely.intersection(footprint, area).area / area.area) if area.area else 0.0
    props = item.get("properties") or {}
    radar = any(k.startswith("sar:") for k in props)
    cloud = None if radar else _number(props, "eoshare:area_cloud_cover", "eo:cloud_cover")
    clear = 1.0 if cloud is None else max(0.0, 1.0 - cloud / 100.0)
    gsd = _gsd(item)
    resolution = 0.5 if gsd is None or gsd <= 0 else min(1.0, 10.0 / gsd)
    hours = (acquired - event).total_seconds() / 3600.0
    timeliness = 1.0 / (1.0 + abs(hours) / 24.0 / 5.0)
    return {
        "eoshare:phase": "post" if hours >= 0 else "pre",
        "eoshare:hours_from_event": round(hours, 2),
        "eoshare:coverage": round(min(coverage, 1.0), 4),
        "eoshare:cloud_cover_used": cloud,
        "eoshare:gsd_used": gsd,
        "eoshare:score": round(min(coverage, 1.0) * clear * resolution * timeliness, 6),
    }


def rank(items: list[JSON], area_geojson: JSON, event: datetime) -> list[JSON]:
    """The items that intersect the area, annotated and ordered: post-event first, each
    phase by descending score (then by closeness to the event)."""
    area = shape(area_geojson)
    scored: list[tuple[JSON, JSON]] = []
    for item in items:
        facts = score(item, area, event)
        if facts is None or facts["eoshare:coverage"] <= 0:
            continue
        scored.append((item, facts))
    scored.sort(
        key=lambda p: (
            p[1]["eoshare:phase"] != "post",
            -p[1]["eoshare:score"],
            abs(p[1]["eoshare:hours_from_event"]),
        )
    )
    out = []
    for n, (item, facts) in enumerate(scored, start=1):
        props = {**(item.get("properties") or {}), **facts, "eoshare:rank": n}
        out.append({**item, "properties": props})
    return out
