"""Hole 2 of issue 8: an upload cannot make the node read its own files or fetch URLs.

Each hostile file goes through the real resumable /uploads API of a live node (started
with ``eoshare serve``); each must be refused with a 400 problem that says why, and nothing
may reach the store or the catalogue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .input_nodes import (
    COLLECTION,
    SECRET_VALUE,
    ServedNode,
    bomb_tiff,
    geotiff,
    huge_tiff,
    listener,
    prepare_data_dir,
    serve,
    stored_files,
    upload,
    vrt_raw_file,
    vrt_simple_source,
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    data_dir = tmp_path_factory.mktemp("hostile-uploads")
    prepare_data_dir(data_dir)
    with serve(data_dir) as served:
        yield served


@pytest.fixture()
def http(node: ServedNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=60) as client:
        yield client


def _refused(r: httpx.Response, node: ServedNode, http: httpx.Client, *words: str) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    for word in words:
        assert word in detail, detail
    assert stored_files(node.data_dir) == []
    found = http.get("/search", params={"collections": COLLECTION}).json()
    assert found["features"] == []


def test_a_vrt_named_tif_cannot_read_a_server_raster(
    node: ServedNode, http: httpx.Client, tmp_path: Path
) -> None:
    secret = geotiff(tmp_path / "secret.tif", value=SECRET_VALUE)
    r = upload(http, node.admin(), "scene_20240101.tif", vrt_simple_source(str(secret)))
    _refused(r, node, http, "VRT")


def test_a_vrt_cannot_read_the_nodes_signing_keys(node: ServedNode, http: httpx.Client) -> None:
    keys = node.data_dir / "signing-keys.json"
    assert keys.exists()  # the node wrote it at start
    r = upload(http, node.admin(), "keys_20240101.tif", vrt_raw_file(keys))
    _refused(r, node, http, "VRT")


def test_a_vrt_cannot_make_the_node_fetch_a_url(node: ServedNode, http: httpx.Client) -> None:
    with listener() as ear:
        r = upload(
            http, node.admin(), "remote_20240101.tif", vrt_simple_source(f"/vsicurl/{ear.url}")
        )
        assert ear.hits == [], "the node connected to the URL named in the upload"
        _refused(r, node, http, "VRT")


def test_a_tiff_declaring_a_million_by_a_million_pixels_is_refused(
    node: ServedNode, http: httpx.Client, tmp_path: Path
) -> None:
    data = huge_tiff(tmp_path / "huge.tif").read_bytes()
    assert len(data) < 1024 * 1024
    r = upload(http, node.admin(), "huge_20240101.tif", data)
    _refused(r, node, http, "1000000 x 1000000", "MAX_SAMPLES")


def test_a_decompression_bomb_is_refused(
    node: ServedNode, http: httpx.Client, tmp_path: Path
) -> None:
    data = bomb_tiff(tmp_path / "bomb.tif").read_bytes()
    r = upload(http, node.admin(), "bomb_20240101.tif", data)
    _refused(r, node, http, "bomb", "MAX_INFLATION")


def test_a_plain_geotiff_upload_still_works(
    node: ServedNode, http: httpx.Client, tmp_path: Path
) -> None:
    ok = geotiff(tmp_path / "plain_20240102.tif", value=5).read_bytes()
    r = upload(http, node.admin(), "plain_20240102.tif", ok)
    assert r.status_code == 200, r.text
    item = http.get(r.json()["result"]["items"][0]).json()
    assert item["properties"]["datetime"].startswith("2024-01-02")
    # clean up so that the "nothing stored" checks of the other tests hold in any order
    d = http.delete(f"/collections/{COLLECTION}/items/{item['id']}", headers=node.admin())
    assert d.status_code in (200, 204), d.text
    assert json.loads(r.text)["state"] == "complete"
