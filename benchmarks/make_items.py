"""Write N realistic STAC items as ndjson, for the catalogue benchmarks.

The items are copies of the real ones shared in ``/work/shared/data/stac`` (Landsat 8
over the Netherlands and the Chatham Islands, Sentinel-2 L2A, Sentinel-1 GRD) with:

* the footprint (``geometry`` and ``bbox``) shifted by a random lon/lat offset that
  keeps it inside [-180, 180] x [-80, 80];
* the dates (``datetime``, ``start_datetime``, ``end_datetime``) shifted together so the
  acquisition falls uniformly in 2015-01-01 .. 2025-01-01;
* ``eo:cloud_cover`` (where the template has it) redrawn uniformly in [0, 100];
* a unique id: ``<template id>-b<index>``.

Everything else (assets, links, other properties) is kept verbatim, so documents have
the size and shape of real ones. Templates the catalogue would refuse (e.g. an asset
without ``href``) are skipped. Output is streamed: memory stays bounded whatever N.
The same ``--seed`` gives the same file.

    python benchmarks/make_items.py 100000 benchmarks/.work/items-100000.ndjson
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from eoshare.catalog.validate import check_item
from eoshare.errors import InvalidItemError

DATA_DIR = Path("/work/shared/data/stac")
TEMPLATE_FILES = (
    "landsat-8-c2-l2_netherlands_pc.ndjson",
    "landsat-8-c2-l2_chatham-islands_pc.ndjson",
    "sentinel-2-l2a_pc_and_earthsearch.ndjson",
    "sentinel-1-grd_earthsearch.ndjson",
)
LAT_LIMIT = 80.0
EPOCH_START = datetime(2015, 1, 1, tzinfo=UTC)
EPOCH_SPAN_S = int((datetime(2025, 1, 1, tzinfo=UTC) - EPOCH_START).total_seconds())
DATE_KEYS = ("datetime", "start_datetime", "end_datetime")

JSON = dict[str, Any]


def load_templates(data_dir: Path = DATA_DIR) -> list[JSON]:
    """The valid real items (with a geometry and a bbox), in file order."""
    templates: list[JSON] = []
    for name in TEMPLATE_FILES:
        path = data_dir / name
        if not path.exists():
            continue
        with open(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                    check_item(item)
                except (orjson.JSONDecodeError, InvalidItemError):
                    continue
                if not item.get("geometry") or not item.get("bbox") or not item.get("collection"):
                    continue
                bbox = item["bbox"]
                minx, maxx = bbox[0], bbox[len(bbox) // 2]
                if minx > maxx:  # crosses the antimeridian: shifting it is not simple
                    continue
                templates.append(item)
    if not templates:
        raise SystemExit(f"no usable template items under {data_dir}")
    return templates


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shift_coords(coords: Any, dx: float, dy: float) -> Any:
    if coords and isinstance(coords[0], int | float):
        return [coords[0] + dx, coords[1] + dy, *coords[2:]]
    return [_shift_coords(c, dx, dy) for c in coords]


def _shift_geometry(geom: JSON, dx: float, dy: float) -> JSON:
    if geom.get("type") == "GeometryCollection":
        return {**geom, "geometries": [_shift_geometry(g, dx, dy) for g in geom["geometries"]]}
    return {**geom, "coordinates": _shift_coords(geom["coordinates"], dx, dy)}


def generate(n: int, *, seed: int = 42, templates: list[JSON] | None = None) -> Iterator[JSON]:
    """N shifted copies of the templates, round-robin, deterministic for a seed."""
    templates = templates if templates is not None else load_templates()
    rng = random.Random(seed)
    anchors = []
    for t in templates:
        props = t["properties"]
        anchor = props.get("datetime") or props.get("start_datetime")
        anchors.append(_parse(anchor))
    for i in range(n):
        k = i % len(templates)
        t = templates[k]
        bbox = t["bbox"]
        if len(bbox) == 6:
            minx, miny, _, maxx, maxy, _ = bbox
        else:
            minx, miny, maxx, maxy = bbox
        dx = rng.uniform(-180.0 - minx, 180.0 - maxx)
        dy = rng.uniform(-LAT_LIMIT - miny, LAT_LIMIT - maxy)
        new_bbox = [minx + dx, miny + dy, maxx + dx, maxy + dy]
        if len(bbox) == 6:
            new_bbox = [new_bbox[0], new_bbox[1], bbox[2], new_bbox[2], new_bbox[3], bbox[5]]
        when = EPOCH_START + timedelta(seconds=rng.randrange(EPOCH_SPAN_S))
        delta = when - anchors[k]
        props = dict(t["properties"])
        for key in DATE_KEYS:
            value = props.get(key)
            if isinstance(value, str):
                props[key] = _fmt(_parse(value) + delta)
        if "eo:cloud_cover" in props:
            props["eo:cloud_cover"] = round(rng.uniform(0.0, 100.0), 2)
        item = dict(t)
        item["id"] = f"{t['id']}-b{i:07d}"
        item["bbox"] = new_bbox
        item["geometry"] = _shift_geometry(t["geometry"], dx, dy)
        item["properties"] = props
        yield item


def write_ndjson(n: int, path: Path, *, seed: int = 42) -> float:
    """Write the file (atomically: to a temporary name, then renamed); seconds taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    started = time.perf_counter()
    with open(tmp, "wb", buffering=4 * 1024 * 1024) as f:
        for item in generate(n, seed=seed):
            f.write(orjson.dumps(item))
            f.write(b"\n")
    tmp.replace(path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int, help="how many items")
    parser.add_argument("output", type=Path, help="the .ndjson file to write")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    seconds = write_ndjson(args.count, args.output, seed=args.seed)
    size = args.output.stat().st_size
    print(
        f"wrote {args.count} items ({size / 1e6:.0f} MB) to {args.output} in {seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
