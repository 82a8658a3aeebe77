"""Move a catalogue to another backend (``eoshare migrate --to URL``): SQLite to
PostgreSQL/pgstac when a node moves up, and back when a member leaves.

Everything goes through the ``Catalog`` protocol, so any pair of backends works. It is
resumable: collections that exist are compared, items that exist are skipped, so a run
that was stopped is simply run again. At the end every collection's items are compared,
item by item, by a SHA-256 of their canonical JSON: the counts and the checksums must
match, or the report lists what differs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from eoshare.catalog.base import JSON, Catalog
from eoshare.errors import ConflictError


@dataclass
class MigrationReport:
    collections: int = 0
    items: int = 0
    copied: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _numbers_as_floats(value: Any) -> Any:
    """JSON has one number type: 3 and 3.0 are the same (PostGIS writes the first)."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _digest(item: JSON) -> str:
    # links are the server's to write (self, parent...): not part of what is compared
    body = _numbers_as_floats({k: v for k, v in item.items() if k != "links"})
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _digests(catalog: Catalog, collection_id: str) -> dict[str, str]:
    return {item["id"]: _digest(item) for item in catalog.iter_items(collection_id)}


def migrate_catalog(
    source: Catalog,
    target: Catalog,
    *,
    batch_size: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> MigrationReport:
    """Copy every collection and item of ``source`` into ``target``, then verify."""
    report = MigrationReport()
    collections = source.list_collections()
    for doc in collections:
        cid = doc["id"]
        try:
            target.create_collection(doc)
        except ConflictError:
            if target.get_collection(cid) != doc:
                target.update_collection(cid, doc)
        loaded = target.upsert_items(
            source.iter_items(cid), collection_id=cid, on_conflict="skip", batch_size=batch_size
        )
        report.collections += 1
        report.copied += loaded.inserted
        report.skipped += loaded.skipped
        if progress is not None:
            progress(cid, loaded.inserted + loaded.skipped)
    for doc in collections:
        cid = doc["id"]
        theirs, ours = _digests(source, cid), _digests(target, cid)
        report.items += len(theirs)
        if len(theirs) != len(ours):
            report.problems.append(
                f"collection {cid!r}: {len(theirs)} items in the source, {len(ours)} in the target"
            )
        differ = sorted(i for i, d in theirs.items() if ours.get(i) != d)
        if differ:
            report.problems.append(
                f"collection {cid!r}: {len(differ)} items differ after the copy "
                f"(first: {differ[0]!r})"
            )
    return report
