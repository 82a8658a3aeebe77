"""Offline bundles: ``eoshare export`` writes chosen collections to a folder (a disk to
carry where there is no usable link); ``eoshare import`` loads it at another node,
verified first.

A bundle is a self-contained static STAC catalogue::

    DIR/catalog.json                    STAC Catalog, a child link per collection
    DIR/<collection>/collection.json    the collection; an item link per item
    DIR/<collection>/<item>/<item>.json the item; asset hrefs relative (./<file>)
    DIR/<collection>/<item>/<file>      the asset bytes (COGs, thumbnails...)
    DIR/agreements.json                 the agreements that apply, and their members
    DIR/SHA256SUMS                      sha256 of every file above (``sha256sum -c`` reads it)

Import checks every checksum (and that nothing is missing or extra) before it writes
anything; then it puts the bytes into the store under the keys the items name, the
items into the catalogue, and the members and agreements into the access database, so
that the imported collections are served under the same agreements.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.store import AccessStore
from eoshare.catalog.assetkeys import key_of, store_key
from eoshare.catalog.base import Catalog
from eoshare.errors import ConflictError, InvalidRequestError, NotFoundError
from eoshare.storage.base import Store

JSON = dict[str, Any]
SUMS = "SHA256SUMS"
STAC_VERSION = "1.1.0"
_BAD = set("/\\\x00") | {chr(c) for c in range(32)}


@dataclass
class BundleReport:
    collections: list[str] = field(default_factory=list)
    items: int = 0
    files: int = 0
    bytes: int = 0


def _segment(value: str, what: str) -> str:
    if not value or value in (".", "..") or any(c in _BAD for c in value):
        raise InvalidRequestError(f"{what} {value!r} cannot be a file name in a bundle")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, doc: JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False))


def export_bundle(
    catalog: Catalog,
    store: Store,
    access: AccessStore,
    collections: list[str],
    target: Path,
    *,
    on_file: Callable[[str], None] | None = None,
) -> BundleReport:
    """Write ``collections`` (with their items and held assets) to ``target``, which
    must be empty or absent."""
    if target.exists() and any(target.iterdir()):
        raise ConflictError(f"{target} is not empty: export into a new folder")
    report = BundleReport()
    target.mkdir(parents=True, exist_ok=True)
    catalog_links: list[JSON] = [{"rel": "root", "href": "./catalog.json"}]
    agreements: list[JSON] = []
    members: dict[str, JSON] = {}
    for cid in collections:
        coll = catalog.get_collection(cid)
        _segment(cid, "collection id")
        cdir = target / cid
        item_links: list[JSON] = []
        for item in catalog.iter_items(cid):
            iid = _segment(str(item["id"]), "item id")
            idir = cdir / iid
            idir.mkdir(parents=True, exist_ok=True)
            out = {k: v for k, v in item.items() if k != "links"}
            assets: JSON = {}
            for name, asset in (item.get("assets") or {}).items():
                # only the objects the node holds for this very item (ADR 0006)
                key = key_of(item, asset) if isinstance(asset, dict) else None
                if isinstance(asset, dict) and key is not None:
                    filename = _segment(key.rsplit("/", 1)[-1], "asset file")
                    with store.open(key) as src, (idir / filename).open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    report.files += 1
                    report.bytes += (idir / filename).stat().st_size
                    if on_file:
                        on_file(key)
                    asset = {**asset, "href": f"./{filename}"}
                assets[name] = asset
            out["assets"] = assets
            out["links"] = [
                {"rel": "root", "href": "../../catalog.json"},
                {"rel": "parent", "href": "../collection.json"},
                {"rel": "collection", "href": "../collection.json"},
            ]
            _write_json(idir / f"{iid}.json", out)
            item_links.append({"rel": "item", "href": f"./{iid}/{iid}.json"})
            report.items += 1
        cdoc = {k: v for k, v in coll.items() if k != "links"}
        cdoc["links"] = [
            {"rel": "root", "href": "../catalog.json"},
            {"rel": "parent", "href": "../catalog.json"},
            *item_links,
        ]
        _write_json(cdir / "collection.json", cdoc)
        catalog_links.append({"rel": "child", "href": f"./{cid}/collection.json"})
        report.collections.append(cid)
        agreement = access.find_agreement(cid)
        if agreement is not None:
            agreements.append(agreement.to_dict())
            for code in {agreement.provider, *agreement.partners}:
                with contextlib.suppress(NotFoundError):
                    members[code] = access.get_member(code).to_dict()
    _write_json(
        target / "catalog.json",
        {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "eoshare-bundle",
            "description": f"eoshare export of {', '.join(collections)} "
            f"made {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
            "links": catalog_links,
        },
    )
    _write_json(
        target / "agreements.json",
        {"agreements": agreements, "members": sorted(members.values(), key=lambda m: m["code"])},
    )
    lines = [f"{_sha256(p)}  {rel}" for rel, p in _files(target) if rel != SUMS]
    (target / SUMS).write_text("\n".join(lines) + "\n")
    return report


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            p = Path(dirpath) / name
            yield p.relative_to(root).as_posix(), p


def verify_bundle(source: Path) -> None:
    """Every file listed with its checksum, every checksum right, nothing unlisted."""
    sums = source / SUMS
    if not sums.is_file():
        raise InvalidRequestError(f"{source} is not an eoshare bundle: no {SUMS}")
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or rel.startswith("/") or ".." in rel.split("/"):
            raise InvalidRequestError(f"{SUMS} has a malformed line: {line[:80]!r}")
        listed[rel] = digest
    present = {rel: p for rel, p in _files(source) if rel != SUMS}
    missing = sorted(set(listed) - set(present))
    if missing:
        raise InvalidRequestError(f"the bundle is incomplete: {missing[0]} is missing")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise InvalidRequestError(f"the bundle has a file its {SUMS} does not list: {extra[0]}")
    for rel, digest in listed.items():
        if _sha256(present[rel]) != digest:
            raise InvalidRequestError(f"the bundle is damaged: {rel} does not match its checksum")


def import_bundle(
    catalog: Catalog, store: Store, access: AccessStore, source: Path
) -> BundleReport:
    """Verify, then load a bundle made by ``export_bundle``."""
    verify_bundle(source)
    report = BundleReport()
    root = json.loads((source / "catalog.json").read_text())
    pacts = json.loads((source / "agreements.json").read_text())
    for link in root.get("links", []):
        if link.get("rel") != "child":
            continue
        cpath = (source / link["href"]).resolve()
        if not cpath.is_relative_to(source.resolve()):
            raise InvalidRequestError("the bundle links outside itself")
        coll = json.loads(cpath.read_text())
        items: list[JSON] = []
        for ilink in coll.get("links", []):
            if ilink.get("rel") != "item":
                continue
            ipath = (cpath.parent / ilink["href"]).resolve()
            if not ipath.is_relative_to(source.resolve()):
                raise InvalidRequestError("the bundle links outside itself")
            item = json.loads(ipath.read_text())
            assets: JSON = {}
            for name, asset in (item.get("assets") or {}).items():
                if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
                    data = (ipath.parent / str(asset["href"])).resolve()
                    if not data.is_relative_to(source.resolve()):
                        raise InvalidRequestError("the bundle links outside itself")
                    # the key is this node's, made from the item's own ids (never the one
                    # the bundle names: a bundle must not write over another item's file)
                    key = store_key(
                        _segment(str(coll.get("id", "")), "collection id"),
                        _segment(str(item.get("id", "")), "item id"),
                        _segment(data.name, "asset file"),
                    )
                    item["collection"] = coll.get("id")
                    store.put_file(key, data)
                    report.files += 1
                    report.bytes += data.stat().st_size
                    asset = {**asset, "href": key, "eoshare:key": key}
                assets[name] = asset
            item["assets"] = assets
            item["links"] = []
            items.append(item)
        coll["links"] = []
        try:
            catalog.get_collection(coll["id"])
            catalog.update_collection(coll["id"], coll)
        except NotFoundError:
            catalog.create_collection(coll)
        catalog.upsert_items(items, collection_id=coll["id"], on_conflict="update")
        report.items += len(items)
        report.collections.append(coll["id"])
    for m in pacts.get("members", []):
        try:
            access.get_member(m["code"])
        except NotFoundError:
            access.put_member(Member.from_dict(m), who="import")
    for a in pacts.get("agreements", []):
        access.put_agreement(agreement_from_dict(a), who="import")
    return report
