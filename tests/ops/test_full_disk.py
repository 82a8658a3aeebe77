"""A full disk: the node's data directory on a small tmpfs (mounted by the test, as root).

Ingest, load and an upload into the full filesystem each fail with a clear answer,
leave nothing half-visible (``eoshare verify`` stays clean, counts unchanged), the node
keeps serving reads, and the same work succeeds once space is freed."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live import live_node

ITEM = "S2A_29RKH_20200219_0_L2A"
TOKEN = "full-disk-operator-token"


def _eoshare(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "EOSHARE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        n: int = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        return n


def _fill(mount: Path, leave: int) -> Path:
    """Fill the filesystem until ``leave`` bytes are free."""
    filler = mount / "filler.bin"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the full-disk test mounts a tmpfs: run it as root", pytrace=False)
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_refuses_cleanly_and_recovers(small_disk: Path, shared_data: Path) -> None:
    data_dir = small_disk / "node"
    raster = shared_data / "raster"
    first = _eoshare(
        "ingest", str(raster / f"{ITEM}_B04.tif"), "-c", "full", "--create-collection",
        "--id", "first", "--one-item", data_dir=data_dir,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    with live_node(data_dir, {"EOSHARE_API__ADMIN_TOKEN": TOKEN}) as url:
        item_before = httpx.get(f"{url}/collections/full/items/first").json()
        bytes_before = httpx.get(item_before["assets"]["B04"]["href"]).content
        filler = _fill(small_disk, leave=64 * 1024)
        n = _count(data_dir)

        # ingest: a COG of ~2.4 MB cannot go in
        ingest = _eoshare(
            "ingest", str(raster / f"{ITEM}_B08.tif"), "-c", "full", "--id", "second",
            "--one-item", data_dir=data_dir,
        )  # fmt: skip
        assert ingest.returncode != 0
        message = ingest.stderr.strip().splitlines()
        assert any(
            line.startswith("error:") and "no space left" in line.lower() for line in message
        ), ingest.stderr
        assert "Traceback" not in ingest.stderr

        # load: a batch of 300 real items (about 4 MB of JSON) does not fit either
        docs = [
            json.loads(line)
            for line in (shared_data / "stac" / "landsat-8-c2-l2_netherlands_pc.ndjson")
            .read_text()
            .splitlines()[:250]
        ]
        source = small_disk.parent / "items.ndjson"
        source.write_text("\n".join(json.dumps(dict(d, collection="full")) for d in docs))
        load = _eoshare("load", str(source), data_dir=data_dir)
        assert load.returncode != 0 and "Traceback" not in load.stderr, load.stderr
        assert any("space" in line.lower() for line in load.stderr.splitlines()), load.stderr

        # an upload through the API: a clear problem, not a dropped connection or a 500
        auth = {"Authorization": f"Bearer {TOKEN}"}
        payload = (raster / f"{ITEM}_B08.tif").read_bytes()
        started = httpx.post(
            f"{url}/uploads",
            json={"collection": "full", "filename": "b08.tif", "size": len(payload),
                  "sha256": hashlib.sha256(payload).hexdigest()},
            headers=auth,
        )  # fmt: skip
        if started.status_code == 201:
            upload = started.json()
            chunk = upload["chunk_bytes"]
            answers = []
            for index in range(0, min(len(payload), 40 * chunk), chunk):
                answer = httpx.put(
                    f"{url}/uploads/{upload['id']}/chunks/{index // chunk}",
                    content=payload[index : index + chunk],
                    headers=auth,
                )
                answers.append(answer.status_code)
                if answer.status_code >= 400:
                    assert answer.status_code == 507, answer.text
                    assert answer.headers["content-type"].startswith("application/problem+json")
                    break
            assert 507 in answers, answers
        else:
            assert started.status_code == 507, started.text

        # nothing half-visible, and reads go on
        assert _count(data_dir) == n
        assert httpx.get(f"{url}/collections/full/items/second").status_code == 404
        assert httpx.get(f"{url}/search?collections=full").json()["numberMatched"] == n
        assert httpx.get(item_before["assets"]["B04"]["href"]).content == bytes_before

        # space again: the same work succeeds
        filler.unlink()
        again = _eoshare(
            "ingest", str(raster / f"{ITEM}_B08.tif"), "-c", "full", "--id", "second",
            "--one-item", data_dir=data_dir,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert httpx.get(f"{url}/collections/full/items/second").status_code == 200
    verify = _eoshare("verify", data_dir=data_dir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
