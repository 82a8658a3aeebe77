"""Hole 12: ids that are paths. A provider-admin tries collection, item and asset ids
that climb out of folders (400 at the edge); archives and Metalink files built from
hostile names never hold an entry that leaves its folder."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eoshare.api.routes.orders import _entry
from eoshare.catalog import open_catalog
from eoshare.downloads.metalink import MetalinkFile, metalink
from eoshare.downloads.orders import OrderAsset
from eoshare.downloads.zipstream import stream_zip
from eoshare.errors import InvalidItemError
from eoshare.ingest.raster import group_files

from .bytes_node import B_OPEN, B_SCENE, BytesNode

HOSTILE = ["..", ".", "../a-private", "a/b", "a\\b", "..\\..\\x", "a..b", ".hidden", "-rf",
           "x" * 257, "tab\there", "nul\x00", "sp ace", "%2e%2e", "\u00e9t\u00e9"]  # fmt: skip


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_provider_cannot_create_ids_that_are_paths(secbytes_node: BytesNode, bad: str) -> None:
    with secbytes_node.client("b_admin") as http:
        coll = http.get(f"/collections/{B_OPEN}").json()
        coll = {**coll, "id": bad, "links": []}
        r = http.post("/collections", json=coll)
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        item = {**http.get(f"/collections/{B_OPEN}/items/{B_SCENE}").json(), "links": []}
        r = http.post(f"/collections/{B_OPEN}/items", json={**item, "id": bad})
        assert r.status_code == 400, (bad, r.text)
        assets = {bad: {"href": "https://example.com/a.tif", "type": "image/tiff"}}
        r = http.post(f"/collections/{B_OPEN}/items",
                      json={**item, "id": "asset-key-probe", "assets": assets})  # fmt: skip
        assert r.status_code == 400, (bad, r.text)
        assert "not a valid id" in r.json()["detail"] or "asset key" in r.json()["detail"]
        # an upload names its item up front: refused before any byte is sent
        upload = {"collection": B_OPEN, "filename": "x.tif", "size": 10, "sha256": "0" * 64}
        r = http.post("/uploads", json={**upload, "item_id": bad})
        assert r.status_code == 400, (bad, r.text)


def _names(entries: list[OrderAsset]) -> list[str]:
    def chunks() -> Iterator[bytes]:
        yield b"data"

    archive = b"".join(stream_zip([(_entry(a), chunks) for a in entries]))
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return zf.namelist()


def test_archive_entries_never_leave_their_folder(tmp_path: Path) -> None:
    hostile = [
        OrderAsset(c, i, "data", f"{c}/{i}/{f}", 4, None)
        for c, i, f in [
            ("..", "..", "data.tif"),
            ("../../etc", "passwd", "x"),
            ("/abs", "C:\\win", "..\\..\\boot.ini"),
            ("c", ".", ".."),
            ("", "", ""),
        ]
    ]
    names = _names(hostile)
    doc = metalink([MetalinkFile(_entry(a), "https://x/y") for a in hostile],
                   generator="t", published=0)  # fmt: skip
    for name in names + [line.split('"')[1] for line in doc.splitlines() if "<file " in line]:
        parts = name.split("/")
        assert not name.startswith("/") and "\\" not in name and ":" not in name, name
        assert ".." not in parts and "." not in parts and "" not in parts, name
        # unpacked into a folder, it stays in that folder
        assert (tmp_path / name).resolve().is_relative_to(tmp_path.resolve())
    with pytest.raises(ValueError, match="unsafe archive entry"):
        list(stream_zip([("../../evil", lambda: iter([b"x"]))]))


def test_ids_derived_from_file_names_are_safe() -> None:
    groups = group_files([Path("/data/my scene (1).tif"), Path("/data/..hidden..tif")])
    for g in groups:
        assert ".." not in g.item_id and " " not in g.item_id and "/" not in g.item_id
        assert not g.item_id.startswith(".")


def test_the_catalogue_refuses_path_ids_from_any_writer(tmp_path: Path, shared_data: Path) -> None:
    """``eoshare load``, ingest and the API all write through the catalogue's checks."""
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        template = json.loads((shared_data / "stac" / "collection_sentinel-2-l2a_pc.json")
                              .read_text())  # fmt: skip
        for bad in ("..", "../x", "a/b"):
            with pytest.raises(InvalidItemError, match="not a valid id"):
                catalog.create_collection({**template, "id": bad, "links": []})
        catalog.create_collection({**template, "id": "ok", "links": []})
        item = json.loads((shared_data / "stac" / "item_S1A_IW_GRDH_1SDV_20220428T034417_pc.json")
                          .read_text())  # fmt: skip
        report = catalog.upsert_items([{**item, "id": "..", "collection": "ok", "links": []}],
                                      on_invalid=lambda i, e: None)  # fmt: skip
        assert report.inserted == 0
    finally:
        catalog.close()
