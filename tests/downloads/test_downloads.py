"""GET/HEAD /download: hrefs, ranges, validators, access, traversal, GDAL."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import rasterio
from dl_nodes import COLLECTION, ITEM, Node
from rasterio.windows import Window

ITEM_URL = f"/collections/{COLLECTION}/items/{ITEM}"


def _item(http: httpx.Client, **params: str) -> dict[str, Any]:
    r = http.get(ITEM_URL, params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _b04(node: Node) -> bytes:
    return (node.data_dir / "store" / COLLECTION / ITEM / "B04.tif").read_bytes()


def test_held_assets_point_at_the_download_route(http: httpx.Client, node: Node) -> None:
    item = _item(http)
    for key in ("B04", "TCI", "thumbnail"):
        assert item["assets"][key]["href"] == f"{node.url}/download/{COLLECTION}/{ITEM}/{key}"
    search = http.get("/search", params={"ids": ITEM}).json()
    assert search["features"][0]["assets"]["B04"]["href"].startswith(f"{node.url}/download/")


def test_whole_download_matches_the_store_and_checksum(http: httpx.Client, node: Node) -> None:
    item = _item(http)
    r = http.get(item["assets"]["B04"]["href"])
    assert r.status_code == 200
    assert r.content == _b04(node)
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"].startswith("image/tiff; application=geotiff")
    assert f'filename="{ITEM}_B04.tif"' in r.headers["content-disposition"]
    assert "content-encoding" not in r.headers  # never gzipped, even when asked
    assert item["assets"]["B04"]["file:checksum"] == "1220" + hashlib.sha256(r.content).hexdigest()


def test_head_has_the_headers_and_no_body(http: httpx.Client, node: Node) -> None:
    r = http.head(f"/download/{COLLECTION}/{ITEM}/B04")
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["content-length"]) == len(_b04(node))
    assert r.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=-500", None, None),
     ("bytes=1000-", 1000, None)],
)  # fmt: skip
def test_ranges(http: httpx.Client, node: Node, header: str, start: int | None,
                end: int | None) -> None:  # fmt: skip
    data = _b04(node)
    r = http.get(f"/download/{COLLECTION}/{ITEM}/B04", headers={"Range": header})
    assert r.status_code == 206
    expected = data[-500:] if start is None else data[start:end]
    assert r.content == expected
    first = len(data) - 500 if start is None else start
    assert r.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    assert r.headers["content-length"] == str(len(expected))


def test_range_past_the_end_is_416(http: httpx.Client, node: Node) -> None:
    size = len(_b04(node))
    r = http.get(f"/download/{COLLECTION}/{ITEM}/B04", headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.headers["content-type"] == "application/problem+json"


def test_malformed_or_multi_range_gets_the_whole_file(http: httpx.Client, node: Node) -> None:
    for header in ("bytes=abc", "bytes=0-1,5-6", "items=0-5", "bytes=9-3"):
        r = http.get(f"/download/{COLLECTION}/{ITEM}/B04", headers={"Range": header})
        assert r.status_code == 200, header
        assert len(r.content) == len(_b04(node))


def test_etag_validators(http: httpx.Client) -> None:
    url = f"/download/{COLLECTION}/{ITEM}/B04"
    etag = http.head(url).headers["etag"]
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 304
    same = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206
    other = http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert other.status_code == 200


def test_interrupted_download_resumes(http: httpx.Client, node: Node, tmp_path: Path) -> None:
    url = f"/download/{COLLECTION}/{ITEM}/B04"
    data = _b04(node)
    part = tmp_path / "B04.tif.part"
    with http.stream("GET", url) as r:
        etag = r.headers["etag"]
        with part.open("wb") as f:
            for chunk in r.iter_raw(64 * 1024):
                f.write(chunk)
                if f.tell() >= 300_000:
                    break  # the connection drops mid-way
    have = part.stat().st_size
    assert 0 < have < len(data)
    r = http.get(url, headers={"Range": f"bytes={have}-", "If-Range": etag})
    assert r.status_code == 206
    with part.open("ab") as f:
        f.write(r.content)
    assert part.read_bytes() == data
    # the server is still fine after the dropped connection
    assert http.head(url).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/download/s2-test/..%2F..%2Fetc/passwd", "/download/s2-test/x/%2e%2e",
     "/download/%2e%2e/x/B04", "/download/s2-test/x/..%5cB04", "/download/s2-test/x/%252e%252e"],
)  # fmt: skip
def test_escaping_keys_are_400(node: Node, path: str) -> None:
    # raw paths: httpx would otherwise normalise the dots away
    with httpx.Client(base_url=node.url) as raw:
        r = raw.send(raw.build_request("GET", httpx.URL(node.url + path)))
    assert r.status_code in (400, 404), r.text
    if "%2F" not in path:
        assert r.status_code == 400, path
    assert r.headers["content-type"] == "application/problem+json"


def test_unknown_things_are_404(http: httpx.Client) -> None:
    assert http.get(f"/download/{COLLECTION}/{ITEM}/nope").status_code == 404
    assert http.get(f"/download/{COLLECTION}/nope/B04").status_code == 404
    assert http.get(f"/download/nope/{ITEM}/B04").status_code == 404


def test_gdal_reads_a_window_through_the_url(http: httpx.Client, node: Node,
                                             shared_data: Path) -> None:  # fmt: skip
    href = _item(http)["assets"]["B04"]["href"]
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(f"/vsicurl/{href}") as ds,
    ):
        window = ds.read(1, window=Window(256, 512, 128, 64))
    with rasterio.open(node.data_dir / "store" / COLLECTION / ITEM / "B04.tif") as ref:
        assert (window == ref.read(1, window=Window(256, 512, 128, 64))).all()
