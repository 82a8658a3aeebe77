"""A STAC API of another implementation as a peer: stac-fastapi-pgstac (on this session's
private PostgreSQL, tests/pg.py) serving its own collection ``sfp-open``. Read-only and
unsigned: the hub (alpha) searches it beside the eoshare peers, pages through it with its
own tokens, lists its collection, and another node harvests it (full comparison:
deletions propagated); its items keep links to the origin."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.federation.peers import Peer, PeerRegistry
from federation.conftest import Federation, run_cli, templates
from live import free_port

JSON = dict[str, Any]
COLLECTION = "sfp-open"
COUNT = 6
PEER_CACHE_S = 2.2


def _items(shared: Path) -> list[JSON]:
    base = datetime(2024, 2, 20, tzinfo=UTC)  # among beta's and alpha's items
    out = []
    for n, tpl in enumerate(templates(shared)[:COUNT]):
        item = copy.deepcopy(tpl)
        item.update({"id": f"sfp-{n}", "collection": COLLECTION, "links": []})
        item["properties"]["datetime"] = (base - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        item["properties"]["updated"] = "2024-03-01T00:00:00Z"
        out.append(item)
    return out


@dataclass
class Sfp:
    url: str
    dsn: str


@pytest.fixture(scope="module")
def sfp(federation: Federation, pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sfp]:
    """stac-fastapi-pgstac on 127.0.0.1, registered at alpha as the plain STAC peer 'sfp'."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    work = tmp_path_factory.mktemp("sfp")
    database = pg.new_database()
    coll = json.loads(
        (federation.shared / "stac" / "collection_sentinel-2-l2a_pc.json").read_text()
    )
    coll.update({"id": COLLECTION, "title": "stac-fastapi-pgstac's own", "links": []})
    (work / "collections.ndjson").write_text(json.dumps(coll) + "\n")
    items = _items(federation.shared)
    (work / "items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
    db = PgstacDB(dsn=pg.url(database))
    try:
        loader = Loader(db=db)
        loader.load_collections(str(work / "collections.ndjson"), Methods.insert)
        loader.load_items(str(work / "items.ndjson"), Methods.insert)
    finally:
        db.close()
    port = free_port()
    dsn = urlsplit(pg.url(database))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOSHARE_", "PG"))}
    env.update(
        PGUSER=str(dsn.username), PGPASSWORD="", PGHOST=str(dsn.hostname),
        PGPORT=str(dsn.port), PGDATABASE=database,
    )  # fmt: skip
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "stac_fastapi.pgstac.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    registry = federation.alpha.registry
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (work / "server.log").read_text()
            try:
                if httpx.get(url + "/collections", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "stac-fastapi-pgstac did not start"
            time.sleep(0.3)
        # registered as an operator would: `eoshare peers add --stac` (it is no eoshare node)
        added = run_cli(
            "peers", "add", url, "--stac", "--name", "sfp",
            "--data-dir", str(federation.alpha.data_dir),
        )  # fmt: skip
        assert added.returncode == 0 and ": ok" in added.stdout, added.stdout + added.stderr
        assert registry.get("sfp").collections == (COLLECTION,)
        time.sleep(PEER_CACHE_S)
        yield Sfp(url, pg.url(database))
    finally:
        try:
            registry.remove("sfp")
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()


def test_fanout_search_merges_the_stac_api(federation: Federation, sfp: Sfp) -> None:
    """Its items are merged with alpha's and beta's, sorted, paged with one token that
    resumes it with its own tokens; each carries where it comes from."""
    url = federation.alpha.url + "/search"
    wanted = {*federation.alpha.items["a-open"], *(f"sfp-{n}" for n in range(COUNT))}
    wanted |= set(federation.beta.items["b-open"])
    body: JSON = {"collections": ["a-open", COLLECTION, "b-open"], "limit": 7}
    seen: list[JSON] = []
    for _ in range(20):
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["federation:missing"] == []
        seen += doc["features"]
        nxt = next((x for x in doc["links"] if x["rel"] == "next"), None)
        if nxt is None:
            break
        body = nxt["body"]
    ids = [f["id"] for f in seen]
    assert sorted(ids) == sorted(wanted)  # all, once
    times = [f["properties"]["datetime"] for f in seen]
    assert times == sorted(times, reverse=True)
    mine = [f for f in seen if f["id"].startswith("sfp-")]
    for f in mine:
        assert f["properties"]["federation:origin"] == "sfp"
        links = {x["rel"]: x["href"] for x in f["links"]}
        assert links["canonical"].startswith(sfp.url)  # the origin's own page
        # its page through the hub is the origin's item
        through = httpx.get(links["self"], timeout=30)
        assert through.status_code == 200, through.text
        assert through.json()["id"] == f["id"]
        assert through.json()["assets"] == f["assets"]


def test_its_collection_is_listed_at_the_hub(federation: Federation, sfp: Sfp) -> None:
    r = httpx.get(federation.alpha.url + "/collections", timeout=30)
    assert r.status_code == 200, r.text
    listed = {c["id"]: c for c in r.json()["collections"]}
    coll = listed[f"sfp.{COLLECTION}"]
    assert coll["federation:origin"] == "sfp"
    assert next(x for x in coll["links"] if x["rel"] == "canonical")["href"].startswith(sfp.url)
    page = httpx.get(f"{federation.alpha.url}/collections/sfp.{COLLECTION}/items?limit=4")
    assert page.status_code == 200, page.text
    assert len(page.json()["features"]) == 4


def test_harvest_of_the_stac_api(federation: Federation, sfp: Sfp, tmp_path: Path) -> None:
    hub = tmp_path / "hub4"
    hub.mkdir()
    PeerRegistry(hub / "federation.db").add(Peer("sfp", sfp.url, "stac"))
    env = {"EOSHARE_DATA_DIR": str(hub), "EOSHARE_FEDERATION__NAME": "hub4"}

    def local() -> dict[str, JSON]:
        catalog = open_catalog(f"sqlite:///{hub / 'catalog.db'}")
        try:
            return {str(i["id"]): i for i in catalog.iter_items(f"sfp.{COLLECTION}")}
        finally:
            catalog.close()

    done = run_cli("harvest", "sfp", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    got = local()
    assert sorted(got) == sorted(f"sfp-{n}" for n in range(COUNT))
    item = got["sfp-2"]
    assert item["properties"]["federation:origin"] == "sfp"
    canonical = next(x["href"] for x in item["links"] if x["rel"] == "canonical")
    assert canonical.startswith(sfp.url)
    # deleted at the origin: gone here after the next harvest (full comparison)
    from pypgstac.db import PgstacDB

    db = PgstacDB(dsn=sfp.dsn)
    try:
        db.query_one(f"SELECT delete_item('sfp-5', '{COLLECTION}')")
    finally:
        db.close()
    again = run_cli("harvest", "sfp", env=env)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "1 deleted" in again.stdout, again.stdout
    assert "sfp-5" not in local()
