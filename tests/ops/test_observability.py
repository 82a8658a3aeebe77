"""What an operator watches, against a live node: /health, /ready, /metrics, request ids
on responses and log lines, and the access log.

The expected figures are the requests this test itself sends (counted here), not the
node's own report of them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import free_port, live_node

OPERATOR = "ops-test-operator-token"
ITEM = "S2A_29RKH_20200219_0_L2A"
# the Combined Log Format, plus the request id at the end
COMBINED = re.compile(
    r'^(?P<client>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+) '
    r'HTTP/(?P<version>[\d.]+)" (?P<status>\d{3}) (?P<size>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<rid>\S+)$'
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("ops-node")
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        report = ingest_rasters(
            [shared_data / "raster" / f"{ITEM}_B04.tif"],
            catalog=catalog,
            store=open_store(f"file://{data_dir / 'store'}"),
            collection_id="s2-ops",
            create_collection=True,
        )
    finally:
        catalog.close()
    assert report.ok, report.failures
    env = {
        "EOSHARE_API__ADMIN_TOKEN": OPERATOR,
        "EOSHARE_API__ACCESS_LOG": str(data_dir / "access.log"),
        "EOSHARE_LOG_LEVEL": "info",
    }
    with live_node(data_dir, env) as url:
        yield url, data_dir


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def test_health_and_ready(node: tuple[str, Path]) -> None:
    url, _ = node
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"catalogue", "store", "access"}
    assert all(c["status"] == "ok" for c in body["checks"].values())


def test_ready_says_503_when_the_store_does_not_answer(tmp_path: Path) -> None:
    """An S3 store whose server is down: the node starts (reads of the catalogue work),
    /health stays 200, /ready names the store and answers 503."""
    dead = free_port()
    env = {
        "EOSHARE_STORAGE": f"s3://nowhere/prefix?endpoint=http://127.0.0.1:{dead}",
        "EOSHARE_S3__ACCESS_KEY_ID": "x",
        "EOSHARE_S3__SECRET_ACCESS_KEY": "y",
    }
    with live_node(tmp_path, env, ready_path="/health") as url:
        ready = httpx.get(f"{url}/ready", timeout=60)
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"] == {"status": "failed"}
        assert ready.json()["checks"]["catalogue"]["status"] == "ok"
        assert httpx.get(f"{url}/health").status_code == 200


def test_metrics_are_for_operators(node: tuple[str, Path]) -> None:
    url, _ = node
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")


def test_metrics_count_what_was_asked(node: tuple[str, Path]) -> None:
    url, _ = node
    auth = {"Authorization": f"Bearer {OPERATOR}"}

    def scrape() -> str:
        return httpx.get(f"{url}/metrics", headers=auth).text

    before = scrape()
    route = "/collections/{collection_id}/items/{item_id}"
    n_ok = _metric(before, "eoshare_http_requests_total", route=route, status="200")
    n_missing = _metric(before, "eoshare_http_requests_total", route=route, status="404")
    served = _metric(before, "eoshare_bytes_served_total", member="(public)", collection="s2-ops")
    for _ in range(3):
        assert httpx.get(f"{url}/collections/s2-ops/items/{ITEM}").status_code == 200
    for _ in range(2):
        assert httpx.get(f"{url}/collections/s2-ops/items/absent").status_code == 404
    item = httpx.get(f"{url}/collections/s2-ops/items/{ITEM}").json()
    href = item["assets"]["B04"]["href"]
    got = httpx.get(href, headers={"Range": "bytes=0-999"})
    assert got.status_code == 206 and len(got.content) == 1000

    after = scrape()
    assert _metric(after, "eoshare_http_requests_total", route=route, status="200") == n_ok + 4
    assert _metric(after, "eoshare_http_requests_total", route=route, status="404") == n_missing + 2
    assert (
        _metric(after, "eoshare_bytes_served_total", member="(public)", collection="s2-ops")
        == served + 1000
    )
    assert _metric(after, "eoshare_http_request_duration_seconds_count", route=route) >= 6
    assert _metric(after, "eoshare_catalog_items", collection="s2-ops") == 1
    assert "eoshare_tile_cache_lookups" in after


def test_request_ids_on_responses_and_log_lines(node: tuple[str, Path]) -> None:
    url, data_dir = node
    mine = httpx.get(f"{url}/collections", headers={"X-Request-ID": "trace-42.a"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    # an unsafe id (spaces, quotes, too long) is replaced, never echoed
    hostile = httpx.get(f"{url}/collections", headers={"X-Request-ID": 'a" b' + "x" * 100})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])
    fresh = {httpx.get(f"{url}/health").headers["x-request-id"] for _ in range(3)}
    assert len(fresh) == 3
    # a download writes an audit line: it carries the request's id
    item = httpx.get(f"{url}/collections/s2-ops/items/{ITEM}").json()
    got = httpx.get(item["assets"]["B04"]["href"], headers={"Range": "bytes=0-9"})
    rid = got.headers["x-request-id"]

    def tagged() -> bool:
        text = (data_dir / "server.log").read_text()
        lines = [json.loads(x) for x in text.splitlines() if x[:1] == "{"]
        return any(line.get("request_id") == rid for line in lines)

    deadline = time.monotonic() + 10
    while not tagged() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged(), "no log line has the request id"


def test_access_log_is_combined_format_without_secrets(node: tuple[str, Path]) -> None:
    url, data_dir = node
    item = httpx.get(f"{url}/collections/s2-ops/items/{ITEM}?sign=true").json()
    href = item["assets"]["B04"]["href"]
    assert "sig=" in href
    signature = re.search(r"sig=([^&]+)", href)
    assert signature
    got = httpx.get(href, headers={"Range": "bytes=0-99", "User-Agent": "ops-test/1"})
    assert got.status_code == 206
    rid = got.headers["x-request-id"]
    # the line is written once the response has gone out: wait for it a little
    deadline = time.monotonic() + 10
    while True:
        text = (data_dir / "access.log").read_text()
        mine = [m for m in map(COMBINED.match, text.splitlines()) if m and m["rid"] == rid]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert signature.group(1) not in text
    assert len(mine) == 1, text[-2000:]
    line = mine[0]
    assert line["method"] == "GET" and line["status"] == "206" and line["size"] == "100"
    assert line["agent"] == "ops-test/1" and "sig=[redacted]" in line["target"]
