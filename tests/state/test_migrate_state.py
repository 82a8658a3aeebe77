"""``eoshare migrate --to postgresql://...`` moves a node's catalogue and all its state
(access, login failures, orders, uploads, jobs, disaster, peers) into PostgreSQL, and
``eoshare migrate --to <folder>`` brings it back for a member that leaves: every table's
rows are the same after the round trip, the stores answer the same on both engines, a
second run resumes harmlessly, and a target that differs is reported."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import CliRunner

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.ratelimit import LoginGuard
from eoshare.access.store import AccessStore, QuotaClaim
from eoshare.catalog import open_catalog
from eoshare.cli import app
from eoshare.disaster.store import ActivationRow, DisasterStore, SubscriptionRow
from eoshare.downloads.orders import OrderAsset, OrderBook
from eoshare.downloads.uploads import UploadBook
from eoshare.federation.mirror import Mirror, MirrorBook
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.processing.jobs import JobStore
from eoshare.storage import open_store


def collection(cid: str) -> dict[str, Any]:
    extent = {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}
    return {"type": "Collection", "stac_version": "1.1.0", "id": cid, "description": cid,
            "license": "CC-BY-4.0", "extent": extent, "links": []}  # fmt: skip


def item(cid: str, k: int) -> dict[str, Any]:
    ring = [[k, 0.0], [k + 1, 0.0], [k + 1, 1.0], [k, 1.0], [k, 0.0]]
    return {"type": "Feature", "stac_version": "1.1.0", "id": f"{cid}-{k:03d}", "collection": cid,
            "geometry": {"type": "Polygon", "coordinates": [ring]}, "bbox": [k, 0, k + 1, 1],
            "properties": {"datetime": f"2020-01-0{k + 1}T10:00:00Z"}, "links": [],
            "assets": {"data": {"href": f"https://a.example/{k}", "roles": ["data"]}}}  # fmt: skip


AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
FILES = ("access.db", "orders.db", "uploads.db", "processing.db", "disaster.db", "federation.db")


def _fill(data_dir: Path) -> None:
    """A node's state, a bit of everything, in its SQLite files."""
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    try:
        catalog.create_collection(collection("c"))
        catalog.upsert_items([item("c", k) for k in range(3)])
    finally:
        catalog.close()
    access = AccessStore(data_dir / "access.db")
    access.put_member(Member("ke", "Kenya", "KE"), who="op")
    access.put_member(Member("vn", "Viet Nam", "VN"), who="op")
    access.put_user("v", member="vn", roles=["analyst"], password="long enough pw", who="op")
    access.create_token("v", days=2, label="laptop", who="op")
    access.create_session("v", ttl_s=3600)
    access.put_agreement(agreement_from_dict(
        {"collection": "c", "provider": "ke", "access": "open", "terms": "Cite us.",
         "quota_user_bytes_per_day": 10**9}), who="op")  # fmt: skip
    access.accept_terms("v", "c")
    for n in range(5):
        access.record(username="v", member="vn", country="VN", collection="c", item=f"c-{n:03d}",
                      asset="data", action="download", decision="full", nbytes=1000 + n,
                      at=AT + timedelta(hours=n))  # fmt: skip
    access.reserve([QuotaClaim("u:v", "c", "bytes", 4321, 10**9)], "2026-03-01")
    access.close()
    guard = LoginGuard(data_dir / "access.db", clock=lambda: 1_700_000_000.5)
    guard.failed("v", "10.0.0.1")
    guard.close()
    orders = OrderBook(data_dir / "orders.db")
    orders.create("v", [OrderAsset("c", "c-000", "data", "k/0.tif", 10, None)],
                  [("c", "c-000")], [], ttl_s=3600)  # fmt: skip
    orders.close()
    uploads = UploadBook(data_dir / "uploads.db", data_dir / "uploads")
    body = b"x" * 100
    up = uploads.create("v", collection="c", filename="a.tif", size=100,
                        sha256=hashlib.sha256(body).hexdigest(), chunk_bytes=64,
                        max_bytes=1000, ttl_s=3600)  # fmt: skip
    uploads.write_chunk(up, 0, body[:64], None)
    uploads.close()
    jobs = JobStore(data_dir / "processing.db")
    job = jobs.create_job("v", "vn", {"process_graph": {}}, title="ndvi")
    jobs.log(job.id, "info", "started")
    jobs.log(job.id, "info", "100% done")
    jobs.set_status(job.id, "finished")
    jobs.put_process_graph("v", "vn", {"id": "mine", "process_graph": {}}, shared=True)
    jobs.close()
    disaster = DisasterStore(data_dir / "disaster.db")
    disaster.insert_activation(ActivationRow(
        "act-1", "requested", "vn", "v", AT, "flood", "Floods", "Mekong", [{"name": "x"}],
        {"type": "Point", "coordinates": [105.0, 10.0]}, AT, 5.0, 10.0, None, None, None,
        None, None, None, None, 1), who="v", note="please")  # fmt: skip
    disaster.transition("act-1", expect=("requested",), to="approved", at=AT, who="op",
                        fields={"approved_at": AT, "approved_by": "op"})  # fmt: skip
    disaster.add_responder("act-1", "member", "ke", at=AT, who="op")
    disaster.set_preapproval("vn", on=True, at=AT, who="op")
    disaster.record_grant("act-1", at=AT, username="v", member="vn", collection="c",
                          item="c-001", asset="data", action="download", nbytes=77)  # fmt: skip
    disaster.add_elements([(25544, "2026-03-01T00:00:00Z", "ISS", "1 x", "2 y", "test")], at=AT)
    disaster.insert_subscription(SubscriptionRow(
        "sub-1", "v", AT, None, None, ["c"], "http://127.0.0.1:9/hook", "s3cret", "act-1",
        AT, AT + timedelta(days=3), True))  # fmt: skip
    disaster.claim_delivery("sub-1", "c", "c-002", "webhook", AT)
    disaster.dead_letter("sub-1", at=AT, url="http://127.0.0.1:9/hook", body="{}", attempts=3,
                         error="refused")  # fmt: skip
    disaster.add_item_events([("c", "c-000"), ("c", "c-001")], at=AT)
    disaster.record_product(("act-1", "p-1", "c", "2026-03-01T13:00:00Z", "manual", 12.5, "{}"))
    disaster.close()
    peers = PeerRegistry(data_dir / "federation.db")
    peers.add(Peer("beta", "http://127.0.0.1:9", "eoshare", fingerprint="SHA256:b",
                   trusted_members=frozenset({"vn"}), added="2026-03-01T00:00:00Z"))  # fmt: skip
    peers.set_cursor("beta", "c", {"after": "2026-03-01"})
    peers.record_harvest("beta", started="2026-03-01T00:00:00Z", items=3, deleted=0, detail="ok")
    peers.close()
    mirrors = MirrorBook(data_dir / "federation.db", data_dir / "mirror-partial")
    mirrors.add(Mirror("beta-1", "beta", ("c",), window="22:00-06:00", added="2026-03-01"))
    mirrors.set("beta-1", state="idle", files_done=1, bytes_done=3)
    mirrors.file_done("beta-1", "c/c-000/data.tif", 3, "sha256:x")
    mirrors.close()


