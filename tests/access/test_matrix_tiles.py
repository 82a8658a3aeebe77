"""The tile routes in the access matrix, decided by the node's REAL policy: every kind
of caller x every kind of agreement x the item routes (TileJSON, XYZ tile, WMTS, preview,
point, statistics) and the collection mosaic (TileJSON, tile).

Expected answers come from ``oracle.pictures`` (the rules written out plainly). Items
are real Landsat 8 COGs; an embargo's young items carry band 5 and its old ones band 4,
so a mosaic's pixels show whether it drew an item the caller may not see. To bound the
run, each collection is sampled by one young (2 days) and one old (45 days) item, and
one caller of each kind is asked."""

from __future__ import annotations

import io
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
from PIL import Image

from . import oracle
from .conftest import AGES, AGREEMENTS, PROVIDER, Caller, Node

JSON = dict[str, Any]
WM = morecantile.tms.get("WebMercatorQuad")
# the middle of the Landsat scene (South Carolina coast)
LON, LAT = -80.06, 33.17
COARSE = WM.tile(LON, LAT, 8)  # ~540 m pixels: allowed at 100 m
FINE = WM.tile(LON, LAT, 12)  # ~32 m pixels: finer than 100 m
SAMPLE = (0, 2)  # item numbers: 2 days old (inside a 30-day embargo) and 45 days old
REDUCED_M = 100
# one caller per kind (the matrix of test_matrix.py has them all): anonymous, the
# provider's member, a partner (through OIDC), another member's provider-admin (an
# attacker with publishing rights elsewhere), a user of no member, an operator
CALLERS = ["anonymous", "owner", "partner_oidc", "other_admin", "public_user", "operator"]


def _pictures(c: Caller, cid: str, n: int) -> str:
    return oracle.pictures(
        member=c.member, operator=c.operator, provider=PROVIDER, a=AGREEMENTS[cid],
        age_days=AGES[n],
    )  # fmt: skip


def _item_routes(cid: str, iid: str) -> dict[str, str]:
    base = f"/tiles/collections/{cid}/items/{iid}"
    return {
        "tilejson": f"{base}/tilejson.json",
        "coarse": f"{base}/tiles/WebMercatorQuad/{COARSE.z}/{COARSE.x}/{COARSE.y}.png",
        "fine": f"{base}/tiles/WebMercatorQuad/{FINE.z}/{FINE.x}/{FINE.y}.png",
        "wmts": f"{base}/WMTSCapabilities.xml",
        "preview": f"{base}/preview?max_size=512",
        "point": f"{base}/point/{LON},{LAT}",
        "statistics": f"{base}/statistics",
    }


def _mosaic_routes(cid: str) -> dict[str, str]:
    base = f"/tiles/collections/{cid}"
    return {
        "tilejson": f"{base}/tilejson.json",
        "coarse": f"{base}/tiles/WebMercatorQuad/{COARSE.z}/{COARSE.x}/{COARSE.y}.png",
        "fine": f"{base}/tiles/WebMercatorQuad/{FINE.z}/{FINE.x}/{FINE.y}.png",
    }


def _pixels(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    return np.asarray(img)


def _same_as_unknown(
    http: httpx.Client, c: Caller, r: httpx.Response, url: str, ids: list[str]
) -> None:
    """A hidden item or collection answers exactly like one that never existed."""
    assert r.status_code == 404, (url, r.status_code)
    absent_url = url
    for i in ids:
        absent_url = absent_url.replace(i, "never-was")
    absent = http.get(absent_url, headers=c.headers)
    assert absent.status_code == 404
    detail = absent.json()["detail"].replace("never-was", "\0")
    got = r.json()["detail"]
    for i in sorted(ids, key=len, reverse=True):
        got = got.replace(i, "\0")
    assert got == detail, (url, r.json()["detail"], absent.json()["detail"])


def _refused_as_too_fine(r: httpx.Response, cid: str) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert f"{REDUCED_M} m" in detail and cid in detail, detail


@pytest.mark.parametrize("name", CALLERS)
def test_item_tile_routes(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    for cid in AGREEMENTS:
        for n in SAMPLE:
            iid = f"{cid}-{n}"
            want = _pictures(c, cid, n)
            for route, url in _item_routes(cid, iid).items():
                r = http.get(url, headers=c.headers)
                where = (cid, iid, route, want)
                assert r.status_code < 500, where
                if want == "hidden":
                    _same_as_unknown(http, c, r, url, [iid])
                elif want == "reduced" and route == "fine":
                    _refused_as_too_fine(r, cid)
                else:
                    assert r.status_code == 200, (*where, r.text)
                if r.status_code != 200:
                    continue
                if route == "tilejson":
                    maxzoom = r.json()["maxzoom"]
                    if want == "reduced":
                        assert maxzoom < FINE.z, (where, maxzoom)
                elif route == "preview" and want == "reduced":
                    # the scene is ~230 km wide: no more than one pixel per 100 m
                    width, height = Image.open(io.BytesIO(r.content)).size
                    assert max(width, height) <= 2400, (width, height)


@pytest.mark.parametrize("name", CALLERS)
def test_mosaic_routes(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    for cid in AGREEMENTS:
        seen = [n for n in range(len(AGES)) if _pictures(c, cid, n) != "hidden"]
        routes = _mosaic_routes(cid)
        if not seen:
            for url in routes.values():
                _same_as_unknown(http, c, http.get(url, headers=c.headers), url, [cid])
            continue
        assert http.get(routes["tilejson"], headers=c.headers).status_code == 200
        mosaic = _pixels(http.get(routes["coarse"], headers=c.headers))
        # newest on top: the newest item the caller sees, and no hidden one
        newest = min(seen)  # ages grow with n
        alone = _pixels(http.get(_item_routes(cid, f"{cid}-{newest}")["coarse"], headers=c.headers))
        assert np.array_equal(mosaic, alone), (cid, name, newest)
        kinds = {_pictures(c, cid, n) for n in seen}
        fine = http.get(routes["fine"], headers=c.headers)
        if "full" in kinds:
            _pixels(fine)
        else:
            _refused_as_too_fine(fine, cid)
