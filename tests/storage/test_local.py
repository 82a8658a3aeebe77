"""LocalStore: atomic writes, checksums, key checks, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from eoshare.errors import InvalidRequestError, NotFoundError, StorageError
from eoshare.storage import open_store
from eoshare.storage.local import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def test_put_bytes_round_trip(store: LocalStore) -> None:
    obj = store.put_bytes("c/i/thumbnail.png", b"hello")
    assert obj.size == 5
    assert obj.sha256 == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.exists("c/i/thumbnail.png")
    with store.open("c/i/thumbnail.png") as f:
        assert f.read() == b"hello"
    assert store.stat("c/i/thumbnail.png").size == 5
    assert store.sha256("c/i/thumbnail.png") == obj.sha256


def test_put_file_hashes_while_copying(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy chunk
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    obj = store.put_file("a/b.bin", src)
    assert obj.size == len(data)
    assert obj.sha256 == "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.local_path("a/b.bin") == (tmp_path / "store" / "a" / "b.bin").resolve()


def test_overwrite_is_whole_and_leaves_no_temp_files(store: LocalStore) -> None:
    store.put_bytes("k.bin", b"old")
    store.put_bytes("k.bin", b"new contents")
    with store.open("k.bin") as f:
        assert f.read() == b"new contents"
    assert [p.name for p in store.root.iterdir()] == ["k.bin"]


def test_failed_write_keeps_old_object_and_no_temp(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("k.bin", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        store.put_bytes("k.bin", b"new")
    monkeypatch.undo()
    with store.open("k.bin") as f:
        assert f.read() == b"old"
    assert [p.name for p in store.root.iterdir()] == ["k.bin"]


def test_url_is_file_uri(store: LocalStore, tmp_path: Path) -> None:
    assert store.url == (tmp_path / "store").resolve().as_uri()
    assert store.url.startswith("file:///")
    reopened = open_store(store.url)
    assert isinstance(reopened, LocalStore)
    assert reopened.root == store.root


def test_missing_objects(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        store.open("nope.tif")
    with pytest.raises(NotFoundError):
        store.stat("nope.tif")
    assert not store.exists("nope.tif")
    store.delete("nope.tif")  # absent is fine
    with pytest.raises(NotFoundError):
        store.put_file("x.tif", tmp_path / "does-not-exist.tif")
    assert list(store.iter_keys()) == []


def test_delete_prunes_empty_folders(store: LocalStore) -> None:
    store.put_bytes("c/i/a.tif", b"1")
    store.put_bytes("c/j/b.tif", b"2")
    store.delete("c/i/a.tif")
    assert not (store.root / "c" / "i").exists()
    assert (store.root / "c" / "j").is_dir()
    assert list(store.iter_keys()) == ["c/j/b.tif"]


def test_iter_keys_prefix_and_order(store: LocalStore) -> None:
    for key in ("b/2.tif", "a/1.tif", "a/0.tif", "top.txt"):
        store.put_bytes(key, b"x")
    assert list(store.iter_keys()) == ["top.txt", "a/0.tif", "a/1.tif", "b/2.tif"]
    assert list(store.iter_keys("a/")) == ["a/0.tif", "a/1.tif"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape.tif",
        "a/../../escape.tif",
        "a/..",
        "/etc/passwd",
        "C:/windows/x",
        "a\\b.tif",
        "a\x00b.tif",
        "a//b.tif",
        "a/./b.tif",
        "a/",
        "%2e%2e/escape.tif",
        "a/%2E%2E/%2e%2e/x",
        "%252e%252e/x",
        "%2fetc/passwd",
        "a%5c..%5cb",
        "a%00b",
    ],
)
def test_bad_keys_are_refused(store: LocalStore, key: str) -> None:
    with pytest.raises(InvalidRequestError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidRequestError):
        store.open(key)
    with pytest.raises(InvalidRequestError):
        store.delete(key)
    assert list(store.iter_keys()) == []


def test_symlink_out_of_the_root_is_refused(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(InvalidRequestError):
        store.put_bytes("link/x.tif", b"x")
    assert not (outside / "x.tif").exists()


def test_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError):
        LocalStore(blocker / "store")
