"""Hole 1: a provider-admin of member B reaches member A's provider-only bytes through an
item B controls. Every byte route is tried, as the public, as B's user and as B's admin;
none may hand out A's bytes (each answers 4xx, or B's own bytes).

The attack items: ``forged-post`` (created through the transaction API with A's store
keys and hrefs: the node drops the keys), and ``legacy-forged`` (written straight into
the catalogue with A's keys: the gate finds them not bound to the item).
"""

from __future__ import annotations

import copy
import io
import re
import zipfile
from typing import Any

import httpx
import morecantile
import pytest

from eoshare.access.base import Principal
from eoshare.access.egress import AssetGate
from eoshare.access.policy import AgreementPolicy, principal_for
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.processing.inputs import resolve_collection
from eoshare.storage import open_store

from .bytes_node import A_PRIVATE, B_OPEN, B_SCENE, LEGACY, SECRET, BytesNode, data_asset

FORGED = "forged-post"
ATTACKERS = ("anonymous", "b_user", "b_admin")
WM = morecantile.tms.get("WebMercatorQuad")


def _centre(node: BytesNode) -> tuple[float, float]:
    west, south, east, north = node.b_item["bbox"]  # type: ignore[misc]
    return (west + east) / 2.0, (south + north) / 2.0


def _a_asset_keys(node: BytesNode) -> dict[str, str]:
    """B's asset names -> A's store keys (what the attacker writes into its documents)."""
    keys = {k.rsplit("/", 1)[-1]: k for k in node.a_bytes}
    thumb = next(v for k, v in keys.items() if k.startswith("thumbnail"))
    data = next(v for k, v in keys.items() if not k.startswith("thumbnail"))
    return {data_asset(node.b_item): data, "thumbnail": thumb}


@pytest.fixture(scope="module")
def forged(secbytes_node: BytesNode) -> BytesNode:
    """B's provider-admin creates ``forged-post`` in B's open collection, naming A's
    stored files by their keys, by hrefs, and by a key that climbs out of its folder."""
    node = secbytes_node
    doc = copy.deepcopy(node.b_item)
    doc["id"] = FORGED
    doc.pop("links", None)
    for name, key in _a_asset_keys(node).items():
        doc["assets"][name]["eoshare:key"] = key
        doc["assets"][name]["href"] = f"file://{node.data_dir / 'store' / key}"
    doc["assets"]["climb"] = {
        "href": "../../a-private/secret-scene/B4.tif",
        "type": "image/tiff; application=geotiff",
        "roles": ["data"],
        "eoshare:key": f"{B_OPEN}/{FORGED}/../../{A_PRIVATE}/{SECRET}/B4.tif",
    }
    with node.client("b_admin") as http:
        r = http.post(f"/collections/{B_OPEN}/items", json=doc)
        assert r.status_code == 201, r.text
        # the node took none of the client's store keys
        assert all("eoshare:key" not in a for a in r.json()["assets"].values())
    return node


def _byte_routes(node: BytesNode, cid: str, iid: str) -> list[tuple[str, str, Any]]:
    """(method, path, json body) of every route that hands out bytes of an item."""
    asset = data_asset(node.b_item)
    lon, lat = _centre(node)
    t = WM.tile(lon, lat, 9)
    item = f"/tiles/collections/{cid}/items/{iid}"
    box = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"
    polygon = {"type": "Polygon", "coordinates": [[
        [lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01],
        [lon - 0.01, lat + 0.01], [lon - 0.01, lat - 0.01]]]}  # fmt: skip
    return [
        ("GET", f"/download/{cid}/{iid}/{asset}", None),
        ("HEAD", f"/download/{cid}/{iid}/{asset}", None),
        ("GET", f"/download/{cid}/{iid}/thumbnail", None),
        ("GET", f"/download/{cid}/{iid}/climb", None),
        ("GET", f"{item}/tiles/WebMercatorQuad/9/{t.x}/{t.y}.png?assets={asset}", None),
        ("GET", f"{item}/tiles/WebMercatorQuad/9/{t.x}/{t.y}.png", None),
        ("GET", f"{item}/preview.png?assets={asset}", None),
        ("GET", f"{item}/preview.png", None),
        ("GET", f"{item}/point/{lon},{lat}?assets={asset}", None),
        ("GET", f"{item}/statistics?assets={asset}&bbox={box}", None),
        (
            "POST",
            f"{item}/statistics?assets={asset}",
            {"type": "Feature", "properties": {}, "geometry": polygon},
        ),
        (
            "GET",
            f"/tiles/collections/{cid}/tiles/WebMercatorQuad/9/{t.x}/{t.y}.png"
            f"?assets={asset}&filter=id%3D%27{iid}%27",
            None,
        ),
    ]


