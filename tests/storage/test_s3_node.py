"""An eoshare node on the S3 store: ingest, download, GDAL through a signed link,
the S3 server stopping (503 problems) and coming back (served again, no restart), and
``eoshare storage migrate`` from a local store."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rasterio
import uvicorn
from rasterio.windows import Window
from s3_weed import ACCESS_KEY, SECRET_KEY, WeedServer
from typer.testing import CliRunner

from eoshare.api.app import create_app
from eoshare.catalog import open_catalog
from eoshare.cli import app as cli_app
from eoshare.ingest.raster import ingest_rasters
from eoshare.settings import Settings
from eoshare.storage import open_store
from eoshare.storage.verify import verify

ITEM = "S2A_29RKH_20200219_0_L2A"
COLLECTION = "s2-s3"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    port = _port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False,
        ws="none",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the node did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _settings(data_dir: Path, storage: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        catalog=f"sqlite:///{data_dir / 'catalog.db'}",
        storage=storage,
        log_level="warning",
        s3={"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},  # type: ignore[arg-type]
    )


def _ingest(settings: Settings, shared_data: Path) -> None:
    catalog = open_catalog(settings.catalog_url)
    try:
        report = ingest_rasters(
            [shared_data / "raster" / f"{ITEM}_B04.tif"],
            catalog=catalog,
            store=open_store(settings.storage_url, **settings.s3.model_dump(exclude_none=True)),
            collection_id=COLLECTION,
            create_collection=True,
        )
    finally:
        catalog.close()
    assert report.ok, report.failures


def test_s3_node_serves_and_recovers(tmp_path: Path, shared_data: Path) -> None:
    weed = WeedServer(tmp_path / "weed")
    weed.start()
    try:
        weed.make_bucket("archive")
        settings = _settings(tmp_path / "node", weed.store_url("archive", "eo"))
        _ingest(settings, shared_data)
        original = shared_data / "raster" / f"{ITEM}_B04.tif"
        with _serve(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
            item = http.get(f"/collections/{COLLECTION}/items/{ITEM}?sign=true").json()
            href = item["assets"]["B04"]["href"]
            assert href.startswith(f"{url}/download/")
            r = httpx.get(href, headers={"Range": "bytes=0-1023"})
            assert r.status_code == 206 and len(r.content) == 1024
            with (
                rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
                rasterio.open(f"/vsicurl/{href}") as ds,
            ):
                window = ds.read(1, window=Window(0, 0, 50, 50))
            with rasterio.open(original) as ref:  # ingest kept the COG as it was
                assert (window == ref.read(1, window=Window(0, 0, 50, 50))).all()

            weed.stop()
            down = http.get(f"/download/{COLLECTION}/{ITEM}/B04")
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert "object store" in down.json()["detail"]

            weed.start()
            deadline = time.monotonic() + 60
            while True:
                back = http.get(f"/download/{COLLECTION}/{ITEM}/B04")
                if back.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert back.status_code == 200
            assert back.content == original.read_bytes()
    finally:
        weed.stop()


def test_migrate_local_to_s3_then_serve(weed: WeedServer, tmp_path: Path,
                                        shared_data: Path) -> None:  # fmt: skip
    local = _settings(tmp_path / "node", "")
    _ingest(local, shared_data)
    weed.make_bucket("migrated")
    target = weed.store_url("migrated", "archive")
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    args = ["storage", "migrate", "--to", target, "--data-dir", str(tmp_path / "node")]
    result = CliRunner().invoke(cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "copied 2 objects" in result.output
    again = CliRunner().invoke(cli_app, args, env=env)  # resumable: nothing left to copy
    assert "copied 0 objects" in again.output and "2 already there" in again.output

    moved = _settings(tmp_path / "node", target)
    s3 = open_store(target, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    catalog = open_catalog(moved.catalog_url)
    try:
        assert verify(catalog, s3).ok
    finally:
        catalog.close()
    with _serve(moved) as url:
        r = httpx.get(f"{url}/download/{COLLECTION}/{ITEM}/B04", timeout=60)
        assert r.status_code == 200
        assert (
            r.content == (tmp_path / "node" / "store" / COLLECTION / ITEM / "B04.tif").read_bytes()
        )


@pytest.mark.parametrize("bad", ["s3://", "s3://b?endpoint=ftp://x", "s3://b?color=red"])
def test_bad_s3_urls(bad: str) -> None:
    from eoshare.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        open_store(bad)


def test_redirect_to_a_presigned_url_keeps_the_grant(
    weed: WeedServer, tmp_path: Path, shared_data: Path
) -> None:
    """EOSHARE_DOWNLOADS__REDIRECT: the node decides and audits, the S3 server sends the
    bytes. Ranges and GDAL follow the redirect; a hidden or forged request gets no URL."""
    weed.make_bucket("redirected")
    settings = _settings(tmp_path / "node", weed.store_url("redirected", "eo"))
    settings.downloads.redirect = True
    settings.downloads.redirect_ttl_s = 120
    _ingest(settings, shared_data)
    original = (shared_data / "raster" / f"{ITEM}_B04.tif").read_bytes()
    with _serve(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        first = http.get(f"/download/{COLLECTION}/{ITEM}/B04")
        assert first.status_code == 307
        location = first.headers["location"]
        assert location.startswith(weed.endpoint) and "X-Amz-Signature=" in location
        # following it: the whole file, and a range as the client asked
        assert httpx.get(location, timeout=60).content == original
        ranged = http.get(
            f"/download/{COLLECTION}/{ITEM}/B04",
            headers={"Range": "bytes=100-1123"},
            follow_redirects=True,
        )
        assert ranged.status_code == 206 and ranged.content == original[100:1124]
        # GDAL follows the redirect of a signed link
        item = http.get(f"/collections/{COLLECTION}/items/{ITEM}?sign=true").json()
        href = item["assets"]["B04"]["href"]
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            rasterio.open(f"/vsicurl/{href}") as ds,
        ):
            assert ds.read(1, window=Window(0, 0, 20, 20)).shape == (20, 20)
        # a forged signature and an unknown item get no URL
        forged = href.replace("sig=", "sig=AAAA")
        assert httpx.get(forged, timeout=30).status_code == 403
        assert http.get(f"/download/{COLLECTION}/nope/B04").status_code == 404
        # a HEAD still answers from the node
        head = http.head(f"/download/{COLLECTION}/{ITEM}/B04")
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(original)
