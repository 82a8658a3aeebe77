"""Harvest: pull a peer's collections and items into this node's catalogue, so that they
are searchable here even when the peer is offline. The index is local; the bytes stay at
the origin (asset links point there, and the origin decides every download).

What is pulled is what the peer shows *this node* asking as itself, without a forwarded
user: its public view. So a harvested record can be shown to anyone here without ever
showing more than its origin would.

For each collection the peer shows, into the local collection ``<peer>.<collection>``:

1. **incremental** (peers that can filter and sort by ``updated``): items with
   ``updated >= cursor``, oldest first, one batch at a time; each batch is written (one
   transaction, upsert by id) and *then* the cursor is committed. A crash, even
   ``kill -9``, loses at most the batch in flight, which the next run pulls again: never
   lost, never doubled.
2. **full comparison** (every peer, after 1): the ids (and ``updated``) of everything
   the peer shows, against the local copy: records that disappeared there (deleted, or
   no longer public) are deleted here; records missing or changed here are fetched.
   This also catches what 1 cannot (items without ``updated``, embargoes that lapsed).

Harvested items keep where they come from: ``federation:origin`` (the node),
``federation:origin_collection`` and a ``canonical`` link; the collection carries the
origin's agreement as ``federation:agreement``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from eoshare.catalog.assetkeys import keep_node_keys
from eoshare.catalog.base import Catalog
from eoshare.errors import NotFoundError, UpstreamError
from eoshare.federation.client import RENDER_HEADER, auth_for, json_of, upstream
from eoshare.federation.fanout import next_token_of
from eoshare.federation.identity import NodeIdentity
from eoshare.federation.peers import Peer, PeerRegistry, now_iso

JSON = dict[str, Any]
log = logging.getLogger("eoshare.federation.harvest")
_SERVER_RELS = {"self", "root", "parent", "collection", "items", "next", "prev", "queryables"}
_LOCAL_ONLY_ASSET_FIELDS = ("eoshare:key", "eoshare:access")


def local_collection_id(peer: str, collection: str) -> str:
    return f"{peer}.{collection}"


@dataclass
class HarvestReport:
    peer: str
    collections: int = 0
    written: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _harvested_item(peer: Peer, item: JSON, local_cid: str) -> JSON:
    out = dict(item)
    props = dict(out.get("properties") or {})
    props.setdefault("federation:origin", peer.name)
    props.setdefault("federation:origin_collection", item.get("collection"))
    out["properties"] = props
    out["collection"] = local_cid
    links = []
    for x in item.get("links") or []:
        if not isinstance(x, dict):
            continue
        if x.get("rel") == "self":
            links.append({**x, "rel": "canonical", "title": f"This item at {peer.name}"})
        elif x.get("rel") not in _SERVER_RELS:
            links.append(x)
    out["links"] = links
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        if isinstance(asset, dict):
            # the bytes are the origin's: this node's store and download route never serve them
            asset = {k: v for k, v in asset.items() if k not in _LOCAL_ONLY_ASSET_FIELDS}
        assets[key] = asset
    out["assets"] = assets
    return out


class Harvester:
    """Pulls peers' records into ``catalog``. Used by ``eoshare harvest``."""

    def __init__(
        self,
        catalog: Catalog,
        registry: PeerRegistry,
        identity: NodeIdentity,
        *,
        batch: int = 200,
        timeout_s: float = 30.0,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.identity = identity
        self.batch = batch
        self.timeout_s = timeout_s
        self.on_batch = on_batch

    def harvest(self, peer: Peer) -> HarvestReport:
        report = HarvestReport(peer.name)
        started, t0 = now_iso(), time.perf_counter()
        # an eoshare peer leaves out the links this node derives itself (tiles): the
        # peer's rendering was most of a harvest's time
        headers = {RENDER_HEADER: "minimal"} if peer.kind == "eoshare" else {}
        with httpx.Client(
            timeout=self.timeout_s, auth=auth_for(peer, self.identity), headers=headers
        ) as client:
            try:
                collections = self._collections(client, peer)
            except UpstreamError as exc:
                report.errors.append(exc.detail)
                collections = []
            for doc in collections:
                try:
                    self._collection(client, peer, doc, report)
                    report.collections += 1
                except UpstreamError as exc:
                    report.errors.append(f"{doc.get('id')}: {exc.detail}")
        report.seconds = time.perf_counter() - t0
        self.registry.record_harvest(
            peer.name,
            started=started,
            items=report.written,
            deleted=report.deleted,
            detail="; ".join(report.errors) or "ok",
        )
        return report

    # --- steps --------------------------------------------------------------------------
    def _collections(self, client: httpx.Client, peer: Peer) -> list[JSON]:
        out: list[JSON] = []
        url: str | None = peer.url + "/collections"
        while url is not None:
            with upstream(peer.name):
                doc = json_of(client.get(url), peer.name)
            out += [c for c in doc.get("collections", []) if isinstance(c, dict) and "id" in c]
            url = next(
                (x.get("href") for x in doc.get("links", []) if x.get("rel") == "next"), None
            )
        return out

    def _collection(
        self, client: httpx.Client, peer: Peer, doc: JSON, report: HarvestReport
    ) -> None:
        cid = str(doc["id"])
        local = local_collection_id(peer.name, cid)
        coll = {k: v for k, v in doc.items() if k != "links"}
        coll["id"] = local
        coll["links"] = [
            {**x, "rel": "canonical"} for x in doc.get("links", []) if x.get("rel") == "self"
        ]
        coll["federation:origin"] = peer.name
        coll["federation:origin_collection"] = cid
        if "eoshare:agreement" in coll:
            coll["federation:agreement"] = coll.pop("eoshare:agreement")
        try:
            self.catalog.get_collection(local)
            self.catalog.update_collection(local, coll)
        except NotFoundError:
            self.catalog.create_collection(coll)
        if peer.kind == "eoshare":
            first = self.registry.cursor(peer.name, cid) is None and self._empty(local)
            self._incremental(client, peer, cid, local, report, first=first)
            if first:
                # a first pull from nothing wrote every record (those without 'updated'
                # too) and has nothing to delete: the full comparison (which costs the
                # peer a second reading of everything) waits for the next harvest
                return
        self._compare(client, peer, cid, local, report)

    def _empty(self, local: str) -> bool:
        return next(iter(self.catalog.iter_items(local)), None) is None

    def _search(self, client: httpx.Client, peer: Peer, body: JSON) -> JSON:
        with upstream(peer.name):
            r = client.post(peer.url + "/search", json=body)
        return json_of(r, peer.name)

    def _pages(self, client: httpx.Client, peer: Peer, body: JSON) -> Iterator[JSON]:
        """The pages of a search, in order. The next page is asked while the caller
        writes this one (the peer renders as this node writes): one request ahead, no
        more, so a crash still loses at most the batch in flight."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="harvest") as pool:
            ahead: Future[JSON] | None = pool.submit(self._search, client, peer, body)
            for _ in range(1_000_000):
                if ahead is None:
                    return
                page = ahead.result()
                token = next_token_of(page)
                ahead = None
                if token is not None and page.get("features"):
                    ahead = pool.submit(self._search, client, peer, {**body, "token": token})
                yield page

    def _write(self, peer: Peer, items: list[JSON], local: str) -> int:
        if not items:
            return 0
        docs = [self._keep_mirrored(local, _harvested_item(peer, i, local)) for i in items]
        self.catalog.upsert_items(docs, collection_id=local, on_conflict="update")
        if self.on_batch is not None:
            self.on_batch(local, len(docs))
        return len(docs)

    def _keep_mirrored(self, local: str, doc: JSON) -> JSON:
        """A record this node holds a mirrored copy of (``eoshare.federation.mirror``)
        keeps its store keys: a harvest must not cut the local bytes off their item."""
        try:
            old = self.catalog.get_item(local, str(doc["id"]))
        except NotFoundError:
            return doc
        return keep_node_keys(doc, old)

    def _incremental(
        self,
        client: httpx.Client,
        peer: Peer,
        cid: str,
        local: str,
        report: HarvestReport,
        *,
        first: bool = False,
    ) -> None:
        cursor = self.registry.cursor(peer.name, cid) or {}
        since: str | None = cursor.get("t")
        done_at_since = set(cursor.get("ids", []))
        body: JSON = {
            "collections": [cid],
            "sortby": [{"field": "updated", "direction": "asc"}],
            "limit": self.batch,
        }
        if since:
            body["filter"] = {
                "op": ">=",
                "args": [{"property": "updated"}, {"timestamp": since}],
            }
            body["filter-lang"] = "cql2-json"
        for page in self._pages(client, peer, body):
            features = [f for f in page.get("features", []) if isinstance(f, dict) and "id" in f]
            fresh = []
            for item in features:
                updated = (item.get("properties") or {}).get("updated")
                if not isinstance(updated, str):
                    if first:  # (they sort first: written before any cursor)
                        fresh.append(item)
                    continue  # else left to the full comparison
                if updated == since and item["id"] in done_at_since:
                    continue
                fresh.append(item)
            report.written += self._write(peer, fresh, local)
            for item in fresh:
                updated = item["properties"].get("updated")
                if not isinstance(updated, str):
                    continue
                if since is None or updated > since:
                    since, done_at_since = updated, set()
                if updated == since:
                    done_at_since.add(item["id"])
            if fresh:
                # committed only after the batch is in the catalogue
                self.registry.set_cursor(peer.name, cid, {"t": since, "ids": sorted(done_at_since)})

    def _remote_ids(self, client: httpx.Client, peer: Peer, cid: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        body: JSON = {
            "collections": [cid],
            "limit": 1000,
            "fields": {"include": ["id", "properties.updated"], "exclude": []},
        }
        for page in self._pages(client, peer, body):
            for f in page.get("features", []):
                if isinstance(f, dict) and isinstance(f.get("id"), str):
                    seen[f["id"]] = (f.get("properties") or {}).get("updated")
        return seen

    def _local_ids(self, local: str) -> Iterator[tuple[str, Any]]:
        for item in self.catalog.iter_items(local):
            yield str(item["id"]), (item.get("properties") or {}).get("updated")

    def _compare(
        self, client: httpx.Client, peer: Peer, cid: str, local: str, report: HarvestReport
    ) -> None:
        remote = self._remote_ids(client, peer, cid)
        here = dict(self._local_ids(local))
        for iid in sorted(set(here) - set(remote)):
            self.catalog.delete_item(local, iid)
            report.deleted += 1
        wanted = sorted(
            iid for iid, updated in remote.items() if iid not in here or here[iid] != updated
        )
        for start in range(0, len(wanted), self.batch):
            ids = wanted[start : start + self.batch]
            page = self._search(client, peer, {"collections": [cid], "ids": ids, "limit": len(ids)})
            items = [f for f in page.get("features", []) if isinstance(f, dict) and "id" in f]
            report.written += self._write(peer, items, local)


def harvest_all(harvester: Harvester, peers: list[Peer]) -> list[HarvestReport]:
    return [harvester.harvest(p) for p in peers if p.enabled]