@pytest.mark.parametrize("iid", [FORGED, LEGACY])
@pytest.mark.parametrize("who", ATTACKERS)
def test_no_byte_route_serves_a_key_the_item_does_not_own(
    forged: BytesNode, who: str, iid: str
) -> None:
    node = forged
    with node.client(who) as http:
        for method, path, body in _byte_routes(node, B_OPEN, iid):
            r = http.request(method, path, json=body)
            assert 400 <= r.status_code < 500, (who, method, path, r.status_code, r.text[:200])
            assert not node.leaks(r.content), (who, path)
            if r.content:
                assert r.headers["content-type"] == "application/problem+json", path


@pytest.mark.parametrize("who", ATTACKERS)
def test_orders_and_signed_links_hand_out_nothing_of_a(forged: BytesNode, who: str) -> None:
    node = forged
    with node.client(who) as http:
        # only the attack items: nothing this node holds for them
        attack = [{"collection": B_OPEN, "id": FORGED}, {"collection": B_OPEN, "id": LEGACY}]
        r = http.post("/orders", json={"ids": attack})
        assert r.status_code == 400, r.text
        # with B's real scene: the order holds B's files only
        r = http.post("/orders", json={"ids": [*attack, {"collection": B_OPEN, "id": B_SCENE}]})
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["files"] == len(node.b_bytes)  # B's scene and thumbnail, nothing else
        base = f"/orders/{order['id']}"
        archive = http.get(f"{base}/download.zip")
        assert archive.status_code == 200
        assert not node.leaks(archive.content)
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
            names = zf.namelist()
            assert names and all(n.startswith(f"{B_OPEN}/{B_SCENE}/") for n in names), names
            for n in names:
                assert zf.read(n) in node.b_bytes.values()
        metalink = http.get(f"{base}/order.meta4").text
        urls = http.get(f"{base}/urls.txt").text.split()
        manifest = http.get(f"{base}/manifest.json").json()
        hrefs = [a["href"] for f in manifest["features"] for a in f["assets"].values()]
        linked = set(urls) | set(re.findall(r"<url>([^<]+)</url>", metalink)) | set(hrefs)
        assert linked and all(f"/download/{B_OPEN}/{B_SCENE}/" in u for u in linked), linked
        # the signed item documents: every signed href is to B's own scene
        for iid in (FORGED, LEGACY, B_SCENE):
            doc = http.get(f"/collections/{B_OPEN}/items/{iid}?sign=true").json()
            for asset in doc["assets"].values():
                if "sig=" in asset["href"]:
                    linked.add(asset["href"].replace("&amp;", "&"))
    with httpx.Client(timeout=60) as bare:  # links need no credentials
        for url in linked:
            got = bare.get(url.replace("&amp;", "&"))
            assert got.status_code == 200, (url, got.text[:200])
            assert not node.leaks(got.content)
            assert got.content in node.b_bytes.values()


