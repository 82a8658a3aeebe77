"""Behind nginx with ``EOSHARE_DOWNLOADS__ACCEL_REDIRECT``: the node decides, reserves and
audits each download; nginx (Debian's, started here on 127.0.0.1 with the configuration
of docs/deployment.md) sends the file with sendfile and applies ranges. The internal
location cannot be reached from outside, and a refused caller gets the node's answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import free_port, live_node

ITEM = "S2A_29RKH_20200219_0_L2A"
PREFIX = "/_eoshare_store/"


def nginx_conf(work: Path, port: int, upstream: str, store: Path) -> str:
    """The nginx configuration of docs/deployment.md, on test paths and ports."""
    # as root, nginx's workers would drop to "nobody", who may not read pytest's 0700
    # temporary folders: keep them as the test's user
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
        location {PREFIX} {{
            internal;
            alias {store}/;
            add_header X-Content-Type-Options nosniff always;
            add_header Content-Security-Policy "sandbox; default-src 'none'" always;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def behind_nginx(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is missing: scripts/install-nginx.sh installs it", pytrace=False)
    data_dir = tmp_path_factory.mktemp("accel-node")
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        report = ingest_rasters(
            [shared_data / "raster" / f"{ITEM}_B04.tif"],
            catalog=catalog,
            store=open_store(f"file://{data_dir / 'store'}"),
            collection_id="s2-accel",
            create_collection=True,
        )
    finally:
        catalog.close()
    assert report.ok, report.failures
    env = {"EOSHARE_DOWNLOADS__ACCEL_REDIRECT": PREFIX}
    with live_node(data_dir, env) as upstream:
        work = data_dir.parent / "nginx"
        work.mkdir()
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(nginx_conf(work, port, upstream, (data_dir / "store").resolve()))
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/health", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, (work / "error.log").read_text()
                    time.sleep(0.1)
            yield url, data_dir
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_nginx_sends_the_bytes_the_node_granted(
    behind_nginx: tuple[str, Path], shared_data: Path
) -> None:
    url, data_dir = behind_nginx
    original = (shared_data / "raster" / f"{ITEM}_B04.tif").read_bytes()
    item = httpx.get(f"{url}/collections/s2-accel/items/{ITEM}").json()
    href = item["assets"]["B04"]["href"]
    assert href.startswith(url)
    whole = httpx.get(href, timeout=60)
    assert whole.status_code == 200 and whole.content == original
    assert whole.headers["x-content-type-options"] == "nosniff"
    assert "attachment" in whole.headers["content-disposition"]
    assert "x-accel-redirect" not in whole.headers
    ranged = httpx.get(href, headers={"Range": "bytes=1000-1999"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == original[1000:2000]
    # the grant was recorded by the node, with the size asked for
    log = (data_dir / "server.log").read_text()
    assert '"bytes": 1000' in log


def test_the_internal_location_is_not_reachable(behind_nginx: tuple[str, Path]) -> None:
    url, _ = behind_nginx
    key = f"s2-accel/{ITEM}/B04.tif"
    assert httpx.get(f"{url}{PREFIX}{key}").status_code == 404


def test_refusals_come_from_the_node(behind_nginx: tuple[str, Path]) -> None:
    url, _ = behind_nginx
    missing = httpx.get(f"{url}/download/s2-accel/nope/B04")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    forged = httpx.get(f"{url}/download/s2-accel/{ITEM}/B04?exp=9999999999&sub=x&kid=k&sig=AAAA")
    assert forged.status_code in (401, 403)
