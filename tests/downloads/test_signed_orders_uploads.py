"""Signed links, bulk orders and resumable uploads against a real node."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import rasterio
from dl_nodes import COLLECTION, ITEM, Node
from rasterio.windows import Window

ITEM_URL = f"/collections/{COLLECTION}/items/{ITEM}"


def _signed_href(http: httpx.Client, asset: str = "B04") -> str:
    item = http.get(ITEM_URL, params={"sign": "true"}).json()
    href: str = item["assets"][asset]["href"]
    return href


def test_item_and_search_sign_on_request(http: httpx.Client) -> None:
    href = _signed_href(http)
    params = parse_qs(urlparse(href).query)
    assert set(params) == {"exp", "sub", "kid", "sig"}
    found = http.post("/search?sign=true", json={"ids": [ITEM]}).json()
    assert "sig=" in found["features"][0]["assets"]["TCI"]["href"]
    plain = http.get(ITEM_URL).json()["assets"]["B04"]["href"]
    assert "sig=" not in plain


def test_signed_link_fetches_without_headers(http: httpx.Client, node: Node) -> None:
    href = _signed_href(http)
    r = httpx.get(href, headers={"Range": "bytes=0-99"})
    assert r.status_code == 206
    assert len(r.content) == 100


def test_tampered_expired_and_foreign_links_are_403(http: httpx.Client) -> None:
    href = _signed_href(http)
    url, query = href.split("?", 1)
    params = {k: v[0] for k, v in parse_qs(query).items()}
    cases = {
        "tampered exp": {**params, "exp": str(int(params["exp"]) + 60)},
        "expired": {**params, "exp": "1000"},
        "bad sig": {**params, "sig": params["sig"][:-2] + "AA"},
        "unknown key": {**params, "kid": "nope"},
        "bad sub": {**params, "sub": "!!"},
        "incomplete": {k: v for k, v in params.items() if k != "sig"},
    }
    for name, p in cases.items():
        r = httpx.get(f"{url}?{urlencode(p)}")
        assert r.status_code == 403, name
        assert r.headers["content-type"] == "application/problem+json", name
        assert "signed link" in r.json()["detail"], name
    # the same signature on another asset is refused too
    other = url.replace("/B04", "/TCI")
    assert httpx.get(f"{other}?{query}").status_code == 403


def test_gdal_reads_through_a_signed_link(http: httpx.Client, node: Node) -> None:
    href = _signed_href(http)
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(f"/vsicurl/{href}") as ds,
    ):
        assert ds.width == 1098
        got = ds.read(1, window=Window(10, 20, 30, 40))
    with rasterio.open(node.data_dir / "store" / COLLECTION / ITEM / "B04.tif") as ref:
        assert (got == ref.read(1, window=Window(10, 20, 30, 40))).all()


def test_signing_key_survives_a_restart(node: Node) -> None:
    keys = node.data_dir / "signing-keys.json"
    assert keys.is_file()
    assert oct(keys.stat().st_mode & 0o777) == "0o600"


def test_order_from_ids_with_manifests_and_zip(http: httpx.Client, node: Node) -> None:
    r = http.post("/orders", json={"ids": [{"collection": COLLECTION, "id": ITEM}],
                                   "assets": ["B04", "TCI"]})  # fmt: skip
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "ready"
    assert order["files"] == 2
    store = node.data_dir / "store" / COLLECTION / ITEM
    assert order["bytes"] == sum((store / f).stat().st_size for f in ("B04.tif", "TCI.tif"))
    links = {x["rel"]: x["href"] for x in order["links"]}
    assert http.get(f"/orders/{order['id']}").json()["id"] == order["id"]

    manifest = httpx.get(links["manifest"]).json()
    assert manifest["type"] == "FeatureCollection"
    assets = manifest["features"][0]["assets"]
    assert set(assets) == {"B04", "TCI"}
    body = httpx.get(assets["B04"]["href"]).content  # signed: no headers needed
    assert body == (store / "B04.tif").read_bytes()

    urls = httpx.get(links["urls"]).text.splitlines()
    assert len(urls) == 2 and all("sig=" in u for u in urls)

    meta4 = httpx.get(links["metalink"])
    assert meta4.headers["content-type"].startswith("application/metalink4+xml")
    digest = hashlib.sha256((store / "TCI.tif").read_bytes()).hexdigest()
    assert f'<hash type="sha-256">{digest}</hash>' in meta4.text
    assert f"<size>{(store / 'TCI.tif').stat().st_size}</size>" in meta4.text

    z = http.get(links["archive"])
    assert z.status_code == 200
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = sorted(zf.namelist())
        assert names == [f"{COLLECTION}/{ITEM}/B04.tif", f"{COLLECTION}/{ITEM}/TCI.tif"]
        assert zf.read(names[1]) == (store / "TCI.tif").read_bytes()
        assert zf.testzip() is None


def test_order_from_search_and_quota(http: httpx.Client) -> None:
    r = http.post("/orders", json={"search": {"collections": [COLLECTION]}})
    assert r.status_code == 201, r.text
    assert r.json()["files"] == 3  # B04, TCI, thumbnail
    bad = http.post("/orders", json={"ids": [], "search": {}})
    assert bad.status_code == 400
    missing = http.post("/orders", json={"ids": [{"collection": COLLECTION, "id": "nope"}]})
    assert missing.status_code == 404
    assert http.get("/orders/not-an-order").status_code == 404


def _upload(http: httpx.Client, node: Node, data: bytes, name: str) -> dict[str, object]:
    r = http.post(
        "/uploads",
        json={"collection": COLLECTION, "filename": name, "size": len(data),
              "sha256": hashlib.sha256(data).hexdigest()},
        headers=node.admin(),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    doc: dict[str, object] = r.json()
    return doc


def test_upload_needs_credentials(http: httpx.Client) -> None:
    r = http.post("/uploads", json={"collection": COLLECTION, "filename": "a.tif", "size": 1,
                                    "sha256": "0" * 64})  # fmt: skip
    assert r.status_code == 401


def test_interrupted_upload_resumes_then_ingests(
    http: httpx.Client, node: Node, shared_data: Path
) -> None:
    data = (shared_data / "raster" / "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF").read_bytes()
    # small chunks so that this file makes several
    up = _upload(http, node, data, "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF")
    uid, size = str(up["id"]), int(up["chunk_bytes"])  # type: ignore[call-overload]
    assert up["missing"] == list(range(int(up["chunk_count"])))  # type: ignore[call-overload]
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert len(chunks) >= 4  # the test node uses 32 KiB chunks
    # a corrupted chunk is refused and not recorded
    digest0 = hashlib.sha256(chunks[0]).hexdigest()
    bad = http.put(f"/uploads/{uid}/chunks/0", content=b"x" * len(chunks[0]),
                   headers={**node.admin(), "X-Chunk-SHA256": digest0})  # fmt: skip
    assert bad.status_code == 400
    # the client sends the first chunks, then is interrupted
    for i, chunk in enumerate(chunks[:-1]):
        r = http.put(f"/uploads/{uid}/chunks/{i}", content=chunk, headers={
            **node.admin(), "X-Chunk-SHA256": hashlib.sha256(chunk).hexdigest()})  # fmt: skip
        assert r.status_code == 200, r.text
    early = http.post(f"/uploads/{uid}/complete", headers=node.admin())
    assert early.status_code == 409
    # nothing is visible yet
    assert http.get("/search", params={"ids": "LC08_L1TP_016037_20170813_20170814_01_RT"}).json()[
        "features"] == []  # fmt: skip
    # resume: ask what is missing, send it
    status = http.get(f"/uploads/{uid}", headers=node.admin()).json()
    assert status["missing"] == [len(chunks) - 1]
    for i in status["missing"]:
        r = http.put(f"/uploads/{uid}/chunks/{i}", content=chunks[i], headers={
            **node.admin(), "X-Chunk-SHA256": hashlib.sha256(chunks[i]).hexdigest()})  # fmt: skip
        assert r.status_code == 200
    done = http.post(f"/uploads/{uid}/complete", headers=node.admin())
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "complete"
    item_url = done.json()["result"]["items"][0]
    item = httpx.get(item_url).json()
    assert item["assets"]["B4"]["href"].startswith(node.url + "/download/")
    assert not (node.data_dir / "uploads" / uid).exists()


def test_upload_with_wrong_whole_checksum_is_refused(http: httpx.Client, node: Node) -> None:
    data = b"not really a raster" * 10
    r = http.post("/uploads", json={"collection": COLLECTION, "filename": "x.tif",
                                    "size": len(data), "sha256": "ab" * 32},
                  headers=node.admin())  # fmt: skip
    uid = r.json()["id"]
    assert (
        http.put(f"/uploads/{uid}/chunks/0", content=data, headers=node.admin()).status_code == 200
    )
    r = http.post(f"/uploads/{uid}/complete", headers=node.admin())
    assert r.status_code == 400
    assert "sha256" in r.json()["detail"]
