"""A live node for the byte-path attack tests (test_bytes_*, test_quota*, test_headers*,
test_ids*): two members, each with its own files, and attackers from each.

* member ``aaa`` provides ``a-private`` (provider-only): scene ``secret-scene`` (Landsat
  B4, ingested: a COG and a thumbnail in the store), and ``a-quota`` (open, with daily
  quotas): scene ``quota-scene`` (Landsat B4 again);
* member ``bbb`` provides ``b-open`` (open to everyone): scene ``b-scene`` (Landsat B5,
  so its bytes differ from A's) and ``legacy-forged``, an item written straight into the
  catalogue (as an old catalogue or a bypassed check would) whose assets name A's store
  keys;
* callers: ``a_user`` (aaa analyst), ``b_admin`` (bbb provider-admin), ``b_user`` (bbb
  analyst), ``c_user`` (bbb analyst, for quotas), ``leaver`` and ``revokee`` (bbb
  analysts whose links die with them), the operator (admin token), and the public.

The node is a uvicorn subprocess (``tests.live.live_node``) on 127.0.0.1.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.ingest.raster import ingest_rasters
from eoshare.storage import open_store
from live import live_node

ADMIN_TOKEN = "security-bytes-operator-token"
A_PRIVATE, A_QUOTA, B_OPEN = "a-private", "a-quota", "b-open"
SECRET, QUOTA_SCENE, B_SCENE, LEGACY = "secret-scene", "quota-scene", "b-scene", "legacy-forged"
A_FILE = "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF"
B_FILE = "LC08_L1TP_016037_20170813_20170814_01_RT_B5.TIF"
# the daily quotas of a-quota, per user: set from the stored file's size in the fixture
TILE_QUOTA = 3


@dataclass
class BytesNode:
    url: str
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)
    # store key -> bytes of A's stored files (what must never leak)
    a_bytes: dict[str, bytes] = field(default_factory=dict)
    # asset name -> bytes of B's own scene (what B's item must keep serving)
    b_bytes: dict[str, bytes] = field(default_factory=dict)
    b_item: dict[str, object] = field(default_factory=dict)
    quota_file_size: int = 0
    byte_quota: int = 0

    def headers(self, who: str) -> dict[str, str]:
        if who == "anonymous":
            return {}
        token = ADMIN_TOKEN if who == "operator" else self.tokens[who]
        return {"Authorization": f"Bearer {token}"}

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(who), timeout=60)

    def leaks(self, body: bytes) -> bool:
        """Whether ``body`` holds any of A's stored files (or a large piece of one)."""
        for data in self.a_bytes.values():
            if data and (data in body or (len(body) >= 4096 and body[:4096] in data)):
                return True
        return False


def data_asset(item: dict[str, object]) -> str:
    """The name of the item's (one) raster file asset."""
    assets = item["assets"]
    assert isinstance(assets, dict)
    return next(k for k, a in assets.items() if "thumbnail" not in (a.get("roles") or []))


def _build(data_dir: Path, shared: Path) -> BytesNode:
    node = BytesNode(url="", data_dir=data_dir)
    catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
    store = open_store((data_dir / "store").resolve().as_uri())
    raster = shared / "raster"
    when = datetime(2017, 8, 13, tzinfo=UTC)
    try:
        for cid, iid, path in (
            (A_PRIVATE, SECRET, raster / A_FILE),
            (A_QUOTA, QUOTA_SCENE, raster / A_FILE),
            (B_OPEN, B_SCENE, raster / B_FILE),
        ):
            report = ingest_rasters([path], catalog=catalog, store=store, collection_id=cid,
                                    item_id=iid, datetime=when, create_collection=True)  # fmt: skip
            assert not report.failures, report.failures
        secret = catalog.get_item(A_PRIVATE, SECRET)
        for asset in secret["assets"].values():
            key = asset.get("eoshare:key")
            if isinstance(key, str):
                node.a_bytes[key] = store.local_path(key).read_bytes()
        quota_item = catalog.get_item(A_QUOTA, QUOTA_SCENE)
        node.quota_file_size = int(quota_item["assets"][data_asset(quota_item)]["file:size"])
        node.b_item = catalog.get_item(B_OPEN, B_SCENE)
        for name, asset in node.b_item["assets"].items():
            key = asset.get("eoshare:key")
            if isinstance(key, str):
                node.b_bytes[name] = store.local_path(key).read_bytes()
        # An item whose document names A's objects, written past the API (an old
        # catalogue, a bypassed check): the gate must still refuse it.
        legacy = copy.deepcopy(node.b_item)
        legacy["id"] = LEGACY
        pairs = ((data_asset(legacy), data_asset(secret)), ("thumbnail", "thumbnail"))
        for b_name, a_name in pairs:
            legacy["assets"][b_name]["eoshare:key"] = secret["assets"][a_name]["eoshare:key"]
            legacy["assets"][b_name]["href"] = secret["assets"][a_name]["href"]
        catalog.upsert_items([legacy], collection_id=B_OPEN)
    finally:
        catalog.close()

    node.byte_quota = node.quota_file_size * 3 // 2  # one whole file fits, two do not
    access = AccessStore(data_dir / "access.db")
    try:
        access.put_member(Member("aaa", "Agency A", "KE"), who="test")
        access.put_member(Member("bbb", "Agency B", "VN"), who="test")
        for doc in (
            {"collection": A_PRIVATE, "provider": "aaa", "access": "provider"},
            {"collection": A_QUOTA, "provider": "aaa", "access": "open",
             "quota_user_bytes_per_day": node.byte_quota,
             "quota_user_tiles_per_day": TILE_QUOTA},
            {"collection": B_OPEN, "provider": "bbb", "access": "open"},
        ):  # fmt: skip
            access.put_agreement(agreement_from_dict(doc), who="test")
        users = {
            "a_user": ("aaa", ["analyst"]),
            "b_admin": ("bbb", ["provider-admin"]),
            "b_user": ("bbb", ["analyst"]),
            "c_user": ("bbb", ["analyst"]),
            "d_user": ("bbb", ["analyst"]),
            "leaver": ("bbb", ["analyst"]),
            "revokee": ("bbb", ["analyst"]),
        }
        for name, (member, roles) in users.items():
            access.put_user(name, member=member, roles=roles, who="test")
            info, secret_token = access.create_token(name, days=1, who="test")
            node.tokens[name] = secret_token
            node.token_ids[name] = info.id
    finally:
        access.close()
    return node


@pytest.fixture(scope="session")
def secbytes_node(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[BytesNode]:
    data_dir = tmp_path_factory.mktemp("security-bytes")
    node = _build(data_dir, shared_data)
    env = {
        "EOSHARE_LOG_LEVEL": "warning",
        "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN,
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        # two worker processes: quota reservations must hold across processes too
        "WEB_CONCURRENCY": "2",
    }
    with live_node(data_dir, env, ready_path="/conformance") as url:
        node.url = url
        yield node
    # no attack made the node fail (a 500 logs a traceback)
    log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
