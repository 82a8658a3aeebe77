"""The demo node: synthetic scenes that are valid STAC, real COGs and physically sane.

One small demo (``scale="small"``: every mission and kind of scene, smaller rasters) is
built once for the module; the checks read it back through the catalogue and the store
and compare the pixels with the truth that :mod:`eoshare.demo.scenes` rendered them from.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from eoshare.catalog import Catalog, open_catalog
from eoshare.demo import scenes
from eoshare.demo.build import MISSIONS, SITE, PlannedScene, build_demo, plan
from eoshare.storage import Store, open_store


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    started = time.perf_counter()
    build_demo(root, progress=False, scale="small")
    # the small build is what the test suite pays for; keep it well under 30 s
    assert time.perf_counter() - started < 30.0
    return root


@pytest.fixture
def catalog(demo_dir: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"sqlite:///{demo_dir / 'catalog.db'}")
    yield cat
    cat.close()


@pytest.fixture
def store(demo_dir: Path) -> Store:
    return open_store(str(demo_dir / "store"))


def _planned() -> list[PlannedScene]:
    return plan("small")


def _read(store: Store, item: dict[str, Any], key: str) -> np.ma.MaskedArray[Any, Any]:
    path = store.local_path(item["assets"][key]["eoshare:key"])
    assert path is not None
    with rasterio.open(path) as ds:
        return ds.read(masked=True)


# --------------------------------------------------------------------------- STAC


def test_collections_are_described_and_plainly_synthetic(catalog: Catalog) -> None:
    collections = {c["id"]: c for c in catalog.list_collections()}
    assert set(collections) == {m.collection_id for m in MISSIONS}
    for c in collections.values():
        assert c["stac_version"] == "1.1.0"
        assert "(synthetic demo)" in c["title"]
        assert "SYNTHETIC" in c["description"]
        assert c["eoshare:synthetic"] is True
        roles = {r for p in c["providers"] for r in p["roles"]}
        assert {"producer", "licensor", "host"} <= roles
        assert any("fictional" in p["name"] for p in c["providers"])
        assert c["license"] and c["keywords"] and c["item_assets"]
        assert {"platform", "instruments", "gsd"} <= set(c["summaries"])
        # the extent was set from the items, not left at the whole world
        bbox = c["extent"]["spatial"]["bbox"][0]
        assert bbox != [-180.0, -90.0, 180.0, 90.0]
        assert c["extent"]["temporal"]["interval"][0][0] is not None
    agencies = {c["providers"][0]["name"] for c in collections.values()}
    assert len(agencies) == len(MISSIONS)
    optical = collections["kestrel-msi-l2a"]["summaries"]["eo:cloud_cover"]
    assert optical["minimum"] <= optical["maximum"]


def test_every_planned_item_is_there_and_says_it_is_synthetic(catalog: Catalog) -> None:
    planned = {(s.mission.collection_id, s.item_id) for s in _planned()}
    found = {(i["collection"], i["id"]) for i in catalog.iter_items()}
    assert found == planned
    for item in catalog.iter_items():
        props = item["properties"]
        assert props["eoshare:synthetic"] is True
        assert "(synthetic demo)" in props["title"]
        assert props["platform"] and props["instruments"] and props["constellation"]


def test_documents_validate_against_the_stac_schemas(catalog: Catalog, stac_schemas: Path) -> None:
    sys.path.insert(0, str(stac_schemas))
    try:
        import offline  # noqa: F401  (serves schema URLs from the local mirror)
    finally:
        sys.path.remove(str(stac_schemas))
    import pystac

    for collection in catalog.list_collections():
        pystac.Collection.from_dict(collection).validate()
    for item in catalog.iter_items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pystac.Item.from_dict(item).validate()


def test_footprints_are_inside_the_bbox_and_tilted_where_planned(catalog: Catalog) -> None:
    from shapely.geometry import box, shape

    for scene in _planned():
        item = catalog.get_item(scene.mission.collection_id, scene.item_id)
        geom = shape(item["geometry"])
        assert geom.is_valid
        bbox = box(*item["bbox"])
        assert bbox.buffer(1e-6).contains(geom)
        if scene.spec.footprint != "full":
            # a real nodata border: the footprint fills clearly less than its bbox
            assert geom.area < 0.95 * bbox.area


# --------------------------------------------------------------------------- pixels


def test_every_asset_is_a_readable_cog_with_real_pixels(catalog: Catalog, store: Store) -> None:
    for item in catalog.iter_items():
        for key, asset in item["assets"].items():
            path = store.local_path(asset["eoshare:key"])
            assert path is not None and path.is_file(), (item["id"], key)
            if "thumbnail" in asset["roles"]:
                continue
            assert cog_validate(path, quiet=True)[0], (item["id"], key)
            with rasterio.open(path) as ds:
                assert ds.crs is not None
                # small rasters fit one COG block and need no overviews
                assert ds.overviews(1) or max(ds.width, ds.height) <= 512
                data = ds.read(1, masked=True)
            valid = data.compressed().astype(np.float64)
            assert valid.size > 0.5 * data.size
            # not a constant: a picture has structure
            assert valid.std() > 0.02 * abs(valid.mean()), (item["id"], key)


def test_the_ingested_pixels_are_the_rendered_ones(catalog: Catalog, store: Store) -> None:
    scene = next(s for s in _planned() if s.spec.cloud_target > 0)
    rendered = scenes.render(scene.spec)
    item = catalog.get_item(scene.mission.collection_id, scene.item_id)
    red = _read(store, item, "red")[0]
    assert np.array_equal(red.filled(0), rendered.bands["red"])
    assert np.array_equal(~np.ma.getmaskarray(red), rendered.valid)


def test_cloud_cover_matches_the_clouds_in_the_pixels(catalog: Catalog, store: Store) -> None:
    checked = 0
    for scene in _planned():
        if scene.spec.sensor.kind != "optical":
            continue
        item = catalog.get_item(scene.mission.collection_id, scene.item_id)
        reported = item["properties"]["eo:cloud_cover"]
        if scene.spec.cloud_target == 0:
            assert reported == 0
            continue
        assert reported == pytest.approx(100 * scene.spec.cloud_target, abs=1.0)
        # an independent look: clouds are bright in the blue, where no ground here is
        blue = _read(store, item, "blue")[0]
        bright = float((blue > 3500).sum()) / float(blue.count())
        assert 100 * bright == pytest.approx(reported, abs=4.0), scene.item_id
        checked += 1
    assert checked >= 2


def test_ndvi_is_high_over_vegetation_and_negative_over_water(
    catalog: Catalog, store: Store
) -> None:
    checked = 0
    for scene in _planned():
        if scene.spec.sensor.kind != "optical":
            continue
        item = catalog.get_item(scene.mission.collection_id, scene.item_id)
        truth = scenes.render(scene.spec)
        red = _read(store, item, "red")[0].astype(np.float64)
        nir = _read(store, item, "nir")[0].astype(np.float64)
        ndvi = ((nir - red) / (nir + red)).filled(np.nan)
        clear = truth.valid & ~truth.cloud
        vegetation = (truth.cover.fractions["forest"] + truth.cover.fractions["crop"] > 0.8) & clear
        water = truth.cover.dominant("water", 0.99) & clear
        if vegetation.sum() > 50:
            assert np.nanmean(ndvi[vegetation]) > 0.3, scene.item_id
            checked += 1
        if water.sum() > 50:
            assert np.nanmean(ndvi[water]) < 0.0, scene.item_id
            checked += 1
    assert checked >= 3


def test_radar_sees_dark_water_and_bright_towns(catalog: Catalog, store: Store) -> None:
    scene = next(s for s in _planned() if s.spec.sensor.kind == "sar")
    truth = scenes.render(scene.spec)
    item = catalog.get_item(scene.mission.collection_id, scene.item_id)
    assert item["properties"]["sar:polarizations"] == ["VV", "VH"]
    vv = _read(store, item, "vv")[0].filled(np.nan).astype(np.float64)
    water = truth.cover.dominant("water", 0.99) & truth.valid
    urban = truth.cover.dominant("urban", 0.9) & truth.valid
    assert water.sum() > 50 and urban.sum() > 50
    db_water = 10 * np.log10(np.nanmean(vv[water]))
    db_urban = 10 * np.log10(np.nanmean(vv[urban]))
    assert db_urban - db_water > 15.0
    # speckle: a single class still varies pixel to pixel like ~4-look intensity
    cv = np.nanstd(vv[urban]) / np.nanmean(vv[urban])
    assert 0.3 < cv < 1.0


# --------------------------------------------------------------------------- scenes


def test_rendering_is_deterministic() -> None:
    spec = _planned()[0].spec
    a, b = scenes.render(spec), scenes.render(spec)
    for name in a.bands:
        assert np.array_equal(a.bands[name], b.bands[name])


def test_sensors_of_one_site_see_the_same_ground() -> None:
    """The 30 m and the 300 m sensors agree on where the water is (a shared world)."""
    site = SITE["cairo"]
    when = _planned()[0].spec.when
    fine = scenes.land_cover(site, scenes.utm_grid(site, 30.0, 256), when)
    coarse_grid = scenes.geographic_grid(site, 0.0027, 128)
    coarse = scenes.land_cover(site, coarse_grid, when)
    # the fine grid's water fraction, and that of the coarse pixels over the same ground
    fine_water = float(fine.fractions["water"].mean())
    x, y = scenes.ground_coordinates(site, coarse_grid)
    inside = (np.abs(x) < 3840) & (np.abs(y) < 3840)
    coarse_water = float(coarse.fractions["water"][inside].mean())
    assert fine_water == pytest.approx(coarse_water, abs=0.05)


# --------------------------------------------------------------------------- idempotence


def test_building_again_keeps_the_same_catalogue(demo_dir: Path, catalog: Catalog) -> None:
    before = sorted((i["collection"], i["id"]) for i in catalog.iter_items())
    started = time.perf_counter()
    build_demo(demo_dir, progress=False, scale="small")
    assert time.perf_counter() - started < 5.0  # recognised as built, not redone
    after = sorted((i["collection"], i["id"]) for i in catalog.iter_items())
    assert after == before


def test_a_half_built_node_is_rebuilt_cleanly(tmp_path: Path) -> None:
    build_demo(tmp_path, progress=False, scale="small")
    store = open_store(str(tmp_path / "store"))
    keys_before = sorted(store.iter_keys())
    cat = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        victim = _planned()[0]
        cat.delete_item(victim.mission.collection_id, victim.item_id)
        # an unrelated collection must survive a rebuild
        other = dict(cat.get_collection("kestrel-msi-l2a"), id="not-the-demo", item_assets={})
        cat.create_collection(other)
    finally:
        cat.close()
    build_demo(tmp_path, progress=False, scale="small")
    cat = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        found = {(i["collection"], i["id"]) for i in cat.iter_items()}
        assert found == {(s.mission.collection_id, s.item_id) for s in _planned()}
        cat.get_collection("not-the-demo")
    finally:
        cat.close()
    assert sorted(store.iter_keys()) == keys_before
