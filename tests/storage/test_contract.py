"""The Store contract, written once and run against every backend (local, s3)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

from eoshare.errors import InvalidRequestError, NotFoundError
from eoshare.storage import open_store
from eoshare.storage.base import Store
from eoshare.storage.gdal import rasterio_env
from eoshare.storage.s3 import S3Store


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_bytes_then_read(store: Store) -> None:
    obj = store.put_bytes("c/i/thumbnail.png", b"hello")
    assert (obj.size, obj.sha256) == (5, _sha(b"hello"))
    assert store.exists("c/i/thumbnail.png")
    stat = store.stat("c/i/thumbnail.png")
    assert stat.size == 5
    assert stat.etag
    assert stat.modified is not None
    with store.open("c/i/thumbnail.png") as f:
        assert f.read() == b"hello"


def test_put_file_large_hashes_and_round_trips(store: Store, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 123)  # several chunks, an S3 multipart upload
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    obj = store.put_file("col/item/big.bin", src)
    assert obj.size == len(data)
    assert obj.sha256 == _sha(data)
    assert store.stat("col/item/big.bin").size == len(data)
    assert b"".join(store.iter_bytes("col/item/big.bin")) == data


def test_overwrite_changes_etag(store: Store) -> None:
    store.put_bytes("k.bin", b"old")
    first = store.stat("k.bin").etag
    store.put_bytes("k.bin", b"new contents")
    with store.open("k.bin") as f:
        assert f.read() == b"new contents"
    assert store.stat("k.bin").etag != first
    assert list(store.iter_keys()) == ["k.bin"]


@pytest.mark.parametrize(
    ("start", "end"), [(0, 1), (10, 20), (0, None), (4000, None), (4095, 4096), (100, 100)]
)
def test_iter_bytes_ranges(store: Store, start: int, end: int | None) -> None:
    data = os.urandom(4096)
    store.put_bytes("r.bin", data)
    got = b"".join(store.iter_bytes("r.bin", start, end, chunk_size=1000))
    assert got == data[start:end]
    assert all(len(c) <= 1000 for c in store.iter_bytes("r.bin", start, end, chunk_size=1000))


def test_open_is_seekable(store: Store) -> None:
    data = bytes(range(256)) * 64
    store.put_bytes("s.bin", data)
    with store.open("s.bin") as f:
        f.seek(1000)
        assert f.read(10) == data[1000:1010]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        assert f.tell() == len(data)


def test_missing_objects(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        store.open("nope.tif")
    with pytest.raises(NotFoundError):
        store.stat("nope.tif")
    with pytest.raises(NotFoundError):
        b"".join(store.iter_bytes("nope.tif"))
    assert not store.exists("nope.tif")
    store.delete("nope.tif")  # absent is fine
    with pytest.raises(NotFoundError):
        store.put_file("x.tif", tmp_path / "does-not-exist.tif")


def test_delete_and_iter_keys(store: Store) -> None:
    for key in ("b/2.tif", "a/1.tif", "a/0.tif", "top.txt", "ab/3.tif"):
        store.put_bytes(key, b"x")
    assert sorted(store.iter_keys()) == ["a/0.tif", "a/1.tif", "ab/3.tif", "b/2.tif", "top.txt"]
    assert sorted(store.iter_keys("a/")) == ["a/0.tif", "a/1.tif"]
    assert sorted(store.iter_keys("a")) == ["a/0.tif", "a/1.tif", "ab/3.tif"]
    store.delete("a/1.tif")
    assert not store.exists("a/1.tif")
    assert sorted(store.iter_keys("a/")) == ["a/0.tif"]


@pytest.mark.parametrize(
    "key",
    ["", "../escape.tif", "a/../../x", "/etc/passwd", "a\\b", "a\x00b", "a//b", "%2e%2e/x",
     "%252e%252e/x", "%2fetc/passwd"],
)  # fmt: skip
def test_bad_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidRequestError):
        store.stat(key)
    with pytest.raises(InvalidRequestError):
        store.delete(key)
    assert list(store.iter_keys()) == []


def test_url_reopens_the_same_store(store: Store, s3_credentials: dict[str, str]) -> None:
    store.put_bytes("x/y.bin", b"abc")
    again = open_store(store.url, **(s3_credentials if isinstance(store, S3Store) else {}))
    assert type(again) is type(store)
    assert again.exists("x/y.bin")
    assert b"".join(again.iter_bytes("x/y.bin")) == b"abc"


def test_gdal_reads_a_window_through_gdal_path(store: Store, shared_data: Path) -> None:
    cog = shared_data / "raster" / "S2A_29RKH_20200219_0_L2A_B04.tif"
    store.put_file("s2/B04.tif", cog)
    path, options = store.gdal_path("s2/B04.tif")
    with rasterio_env(options), rasterio.open(path) as ds:
        window = ds.read(1, window=Window(100, 200, 64, 32))
    with rasterio.open(cog) as ref:
        expected = ref.read(1, window=Window(100, 200, 64, 32))
    assert (window == expected).all()
    assert window.shape == (32, 64)
