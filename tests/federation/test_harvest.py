"""Harvest from a real peer (beta) into a node that is not serving (hub2): resumable
after kill -9 with nothing lost or doubled, deletions propagated, searchable offline,
and only what beta shows the public."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eoshare.catalog import open_catalog
from eoshare.catalog.base import SearchQuery
from eoshare.federation.identity import b64, load_or_create_identity
from eoshare.federation.peers import Peer, PeerRegistry
from federation.conftest import ADMIN, Federation, as_peer, run_cli


@dataclass
class Hub2:
    data_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "EOSHARE_DATA_DIR": str(self.data_dir),
            "EOSHARE_FEDERATION__NAME": "hub2",
            **extra,
        }

    def local_ids(self, collection: str) -> list[str]:
        catalog = open_catalog(f"sqlite:///{self.data_dir / 'catalog.db'}")
        try:
            return [str(i["id"]) for i in catalog.iter_items(collection)]
        except Exception:
            return []
        finally:
            catalog.close()


@pytest.fixture(scope="module")
def hub2(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub2]:
    data_dir = tmp_path_factory.mktemp("hub2")
    identity = load_or_create_identity(data_dir / "node-key.pem", name="hub2", member=None)
    # beta knows hub2's key (no trust: hub2 harvests as itself, the public view)
    federation.beta.registry.add(
        Peer(
            "hub2",
            "http://hub2.invalid",
            "eoshare",
            fingerprint=identity.fingerprint,
            public_key=b64(identity.public_raw),
        )
    )
    PeerRegistry(data_dir / "federation.db").add(as_peer(federation.beta))
    try:
        yield Hub2(data_dir)
    finally:
        federation.beta.registry.remove("hub2")


def _cursor_written(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return bool(conn.execute("SELECT count(*) FROM harvest_cursors").fetchone()[0])
    except sqlite3.Error:
        return False


def test_harvest_resumes_after_kill_9(federation: Federation, hub2: Hub2) -> None:
    public = sorted(federation.beta.items["b-open"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update(hub2.env(EOSHARE_FEDERATION__HARVEST_BATCH="1", EOSHARE_LOG_LEVEL="warning"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "eoshare.cli", "harvest", "beta"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not _cursor_written(hub2.data_dir / "federation.db"):
        assert proc.poll() is None, "harvest ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = hub2.local_ids("beta.b-open")
    assert 0 < len(at_kill) < len(public), len(at_kill)

    done = run_cli("harvest", "beta", env=hub2.env())
    assert done.returncode == 0, done.stderr
    assert "beta:" in done.stdout and "items/s" in done.stdout
    ids = hub2.local_ids("beta.b-open")
    assert sorted(ids) == public  # nothing lost, nothing doubled
    # only what beta shows the public: members/partners/provider collections are not here
    assert hub2.local_ids("beta.b-members") == []
    assert hub2.local_ids("beta.b-partners") == []


def test_harvested_records_keep_their_origin_and_search_offline(
    federation: Federation, hub2: Hub2
) -> None:
    catalog = open_catalog(f"sqlite:///{hub2.data_dir / 'catalog.db'}")
    try:
        page = catalog.search(SearchQuery(collections=("beta.b-open",), ids=("b-open-3",)))
        coll = catalog.get_collection("beta.b-open")
    finally:
        catalog.close()
    (item,) = page.items
    assert item["properties"]["federation:origin"] == "beta"
    assert item["properties"]["federation:origin_collection"] == "b-open"
    canonical = next(x["href"] for x in item["links"] if x["rel"] == "canonical")
    assert canonical.startswith(federation.beta.url)
    assert coll["federation:agreement"]["access"] == "open"


def test_second_harvest_is_incremental_and_propagates_deletions(
    federation: Federation, hub2: Hub2
) -> None:
    beta = federation.beta
    admin = {"Authorization": f"Bearer {ADMIN}"}
    url = f"{beta.url}/collections/b-open/items/b-open-29"
    original = httpx.get(url, headers=admin).json()
    assert httpx.delete(url, headers=admin).status_code in (200, 204)
    try:
        again = run_cli("harvest", "beta", env=hub2.env())
        assert again.returncode == 0, again.stderr
        assert "1 deleted" in again.stdout
        assert "0 written" in again.stdout  # nothing changed: nothing pulled again
        assert "b-open-29" not in hub2.local_ids("beta.b-open")
    finally:
        doc = {k: v for k, v in original.items() if k != "links"}
        r = httpx.post(f"{beta.url}/collections/b-open/items", json=doc, headers=admin)
        assert r.status_code in (200, 201), r.text
