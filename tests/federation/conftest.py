"""Three real eoshare nodes in separate processes, each with its own data, members,
users and agreements, on 127.0.0.1:

* **alpha** (member ``vn-vnsc``): the hub. Peers: beta (added with ``eoshare peers add``,
  fingerprint checked) and gamma. Holds ``a-open`` with real bytes (for export).
* **beta** (member ``ke-kspa``): ``b-open`` (30 items), ``b-members``, ``b-partners``
  (partner: vn-vnsc), ``b-provider``. Trusts alpha's word for ``vn-vnsc`` users only.
* **gamma** (member ``bd-sparrso``): ``g-open`` (one scene is also in b-open, under
  another id), ``g-members``. Trusts alpha for every member.

Every node knows the same three members and has users ``vn_user``, ``bd_user`` and
``ke_user`` (one per member) with their own API tokens there, so a test can compare
what the hub shows a caller with what each origin shows that caller directly.

Items are real Sentinel-2 STAC items from ``../shared/data/stac`` with new ids.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.storage import open_store
from live import live_node

JSON = dict[str, Any]
ADMIN = "federation-test-admin-token-0123456789"
MEMBERS = {"vn-vnsc": "VN", "ke-kspa": "KE", "bd-sparrso": "BD"}
USERS = {"vn_user": "vn-vnsc", "bd_user": "bd-sparrso", "ke_user": "ke-kspa"}
DEADLINE_S = 2.0
DATA = bytes(range(256)) * 16


@dataclass
class Node:
    name: str
    member: str
    data_dir: Path
    url: str = ""
    fingerprint: str = ""
    public_key: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    # collection -> item ids
    items: dict[str, list[str]] = field(default_factory=dict)

    def headers(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}

    @property
    def registry(self) -> PeerRegistry:
        return PeerRegistry(self.data_dir / "federation.db")


@dataclass
class Federation:
    alpha: Node
    beta: Node
    gamma: Node
    shared: Path
    # the scene beta holds as b-open-0 and gamma as g-dup
    dup_scene: tuple[str, str] = ("b-open-0", "g-dup")


def templates(shared: Path) -> list[JSON]:
    path = shared / "stac" / "sentinel-2-l2a_pc_and_earthsearch.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    full_env.update({"EOSHARE_LOG_LEVEL": "warning", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def build(
    node: Node,
    shared: Path,
    collections: dict[str, tuple[JSON, int]],
    *,
    with_bytes: bool | set[str] = False,
) -> None:
    """Collections ({id: (agreement, item count)}), members, users and tokens."""
    tpl = templates(shared)
    coll_tpl = json.loads((shared / "stac" / "collection_sentinel-2-l2a_pc.json").read_text())
    catalog = open_catalog(f"sqlite:///{node.data_dir / 'catalog.db'}")
    store = open_store((node.data_dir / "store").resolve().as_uri())
    base = datetime(2024, 3, 1, tzinfo=UTC)
    try:
        for cid, (_, count) in collections.items():
            doc = copy.deepcopy(coll_tpl)
            doc.update({"id": cid, "title": f"{node.name} {cid}", "links": []})
            catalog.create_collection(doc)
            batch = []
            for n in range(count):
                item = copy.deepcopy(tpl[n % len(tpl)])
                item["id"] = f"{cid}-{n}"
                item["collection"] = cid
                item["links"] = []
                props = item["properties"]
                props["datetime"] = (
                    base - timedelta(hours=n, minutes=sum(map(ord, cid)) % 50)
                ).strftime("%Y-%m-%dT%H:%M:%SZ")
                if n % 7 != 3:  # a few without 'updated': the full comparison finds them
                    props["updated"] = (base + timedelta(seconds=n // 2)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    )
                item["assets"] = {}
                if with_bytes is True or (isinstance(with_bytes, set) and cid in with_bytes):
                    # as the node makes keys: bound to the item (catalog.assetkeys)
                    key = f"{cid}/{item['id']}/data.tif"
                    data = DATA + item["id"].encode()
                    store.put_bytes(key, data)
                    item["assets"]["data"] = {
                        "href": key,
                        "type": "image/tiff",
                        "roles": ["data"],
                        "eoshare:key": key,
                        "file:size": len(data),
                        "file:checksum": "1220" + hashlib.sha256(data).hexdigest(),
                    }
                batch.append(item)
            catalog.upsert_items(batch)
            node.items[cid] = [i["id"] for i in batch]
    finally:
        catalog.close()
    access = AccessStore(node.data_dir / "access.db")
    try:
        for code, country in MEMBERS.items():
            access.put_member(Member(code, f"Agency {code}", country), who="test")
        for cid, (terms, _) in collections.items():
            access.put_agreement(
                agreement_from_dict({"collection": cid, "provider": node.member, **terms}),
                who="test",
            )
        for user, member in USERS.items():
            access.put_user(user, member=member, roles=["analyst"], password=None, who="test")
            _, node.tokens[user] = access.create_token(user, days=1, who="test")
    finally:
        access.close()


def env_for(node: Node) -> dict[str, str]:
    return {
        "EOSHARE_API__ADMIN_TOKEN": ADMIN,
        "EOSHARE_FEDERATION__NAME": node.name,
        "EOSHARE_FEDERATION__MEMBER": node.member,
        "EOSHARE_FEDERATION__DEADLINE_S": str(DEADLINE_S),
        "EOSHARE_LOG_LEVEL": "warning",
    }


@contextlib.contextmanager
def serve(node: Node) -> Iterator[Node]:
    with live_node(node.data_dir, env_for(node), ready_path="/conformance") as url:
        node.url = url
        doc = httpx.get(url + "/.well-known/eoshare-node", timeout=10).json()
        node.fingerprint = doc["fingerprint"]
        node.public_key = doc["public_key"]["raw"]
        yield node


def as_peer(node: Node, trusted: set[str] | None = None, **extra: Any) -> Peer:
    return Peer(
        name=node.name,
        url=node.url,
        kind="eoshare",
        fingerprint=node.fingerprint,
        public_key=node.public_key,
        member=node.member,
        trusted_members=frozenset(trusted or ()),
        **extra,
    )


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    alpha = Node("alpha", "vn-vnsc", root / "alpha")
    beta = Node("beta", "ke-kspa", root / "beta")
    gamma = Node("gamma", "bd-sparrso", root / "gamma")
    for n in (alpha, beta, gamma):
        n.data_dir.mkdir()
    build(alpha, shared_data, {"a-open": ({"access": "open"}, 3)}, with_bytes=True)
    build(
        beta,
        shared_data,
        {
            "b-open": ({"access": "open"}, 30),
            "b-members": ({"access": "members"}, 3),
            "b-partners": ({"access": "partners", "partners": ["vn-vnsc"]}, 3),
            "b-provider": ({"access": "provider"}, 3),
        },
        with_bytes={"b-partners"},
    )
    build(
        gamma,
        shared_data,
        {"g-open": ({"access": "open"}, 3), "g-members": ({"access": "members"}, 2)},
    )
    # the same scene as beta's b-open-0, held by gamma under another id
    cat = open_catalog(f"sqlite:///{beta.data_dir / 'catalog.db'}")
    twin = cat.get_item("b-open", "b-open-0")
    cat.close()
    twin = {**twin, "id": "g-dup", "collection": "g-open", "links": []}
    cat = open_catalog(f"sqlite:///{gamma.data_dir / 'catalog.db'}")
    cat.upsert_items([twin])
    cat.close()
    gamma.items["g-open"].append("g-dup")

    with serve(beta), serve(gamma), serve(alpha):
        # the peers accept alpha's requests; beta believes it for vn-vnsc users only
        beta.registry.add(as_peer(alpha, {"vn-vnsc"}))
        gamma.registry.add(as_peer(alpha, {"*"}))
        # the hub registers beta as an operator would: with the CLI, checking its key
        added = run_cli(
            "peers", "add", beta.url, "--fingerprint", beta.fingerprint,
            "--data-dir", str(alpha.data_dir),
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert ": ok" in added.stdout, added.stdout
        alpha.registry.add(as_peer(gamma, collections=("g-open",)))
        yield Federation(alpha, beta, gamma, shared_data)
        for n in (alpha, beta, gamma):
            log = (n.data_dir / "server.log").read_text()
            assert "Traceback" not in log, f"{n.name}:\n{log}"
