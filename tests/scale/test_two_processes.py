"""Two eoshare processes, one PostgreSQL/pgstac catalogue: requests alternate between
them, and a write through one is seen by the other at once."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from live import live_node

TOKEN = "two-processes-admin-token-0123456789"
JSON = dict[str, Any]


@pytest.fixture(scope="module")
def nodes(pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[httpx.Client]]:
    catalog_url = pg.new_catalog_url()
    env = {
        "EOSHARE_CATALOG": catalog_url,
        "EOSHARE_API__ADMIN_TOKEN": TOKEN,
        "EOSHARE_LOG_LEVEL": "warning",
    }
    with ExitStack() as stack:
        clients = []
        for n in range(2):
            data_dir = tmp_path_factory.mktemp(f"eoshare-process-{n}")
            url = stack.enter_context(live_node(data_dir, env, timeout_s=90))
            clients.append(
                stack.enter_context(
                    httpx.Client(
                        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
                    )
                )
            )
        yield clients


def _docs(shared: Path) -> tuple[JSON, list[JSON]]:
    stac = shared / "stac"
    collection = json.loads((stac / "collection_sentinel-2-l2a_pc.json").read_text())
    collection["links"] = []
    lines = (stac / "sentinel-2-l2a_pc_and_earthsearch.ndjson").read_text().splitlines()
    items = [json.loads(line) for line in lines[:6]]
    out = []
    for item in items:
        item = copy.deepcopy(item)
        item["collection"] = collection["id"]
        item["links"] = []
        out.append(item)
    return collection, out


def test_writes_on_one_are_read_on_the_other(nodes: list[httpx.Client], shared_data: Path) -> None:
    a, b = nodes
    collection, items = _docs(shared_data)
    cid = collection["id"]
    assert a.post("/collections", json=collection).status_code == 201
    assert b.get(f"/collections/{cid}").json()["id"] == cid
    assert b.post("/collections", json=collection).status_code == 409
    for n, item in enumerate(items):
        writer, reader = (a, b) if n % 2 == 0 else (b, a)
        r = writer.post(f"/collections/{cid}/items", json=item)
        assert r.status_code == 201, r.text
        got = reader.get(f"/collections/{cid}/items/{item['id']}")
        assert got.status_code == 200 and got.json()["id"] == item["id"]
        # both processes count every item written so far, through either
        for client in (a, b):
            page = client.get("/search", params={"collections": cid, "limit": 1}).json()
            assert page["numberMatched"] == n + 1
    changed = copy.deepcopy(items[0])
    changed["properties"]["eo:cloud_cover"] = 99.5
    assert b.put(f"/collections/{cid}/items/{changed['id']}", json=changed).status_code == 200
    got = a.get(f"/collections/{cid}/items/{changed['id']}").json()
    assert got["properties"]["eo:cloud_cover"] == 99.5
    assert a.delete(f"/collections/{cid}/items/{changed['id']}").status_code in (200, 204)
    assert b.get(f"/collections/{cid}/items/{changed['id']}").status_code == 404


def test_alternating_pages_are_one_result(nodes: list[httpx.Client], shared_data: Path) -> None:
    """Paging through a search with each page fetched from the other process gives every
    item once, as one process would."""
    a, b = nodes
    collection, _ = _docs(shared_data)
    whole = a.get("/search", params={"collections": collection["id"], "limit": 100}).json()
    expected = [f["id"] for f in whole["features"]]
    assert len(expected) >= 4
    seen: list[str] = []
    url: str | None = "/search"
    params: dict[str, Any] | None = {"collections": collection["id"], "limit": 2}
    turn = 0
    while url is not None:
        client = (a, b)[turn % 2]
        page = client.get(url, params=params).json()
        seen += [f["id"] for f in page["features"]]
        nxt = next((x for x in page["links"] if x["rel"] == "next"), None)
        # the next link names the process that answered; ask the other with its query
        url = None if nxt is None else "/search?" + nxt["href"].split("?", 1)[1]
        params = None
        turn += 1
    assert seen == expected
