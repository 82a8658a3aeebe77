"""A node whose catalogue and every piece of its state live in PostgreSQL
(``EOSHARE_CATALOG`` and ``EOSHARE_DATABASE``), served by two processes: a member signs
in, makes a token, accepts an agreement's terms and downloads under it, orders, each step
on one process and the next on the other; the rows are in PostgreSQL's schemas, and no
state file was written into either data folder."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import live_node

ADMIN = {"Authorization": "Bearer state-on-postgres-operator-token"}
CID, IID = "landsat-b4", "scene-b4"
FILE = "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF"
PASSWORD = "a long enough password"


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]


def test_member_download_order_and_audit_live_in_postgres(
    pg: Any, tmp_path: Path, shared_data: Path
) -> None:
    """Two processes of one node (own data folders, one database, one store): what one
    writes, the other answers from at once."""
    url = pg.new_catalog_url()
    store_url = (tmp_path / "store").resolve().as_uri()
    catalog = open_catalog(url)
    try:
        report = ingest_rasters(
            [shared_data / "raster" / FILE], catalog=catalog, store=open_store(store_url),
            collection_id=CID, item_id=IID, datetime=datetime(2017, 8, 13, tzinfo=UTC),
            create_collection=True,
        )  # fmt: skip
        assert not report.failures, report.failures
        item = catalog.get_item(CID, IID)
    finally:
        catalog.close()
    asset = next(k for k, a in item["assets"].items() if "data" in (a.get("roles") or []))
    size = item["assets"][asset]["file:size"]
    env = {
        "EOSHARE_CATALOG": url,
        "EOSHARE_DATABASE": url,
        "EOSHARE_STORAGE": store_url,
        "EOSHARE_API__ADMIN_TOKEN": ADMIN["Authorization"].removeprefix("Bearer "),
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        "EOSHARE_LOG_LEVEL": "warning",
    }
    data_dirs = [tmp_path / "process-a", tmp_path / "process-b"]
    with ExitStack() as stack:
        clients = []
        for data_dir in data_dirs:
            data_dir.mkdir()
            base = stack.enter_context(live_node(data_dir, env, ready_path="/conformance"))
            clients.append(stack.enter_context(httpx.Client(base_url=base, timeout=60)))
        a, b = clients
        for code, name in (("aaa", "Agency A"), ("bbb", "Agency B")):
            r = a.put(f"/admin/members/{code}", json={"name": name, "country": "KE"},
                      headers=ADMIN)  # fmt: skip
            assert r.status_code == 200, r.text
        ann = {"member": "bbb", "roles": ["analyst"], "password": PASSWORD}
        r = b.put("/admin/users/ann", headers=ADMIN, json=ann)  # a member made on a
        assert r.status_code == 200, r.text
        terms = {"provider": "aaa", "access": "open", "terms": "Cite Agency A."}
        r = a.put(f"/admin/agreements/{CID}", headers=ADMIN, json=terms)
        assert r.status_code == 200, r.text

        # the password opens a session on b, which makes a token; a wrong one on a counts
        r = b.post("/auth/login", json={"username": "ann", "password": PASSWORD})
        assert r.status_code == 200, r.text
        r = b.post("/admin/users/ann/tokens", json={"days": 1}, headers={"Origin": str(b.base_url)})
        assert r.status_code == 201, r.text
        token = {"Authorization": f"Bearer {r.json()['token']}"}
        b.cookies.clear()
        wrong = a.post("/auth/login", json={"username": "ann", "password": "nope-nope"})
        assert wrong.status_code == 401

        path = f"/download/{CID}/{IID}/{asset}"
        refused = a.get(path, headers=token)  # b's token, a's answer: terms first
        assert refused.status_code == 403 and "terms" in refused.text
        r = b.post(f"/collections/{CID}/accept-terms", headers=token)
        assert r.status_code == 200, r.text
        got = a.get(path, headers=token)
        assert got.status_code == 200 and len(got.content) == size
        r = b.post("/orders", json={"ids": [{"collection": CID, "id": IID}]}, headers=token)
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        assert a.get(f"/orders/{order_id}", headers=token).status_code == 200

    # every row in PostgreSQL, one schema per area
    assert _rows(url, "SELECT code FROM access.members ORDER BY code") == [("aaa",), ("bbb",)]
    assert _rows(url, "SELECT username FROM access.tokens") == [("ann",)]
    assert _rows(url, "SELECT username FROM access.sessions") == [("ann",)]
    assert _rows(url, "SELECT username, collection FROM access.acceptances") == [("ann", CID)]
    assert _rows(url, "SELECT username, failures FROM access.login_failures") == [("ann", 1)]
    audit = _rows(url, "SELECT username, member, collection, item, decision, bytes "
                       "FROM access.audit WHERE bytes > 0")  # fmt: skip
    assert audit == [("ann", "bbb", CID, IID, "full", size)]
    assert _rows(url, "SELECT id, owner FROM downloads.orders")[0][0] == order_id
    applied = _rows(url, "SELECT component, version FROM access.schema_migrations ORDER BY 1")
    assert applied == [("access", 1), ("login_guard", 1)]
    # and nothing of the node's state on either process's disk
    for data_dir in data_dirs:
        assert sorted(p.name for p in data_dir.glob("*.db*")) == []
