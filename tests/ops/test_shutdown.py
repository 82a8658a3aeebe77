"""Graceful shutdown and worker restarts of ``eoshare serve``, run as an operator runs it.

* SIGTERM while a download and an upload are in flight: no new connection is accepted,
  both finish whole, and the process exits 0;
* ``serve --workers 2``: a worker killed with SIGKILL is replaced, and the node answers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from affine import Affine

from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import free_port

TOKEN = "shutdown-test-operator-token"


@pytest.fixture(scope="module")
def big_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node holding one ~30 MB asset of noise (too big for the sockets' buffers)."""
    data_dir = tmp_path_factory.mktemp("shutdown-node")
    source = data_dir.parent / "noise_B01.tif"
    rng = np.random.default_rng(5)
    data = rng.integers(1, 65535, size=(3000, 5000), dtype=np.uint16)
    with rasterio.open(
        source, "w", driver="GTiff", width=5000, height=3000, count=1, dtype="uint16",
        crs="EPSG:32629", transform=Affine(10, 0, 300000, 0, -10, 3000000),
        tiled=True, blockxsize=512, blockysize=512,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        report = ingest_rasters(
            [source], catalog=catalog, store=open_store(f"file://{data_dir / 'store'}"),
            collection_id="noise", create_collection=True, one_item=True, item_id="big",
            datetime=datetime(2024, 1, 1, tzinfo=UTC),
        )  # fmt: skip
    finally:
        catalog.close()
    assert report.ok, report.failures
    return data_dir


def _serve(data_dir: Path, port: int, *extra: str, grace: int = 30) -> subprocess.Popen[bytes]:
    env = {
        "PATH": "/usr/bin:/bin",
        "EOSHARE_DATA_DIR": str(data_dir),
        "EOSHARE_API__ADMIN_TOKEN": TOKEN,
        "EOSHARE_API__SHUTDOWN_GRACE_S": str(grace),
        "EOSHARE_LOG_LEVEL": "warning",
    }
    with (data_dir / f"serve-{port}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), *extra],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"eoshare serve did not start: {(data_dir / f'serve-{port}.log').read_text()}"
            )
        time.sleep(0.2)


@pytest.fixture()
def served(big_node: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = _serve(big_node, port)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_lets_downloads_and_uploads_in_flight_finish(
    served: tuple[subprocess.Popen[bytes], str], big_node: Path
) -> None:
    proc, url = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    item = httpx.get(f"{url}/collections/noise/items/big").json()
    asset = next(a for a in item["assets"].values() if "data" in a.get("roles", []))
    expected = asset["file:checksum"][4:]  # multihash: 1220 + sha256 hex
    size = asset["file:size"]
    assert size > 20_000_000

    # an upload whose chunk body arrives slowly
    payload = os.urandom(96 * 1024)
    started = httpx.post(
        f"{url}/uploads",
        json={"collection": "noise", "filename": "late.tif", "size": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()},
        headers=auth,
    )  # fmt: skip
    assert started.status_code == 201, started.text
    upload = started.json()
    chunk_size = upload.get("chunk_size", len(payload))
    first = payload[:chunk_size]

    results: dict[str, object] = {}
    download_started = threading.Event()

    def download() -> None:
        digest = hashlib.sha256()
        got = 0
        with httpx.stream("GET", asset["href"], timeout=60) as answer:
            results["download_status"] = answer.status_code
            for chunk in answer.iter_bytes(256 * 1024):
                digest.update(chunk)
                got += len(chunk)
                download_started.set()
                time.sleep(0.02)  # a slow reader: ~3 s for the whole file
        results["download_bytes"] = got
        results["download_sha256"] = digest.hexdigest()

    def slow_body() -> Iterator[bytes]:
        for i in range(0, len(first), 8 * 1024):
            time.sleep(0.15)
            yield first[i : i + 8 * 1024]

    def upload_chunk() -> None:
        answer = httpx.put(
            f"{url}/uploads/{upload['id']}/chunks/0", content=slow_body(), headers=auth, timeout=60
        )
        results["upload_status"] = answer.status_code

    threads = [threading.Thread(target=download), threading.Thread(target=upload_chunk)]
    for t in threads:
        t.start()
    assert download_started.wait(20)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # the listening socket is closed: a new request is refused
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    for t in threads:
        t.join(timeout=60)
    assert proc.wait(timeout=60) == 0
    assert results["download_status"] == 200
    assert results["download_bytes"] == size
    assert results["download_sha256"] == expected
    assert results["upload_status"] == 200


def _children(pid: int) -> set[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                found.add(int(child))
    return found


def test_a_killed_worker_is_replaced(big_node: Path) -> None:
    port = free_port()
    proc = _serve(big_node, port, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2, workers
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if victim not in now and len(now) == 2:
                break
            time.sleep(0.2)
        assert victim not in now and len(now) == 2, now
        # every request answered again, whichever worker takes it
        deadline = time.monotonic() + 30
        while True:
            try:
                codes = [httpx.get(f"{url}/collections", timeout=10).status_code for _ in range(10)]
                if codes == [200] * 10:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the node did not recover"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
