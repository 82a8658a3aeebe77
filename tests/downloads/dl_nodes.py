"""A real eoshare node for the download tests (fixtures re-exported by conftest.py):
a data directory with real COGs ingested
into the local store, served by uvicorn on a free 127.0.0.1 port from a thread of the
test process (so that tests can also look at its files)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from eoshare.api.app import create_app
from eoshare.api.zerocopy import protocol as zerocopy_protocol
from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.settings import Settings
from eoshare.storage import open_store

TOKEN = "downloads-test-operator-token"
COLLECTION = "s2-test"
ITEM = "S2A_29RKH_20200219_0_L2A"


@dataclass
class Node:
    url: str
    settings: Settings
    data_dir: Path

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def run_node(settings: Settings) -> Iterator[str]:
    """Serve ``create_app(settings)`` until the block ends."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None,
        access_log=False, ws="none", lifespan="on",
        # what `eoshare serve` runs: files sent with sendfile (eoshare.api.zerocopy)
        http=zerocopy_protocol(),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the eoshare node did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def make_settings(data_dir: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        catalog=f"sqlite:///{data_dir / 'catalog.db'}",
        log_level="warning",
        api={"admin_token": TOKEN},
        # small upload chunks, so that the test files make several
        downloads={"upload_chunk_bytes": 32 * 1024},
        **extra,  # type: ignore[arg-type]
    )


def ingest_scene(settings: Settings, shared_data: Path) -> None:
    raster = shared_data / "raster"
    catalog = open_catalog(settings.catalog_url)
    try:
        report = ingest_rasters(
            [raster / f"{ITEM}_B04.tif", raster / f"{ITEM}_TCI.tif"],
            catalog=catalog,
            store=open_store(settings.storage_url),
            collection_id=COLLECTION,
            create_collection=True,
        )
    finally:
        catalog.close()
    assert report.ok, report.failures


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("downloads-node")
    settings = make_settings(data_dir)
    ingest_scene(settings, shared_data)
    with run_node(settings) as url:
        yield Node(url, settings, data_dir)


@pytest.fixture()
def http(node: Node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=30) as client:
        yield client