def test_mosaic_draws_only_bound_assets(forged: BytesNode) -> None:
    """A mosaic of B's collection over the scene draws B's scene, never A's pixels through
    the forged items: the tile equals the tile of B's own item."""
    node = forged
    asset = data_asset(node.b_item)
    t = WM.tile(*_centre(node), 9)
    tail = f"tiles/WebMercatorQuad/9/{t.x}/{t.y}.png?assets={asset}&rescale=0,20000"
    with node.client("anonymous") as http:
        mosaic = http.get(f"/tiles/collections/{B_OPEN}/{tail}")
        own = http.get(f"/tiles/collections/{B_OPEN}/items/{B_SCENE}/{tail}")
    assert mosaic.status_code == own.status_code == 200
    assert mosaic.content == own.content


@pytest.mark.parametrize(
    "patch",
    [
        "put",
        "merge",
        "json-patch",
    ],
)
def test_replacing_an_item_keeps_the_nodes_keys(secbytes_node: BytesNode, patch: str) -> None:
    """B's admin rewrites B's own held item to name A's file; B's item keeps serving
    B's own bytes (the node keeps its key), and never A's."""
    node = secbytes_node
    asset = data_asset(node.b_item)
    a_key = _a_asset_keys(node)[asset]
    path = f"/collections/{B_OPEN}/items/{B_SCENE}"
    with node.client("b_admin") as http:
        current = http.get(path).json()
        if patch == "put":
            doc = copy.deepcopy(current)
            doc["assets"][asset]["eoshare:key"] = a_key
            r = http.put(path, json=doc)
        elif patch == "merge":
            r = http.patch(path, json={"assets": {asset: {"eoshare:key": a_key}}})
        else:
            r = http.patch(path, json=[
                {"op": "add", "path": f"/assets/{asset}/eoshare:key", "value": a_key},
                {"op": "add", "path": "/assets/thumbnail/eoshare:key",
                 "value": _a_asset_keys(node)["thumbnail"]}])  # fmt: skip
        assert r.status_code == 200, r.text
    with node.client("anonymous") as http:
        got = http.get(f"/download/{B_OPEN}/{B_SCENE}/{asset}")
        assert got.status_code == 200
        assert got.content == node.b_bytes[asset]
        thumb = http.get(f"/download/{B_OPEN}/{B_SCENE}/thumbnail")
        assert thumb.content == node.b_bytes["thumbnail"]


def test_controls_a_gets_its_own_and_b_does_not(secbytes_node: BytesNode) -> None:
    """The attacks above mean something: A's file is there and served to A's user."""
    node = secbytes_node
    asset = next(k for k in node.a_bytes if not k.endswith("thumbnail.png")).rsplit("/", 1)[-1]
    path = f"/download/{A_PRIVATE}/{SECRET}/{asset.removesuffix('.tif')}"
    with node.client("a_user") as http:
        r = http.get(path)
        assert r.status_code == 200 and node.leaks(r.content)
    for who in ATTACKERS:
        with node.client(who) as http:
            r = http.get(path)
            assert r.status_code == 404 and not node.leaks(r.content)


@pytest.mark.parametrize("who", ["anonymous", "b_user", "b_admin"])
def test_processing_inputs_read_only_bound_keys(secbytes_node: BytesNode, who: str) -> None:
    """openEO ``load_collection`` of B's collection never hands GDAL a path to A's files
    (the legacy item names them)."""
    node = secbytes_node
    data_dir = node.data_dir
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    access = AccessStore(data_dir / "access.db")
    store = open_store((data_dir / "store").resolve().as_uri())
    try:
        user = None if who == "anonymous" else access.get_user(who)
        principal = principal_for(user, access.get_member("bbb")) if user else Principal()
        gate = AssetGate(catalog, AgreementPolicy(access))
        inputs = resolve_collection(catalog, gate, store, principal, B_OPEN)
        paths = [a["href"] for i in inputs.items for a in i["assets"].values()]
        assert [i["id"] for i in inputs.items] == [B_SCENE], paths
        assert paths and not any(A_PRIVATE in p for p in paths), paths
    finally:
        catalog.close()
        access.close()