def _tables(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the node's SQLite state (not the migrations' log)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in FILES:
        conn = sqlite3.connect(data_dir / name)
        try:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name != 'schema_migrations'")]  # fmt: skip
            for table in tables:
                out[f"{name}:{table}"] = sorted(conn.execute(f"SELECT * FROM {table}"), key=repr)
        finally:
            conn.close()
    return out


def _answers(where: Any) -> dict[str, Any]:
    """What the stores' read methods say, on either engine."""
    access = AccessStore(where("access.db"))
    disaster = DisasterStore(where("disaster.db"))
    jobs = JobStore(where("processing.db"))
    peers = PeerRegistry(where("federation.db"))
    mirrors = MirrorBook(where("federation.db"), Path("/nonexistent"))
    try:
        job = jobs.list_jobs()[0]
        return {
            "members": access.list_members(),
            "users": access.list_users(),
            "tokens": access.list_tokens(),
            "history": access.history(limit=100),
            "usage": access.usage(),
            "reach": access.reach(since="2026-01-01"),
            "accepted": access.has_accepted("v", "c", "Cite us."),
            "version": access.version(),
            "activations": disaster.list_activations(),
            "transitions": disaster.transitions("act-1"),
            "responders": disaster.responders(),
            "grants": disaster.grant_summary("act-1"),
            "elements": disaster.newest_elements(),
            "subscriptions": disaster.list_subscriptions(),
            "dead": disaster.dead_letters(),
            "events": disaster.item_events_after(0, 10),
            "products": disaster.products("act-1"),
            "job": job.to_dict(),
            "logs": jobs.logs(job.id),
            "graphs": jobs.visible_process_graphs("v", "vn"),
            "peers": [p.to_dict() for p in peers.all()],
            "cursor": peers.cursor("beta", "c"),
            "harvest": peers.last_harvest("beta"),
            "mirrors": mirrors.all(),
            "mirrored": mirrors.done_files("beta-1"),
        }
    finally:
        access.close()
        disaster.close()
        jobs.close()
        peers.close()
        mirrors.close()


