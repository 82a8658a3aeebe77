"""The ready-made algorithms, each run through ``POST /result`` on a synthetic tile whose
pixels the test wrote, and checked against the same computation in numpy."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio

from .conftest import SYNTH_DATES, SYNTH_ORIGIN, SYNTH_SIZE, Node, synth_arrays

A = synth_arrays()
D1, D2 = SYNTH_DATES


def f32(band: str, date: str = D1) -> np.ndarray:
    return A[date, band].astype("float32")


def nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / (a + b)


def run(node: Node, process: str, args: dict[str, Any], *, both: bool = False,
        fmt: str = "GTiff") -> Any:  # fmt: skip
    end = "2024-08-01" if both else "2024-06-15"
    graph = {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "synth", "spatial_extent": None,
            "temporal_extent": ["2024-05-01", end], "bands": None}},
        "algo": {"process_id": process, "arguments": {"data": {"from_node": "load"}, **args}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "algo"}, "format": fmt}, "result": True},
    }  # fmt: skip
    r = httpx.post(
        f"{node.url}/openeo/1.2/result",
        json={"process": {"process_graph": graph}},
        headers={"Authorization": f"Bearer basic//{node.tokens['alice']}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    if fmt != "GTiff":
        return r.content
    with rasterio.open(io.BytesIO(r.content)) as ds:
        assert ds.transform.c == SYNTH_ORIGIN[0] and ds.transform.f == SYNTH_ORIGIN[1]
        assert (ds.width, ds.height) == (SYNTH_SIZE, SYNTH_SIZE)
        data = ds.read()
        return data[0] if ds.count == 1 else data


def close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_ndwi_and_nbr_by_common_name(node: Node) -> None:
    close(run(node, "ndwi", {}), nd(f32("B03"), f32("B08")))
    close(run(node, "nbr", {}), nd(f32("B08"), f32("B12")))


def test_scl_cloud_mask(node: Node) -> None:
    got = run(node, "cloud_mask_scl", {})
    clear = ~np.isin(A[D1, "SCL"], [0, 1, 3, 8, 9, 10])
    assert got.shape == (4, SYNTH_SIZE, SYNTH_SIZE)  # SCL itself is dropped
    for i, band in enumerate(("B03", "B04", "B08", "B12")):
        close(got[i], np.where(clear, f32(band), np.nan))
    assert 0 < clear.sum() < clear.size


def test_median_composite_and_change(node: Node) -> None:
    got = run(node, "median_composite", {}, both=True)
    close(got[1], np.median(np.stack([f32("B04", D1), f32("B04", D2)]), axis=0))
    diff = run(node, "change", {"split": "2024-06-15T00:00:00Z"}, both=True)
    close(diff[2], f32("B08", D2) - f32("B08", D1))


def test_flood_extent(node: Node) -> None:
    got = run(node, "flood_extent", {"threshold": 0.1})
    close(got, (nd(f32("B03"), f32("B08")) > 0.1).astype("float32"))


def test_burn_severity_classes(node: Node) -> None:
    got = run(node, "dnbr_classes", {"split": "2024-06-15T00:00:00Z"}, both=True)
    dnbr = nd(f32("B08", D1), f32("B12", D1)) - nd(f32("B08", D2), f32("B12", D2))
    bounds = [-0.25, -0.1, 0.1, 0.27, 0.44, 0.66]
    want = (np.digitize(dnbr, bounds) + 1).astype("float32")
    close(got, want)
    assert set(np.unique(got)) >= {1.0, 7.0}


@pytest.mark.parametrize("fmt", ["JSON", "CSV"])
def test_zonal_statistics(node: Node, fmt: str) -> None:
    from affine import Affine
    from pyproj import Transformer
    from rasterio.features import geometry_mask
    from shapely.geometry import box, mapping

    # the north-west quarter of the tile, given in lon/lat
    x0, y0 = SYNTH_ORIGIN
    quarter = box(x0, y0 - 320, x0 + 320, y0)
    to_ll = Transformer.from_crs(32629, 4326, always_xy=True)
    ring = [to_ll.transform(x, y) for x, y in quarter.exterior.coords]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    body = run(node, "zonal_statistics", {"geometries": polygon, "reducer": "mean"}, fmt=fmt)
    if fmt == "JSON":
        records = json.loads(body)
    else:
        import csv

        records = list(csv.DictReader(io.StringIO(body.decode())))
    red = next(r for r in records if r["band"] == "B04")
    inside = geometry_mask(
        [mapping(quarter)], out_shape=(SYNTH_SIZE, SYNTH_SIZE),
        transform=Affine(10.0, 0.0, x0, 0.0, -10.0, y0), invert=True,
    )  # fmt: skip
    assert 900 < inside.sum() < 1200  # about 32 x 32 pixels
    assert float(red["mean"]) == pytest.approx(float(f32("B04")[inside].mean()), rel=1e-6)
    assert int(red["pixels"]) == int(inside.sum())
