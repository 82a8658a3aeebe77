"""``eoshare backup`` of a live node while it takes writes, ``eoshare restore`` elsewhere,
and the two compared: the restored node holds a consistent moment of the first one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import live_node
from pg import pg_cluster

TOKEN = "backup-test-operator-token"
ITEM = "S2A_29RKH_20200219_0_L2A"
COLLECTION = "s2-backup"


def _eoshare(*args: str, data_dir: Path, **more: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "EOSHARE_DATA_DIR": str(data_dir), **more}
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _item(n: int) -> dict[str, object]:
    lon, lat = -10 + (n % 50) * 0.1, 25 + (n // 50) * 0.1
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"written-{n:05d}",
        "collection": COLLECTION,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[lon, lat], [lon + 0.1, lat], [lon + 0.1, lat + 0.1], [lon, lat]]],
        },
        "bbox": [lon, lat, lon + 0.1, lat + 0.1],
        "properties": {"datetime": "2024-05-01T10:00:00Z", "n": n},
        "assets": {},
        "links": [],
    }


@contextlib.contextmanager
def _writing(url: str) -> Iterator[list[str]]:
    """A client posting items to the node (as its operator) until the block ends; yields
    the ids written so far, once 20 are in. Every write must succeed."""
    stop = threading.Event()
    written: list[str] = []
    failures: list[str] = []

    def writer() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            n = 0
            while not stop.is_set() and n < 5000:
                answer = client.post(f"/collections/{COLLECTION}/items", json=_item(n))
                if answer.status_code != 201:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return
                written.append(f"written-{n:05d}")
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20 and thread.is_alive():
            stop.wait(0.05)
        yield written
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures


def _items_of(catalog_db: Path) -> dict[str, dict[str, object]]:
    catalog = open_catalog(f"sqlite:///{catalog_db}")
    try:
        return {item["id"]: item for item in catalog.iter_items()}
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def source(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("backup-source")
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        report = ingest_rasters(
            [
                shared_data / "raster" / f"{ITEM}_B04.tif",
                shared_data / "raster" / f"{ITEM}_B08.tif",
            ],
            catalog=catalog,
            store=open_store(f"file://{data_dir / 'store'}"),
            collection_id=COLLECTION,
            create_collection=True,
        )
    finally:
        catalog.close()
    assert report.ok, report.failures
    with live_node(data_dir, {"EOSHARE_API__ADMIN_TOKEN": TOKEN}) as url:
        yield url, data_dir


def test_backup_under_writes_then_restore_elsewhere(
    source: tuple[str, Path], tmp_path: Path
) -> None:
    url, data_dir = source
    backup_dir = tmp_path / "backup"
    with _writing(url) as written:
        before = len(written)
        done = _eoshare("backup", str(backup_dir), data_dir=data_dir)
        during = len(written)
    assert done.returncode == 0, done.stderr
    assert during > before, "the writer did not write while the backup ran"
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert {"catalog.db", "access.db"} <= set(manifest["databases"])
    assert "signing-keys.json" in manifest["files"]
    assert len(manifest["store"]["objects"]) >= 2
    assert not list(tmp_path.glob(".backup.*")), "a partial folder was left behind"

    target = tmp_path / "restored"
    restored = _eoshare("restore", str(backup_dir), data_dir=target)
    assert restored.returncode == 0, restored.stderr
    assert _eoshare("verify", data_dir=target).returncode == 0

    # a consistent moment: every item written before the backup began, possibly some
    # written during it, none half-written, each equal to the source's document
    now = _items_of(data_dir / "catalog.db")
    back = _items_of(target / "catalog.db")
    assert ITEM in back
    assert {f"written-{n:05d}" for n in range(before)} <= set(back)
    assert set(back) <= set(now)
    assert all(back[i] == now[i] for i in back)
    ids = sorted(i for i in back if i.startswith("written-"))
    assert ids == [f"written-{n:05d}" for n in range(len(ids))], "a gap: not one moment"
    # the state databases come back as they were
    with sqlite3.connect(target / "access.db") as restored_access:
        assert restored_access.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # and the restored node serves the same bytes
    with live_node(target, {}) as restored_url:
        for node in (url, restored_url):
            doc = httpx.get(f"{node}/collections/{COLLECTION}/items/{ITEM}").json()
            got = httpx.get(doc["assets"]["B04"]["href"])
            assert got.status_code == 200
            digest = hashlib.sha256(got.content).hexdigest()
            if node == url:
                expected = digest
        assert digest == expected


def test_restore_refuses_a_damaged_backup_and_writes_nothing(
    source: tuple[str, Path], tmp_path: Path
) -> None:
    _, data_dir = source
    backup_dir = tmp_path / "backup"
    assert _eoshare("backup", str(backup_dir), data_dir=data_dir).returncode == 0
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    key = next(iter(manifest["store"]["objects"]))
    victim = backup_dir / "store" / key
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    target = tmp_path / "restored"
    answer = _eoshare("restore", str(backup_dir), data_dir=target)
    assert answer.returncode == 1
    assert answer.stderr.strip().count("\n") == 0, answer.stderr
    assert "damaged" in answer.stderr
    # (opening the configured local store may make its empty folder; no file is written)
    assert not [p for p in target.rglob("*") if p.is_file()]


def test_backup_refuses_a_folder_in_use(source: tuple[str, Path], tmp_path: Path) -> None:
    _, data_dir = source
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_text("mine")
    answer = _eoshare("backup", str(tmp_path / "busy"), data_dir=data_dir)
    assert answer.returncode == 1 and "not empty" in answer.stderr
    assert (tmp_path / "busy" / "something").read_text() == "mine"


def _restore_refusal(args: tuple[str, ...], data_dir: Path, **env: str) -> str:
    answer = _eoshare(*args, data_dir=data_dir, **env)
    assert answer.returncode == 1 and answer.stderr.count("\n") == 1, answer.stderr
    return answer.stderr


def test_node_on_postgresql_backed_up_under_writes_restored_on_another_server(
    pg: Any, tmp_path: Path, shared_data: Path
) -> None:
    """A node whose catalogue (pgstac) and state live in two PostgreSQL databases: backed
    up while it takes writes (pg_dump of one exported snapshot each, the objects read from
    the catalogue in that same snapshot), restored on a new server that has none of
    pgstac's roles, and compared."""
    catalog_url, state_url = pg.new_catalog_url(), pg.url(pg.new_state_database())
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    store_url = (data_dir / "store").resolve().as_uri()
    catalog = open_catalog(catalog_url)
    try:
        report = ingest_rasters(
            [shared_data / "raster" / f"{ITEM}_B04.tif"],
            catalog=catalog, store=open_store(store_url),
            collection_id=COLLECTION, create_collection=True,
        )  # fmt: skip
    finally:
        catalog.close()
    assert report.ok, report.failures
    env = {"EOSHARE_CATALOG": catalog_url, "EOSHARE_DATABASE": state_url,
           "EOSHARE_STORAGE": store_url}  # fmt: skip
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with live_node(data_dir, {**env, "EOSHARE_API__ADMIN_TOKEN": TOKEN}) as url:
        r = httpx.put(f"{url}/admin/members/aaa", json={"name": "Agency A", "country": "KE"},
                      headers=admin)  # fmt: skip
        assert r.status_code == 200, r.text
        with _writing(url) as written:
            before = len(written)
            done = _eoshare("backup", str(tmp_path / "backup"), data_dir=data_dir, **env)
            during = len(written)
        original = httpx.get(f"{url}/collections/{COLLECTION}/items/{ITEM}").json()
        original_bytes = httpx.get(original["assets"]["B04"]["href"]).content
    assert done.returncode == 0, done.stderr
    assert during > before, "the writer did not write while the backup ran"
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["format"] == "eoshare-backup/2"
    assert manifest["postgresql"]["catalog.pgdump"]["holds"] == ["catalog"]
    assert manifest["postgresql"]["state.pgdump"]["holds"] == ["state"]
    assert "access.db" not in manifest["databases"], "state is in PostgreSQL, not SQLite"
    assert len(manifest["store"]["objects"]) >= 1

    with pg_cluster(template=False) as other:  # a new server: no pgstac, no pgstac roles
        other.execute("CREATE DATABASE restored_catalog")
        other.execute("CREATE DATABASE restored_state")
        target_env = {
            "EOSHARE_CATALOG": other.url("restored_catalog"),
            "EOSHARE_DATABASE": other.url("restored_state"),
            "EOSHARE_STORAGE": (tmp_path / "restored" / "store").resolve().as_uri(),
        }
        # the engines must match: a SQLite node cannot take a PostgreSQL backup as is
        why = _restore_refusal(("restore", str(tmp_path / "backup")), tmp_path / "sqlite-node")
        assert "PostgreSQL" in why and "EOSHARE_CATALOG" in why
        restored = _eoshare("restore", str(tmp_path / "backup"), data_dir=tmp_path / "restored",
                            **target_env)  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        # the same databases again: refused, they are not empty any more
        why = _restore_refusal(("restore", str(tmp_path / "backup")), tmp_path / "again",
                               **target_env)  # fmt: skip
        assert "not empty" in why

        now = {i["id"]: i for i in _pg_items(catalog_url)}
        back = {i["id"]: i for i in _pg_items(target_env["EOSHARE_CATALOG"])}
        assert ITEM in back
        assert {f"written-{n:05d}" for n in range(before)} <= set(back)
        assert set(back) <= set(now)
        assert all(back[i] == now[i] for i in back)
        ids = sorted(i for i in back if i.startswith("written-"))
        assert ids == [f"written-{n:05d}" for n in range(len(ids))], "a gap: not one moment"
        with live_node(tmp_path / "restored", {**target_env, "EOSHARE_API__ADMIN_TOKEN": TOKEN},
                       ready_path="/conformance") as restored_url:  # fmt: skip
            members = httpx.get(f"{restored_url}/admin/members", headers=admin).json()
            assert "aaa" in json.dumps(members), members  # the state came back
            doc = httpx.get(f"{restored_url}/collections/{COLLECTION}/items/{ITEM}").json()
            got = httpx.get(doc["assets"]["B04"]["href"])
            assert got.status_code == 200 and got.content == original_bytes


def _pg_items(url: str) -> list[dict[str, Any]]:
    catalog = open_catalog(url)
    try:
        return list(catalog.iter_items())
    finally:
        catalog.close()


def test_backup_of_a_folder_without_a_catalogue_is_refused(tmp_path: Path) -> None:
    """A mistyped --data-dir: one line, nothing written (not an empty 'backup')."""
    answer = _eoshare("backup", str(tmp_path / "b"), data_dir=tmp_path / "typo")
    assert answer.returncode == 1 and answer.stderr.count("\n") == 1, answer.stderr
    assert "no catalogue" in answer.stderr
    assert not (tmp_path / "b").exists()