def _migrate(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["migrate", *args], env=env)


def test_state_moves_to_postgres_and_back_unchanged(pg: Any, tmp_path: Path) -> None:
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    _fill(embedded)
    before = _tables(embedded)
    assert len(before) >= 20 and all(before[t] for t in ("access.db:audit", "disaster.db:products"))
    url = pg.new_catalog_url()
    open_store((embedded / "store").resolve().as_uri()).put_bytes("c/c-000/data.tif", b"tif")
    archive = (tmp_path / "archive").resolve().as_uri()

    up = _migrate({"EOSHARE_DATA_DIR": str(embedded)}, "--to", url, "--storage", archive)
    assert up.exit_code == 0, up.output
    assert "3 items: 3 copied" in up.output
    assert "counts and checksums match" in up.output and f"EOSHARE_DATABASE={url}" in up.output
    assert "archive: 1 objects copied (3 bytes)" in up.output
    assert f"EOSHARE_STORAGE={archive}" in up.output
    with open_store(archive).open("c/c-000/data.tif") as f:
        assert f.read() == b"tif"
    with psycopg.connect(url) as conn:
        audit = conn.execute("SELECT count(*), sum(bytes) FROM access.audit").fetchone()
        assert audit == (5, 5010)
        assert conn.execute("SELECT id FROM disaster.item_events ORDER BY id").fetchall() == [
            (1,), (2,)]  # fmt: skip
    # the stores answer the same from PostgreSQL as from the files
    assert _answers(lambda name: url) == _answers(lambda name: embedded / name)
    # identity columns go on after the copied ids
    on_pg = DisasterStore(url)
    on_pg.add_item_events([("c", "c-002")], at=AT)
    assert on_pg.last_item_event() == 3
    on_pg.prune_item_events(4)  # and gone again: the node's rows are as before
    on_pg.close()

    # resumable: a second run writes the same rows again and still verifies
    again = _migrate({"EOSHARE_DATA_DIR": str(embedded)}, "--to", url)
    assert again.exit_code == 0, again.output
    assert "0 copied, 3 already there" in again.output

    # back into an empty folder, for a member that leaves
    leaving = tmp_path / "leaving"
    leaving.mkdir()
    env = {"EOSHARE_DATA_DIR": str(leaving), "EOSHARE_CATALOG": url, "EOSHARE_DATABASE": url}
    down = _migrate(env, "--to", "sqlite")
    assert down.exit_code == 0, down.output
    assert f"EOSHARE_DATA_DIR={leaving}" in down.output
    assert _tables(leaving) == before
    catalog = open_catalog(f"sqlite:///{leaving / 'catalog.db'}")
    try:
        assert sorted(i["id"] for i in catalog.iter_items()) == ["c-000", "c-001", "c-002"]
    finally:
        catalog.close()


def test_a_target_that_differs_is_reported(pg: Any, tmp_path: Path) -> None:
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    _fill(embedded)
    url = pg.new_catalog_url()
    # the target already holds a row the node does not have
    extra = AccessStore(url)
    extra.put_member(Member("zz", "Elsewhere", "ZZ"), who="someone")
    extra.close()
    result = _migrate({"EOSHARE_DATA_DIR": str(embedded)}, "--to", url)
    assert result.exit_code == 1
    assert "error: access.members: 2 rows in the source, 3 in the target" in result.output
    assert "counts and checksums DIFFER" in result.output
    same = _migrate({"EOSHARE_DATA_DIR": str(embedded)}, "--to", "sqlite")
    assert same.exit_code == 1 and "already uses" in same.output
