"""Default renderings and plans, on the ingested items and on small documents."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from eoshare.errors import InvalidRequestError
from eoshare.tiles import make_spec, plan_for, raster_assets, render_defaults
from eoshare.tiles.render import RenderSpec

from .conftest import L8, L8C, S2, S2C


def _asset(key: str, common: str | None = None, count: int = 1, dtype: str = "uint16") -> Any:
    bands = [{"name": key, "data_type": dtype} for _ in range(count)]
    if common:
        bands[0]["eo:common_name"] = common
    return {"href": f"file:///x/{key}.tif", "type": "image/tiff; application=geotiff",
            "roles": ["data"], "eoshare:key": f"c/i/{key}.tif", "bands": bands}  # fmt: skip


def test_defaults_of_ingested_items(tiles_app: FastAPI) -> None:
    s2 = tiles_app.state.catalog.get_item(S2C, S2)
    l8 = tiles_app.state.catalog.get_item(L8C, L8)
    assert set(raster_assets(s2)) == {"B04", "B08", "SCL", "TCI"}  # not the thumbnail
    assert render_defaults(s2) == RenderSpec(assets=("TCI",))
    # Landsat B4/B5 is red + NIR: no RGB, so the first raster asset, greyscale
    assert render_defaults(l8) == RenderSpec(assets=("B4",), bidx=(1,))


def test_rgb_from_common_names_and_external_hrefs_ignored() -> None:
    item = {
        "id": "i",
        "collection": "c",
        "assets": {
            "B02": _asset("B02", "blue"),
            "B03": _asset("B03", "green"),
            "B04": _asset("B04", "red"),
            "B08": _asset("B08", "nir"),
            "remote": {"href": "https://example.com/a.tif", "type": "image/tiff"},
        },
    }
    assert "remote" not in raster_assets(item)  # never opened: no eoshare:key
    assert render_defaults(item) == RenderSpec(assets=("B04", "B03", "B02"))
    plan = plan_for(item, make_spec(expression="(nir-red)/(nir+red)"))
    assert plan.reads == {"B08": (1,), "B04": (1,)}


def test_plans_refuse_unknown_names(tiles_app: FastAPI) -> None:
    s2 = tiles_app.state.catalog.get_item(S2C, S2)
    with pytest.raises(InvalidRequestError, match="no raster asset 'B99'"):
        plan_for(s2, make_spec(assets=["B99"]))
    with pytest.raises(InvalidRequestError, match="band 4 does not exist"):
        plan_for(s2, make_spec(assets=["TCI"], bidx=[4]))
    with pytest.raises(InvalidRequestError, match="not a band"):
        plan_for(s2, make_spec(expression="B04 + B99"))
    with pytest.raises(InvalidRequestError, match="ambiguous"):
        plan_for(s2, make_spec(expression="b1 * 2"))
    with pytest.raises(InvalidRequestError, match="3 bands"):
        plan_for(s2, make_spec(expression="TCI + 1"))
    plan = plan_for(s2, make_spec(assets=["TCI"], expression="TCI_b1 + b2"))
    assert plan.reads == {"TCI": (1, 2)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rescale": ["0"]}, "two numbers"),
        ({"rescale": ["5,1"]}, "greater than"),
        ({"colormap_name": "nosuchmap"}, "unknown colormap_name"),
        ({"resampling": "magic"}, "resampling"),
        ({"bidx": [0]}, "start at 1"),
        ({"assets": ["B04", "B04"]}, "once"),
        ({"expression": "B04", "bidx": [1]}, "not both"),
        ({"nodata": "none"}, "nodata"),
    ],
)
def test_spec_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        make_spec(**kwargs)
