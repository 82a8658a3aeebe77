"""``eoshare verify``: compare the store with the catalogue.

Every asset an item holds in the store (``eoshare:key``) must be there (else *missing*),
have the size of ``file:size`` and the sha256 of ``file:checksum`` (else *corrupt*);
every object in the store must belong to an item (else *orphaned*). ``deep=False``
checks sizes only (no reading)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from eoshare.catalog.base import Catalog
from eoshare.errors import NotFoundError
from eoshare.ingest.checksums import hexdigest_from_multihash
from eoshare.storage.base import Store


@dataclass(frozen=True)
class Finding:
    kind: str  # missing | corrupt | orphaned
    key: str
    detail: str = ""
    collection: str | None = None
    item: str | None = None
    asset: str | None = None


@dataclass
class VerifyReport:
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def ok(self) -> bool:
        return not self.findings


def sha256_of(store: Store, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in store.iter_bytes(key):
        digest.update(chunk)
    return digest.hexdigest()


def verify(
    catalog: Catalog,
    store: Store,
    *,
    deep: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    referenced: set[str] = set()
    for item in catalog.iter_items():
        for name, asset in (item.get("assets") or {}).items():
            if not isinstance(asset, dict) or not isinstance(asset.get("eoshare:key"), str):
                continue
            key = asset["eoshare:key"]
            referenced.add(key)
            where = {"collection": item.get("collection"), "item": item.get("id"), "asset": name}
            report.checked += 1
            if on_progress:
                on_progress(key)
            try:
                stat = store.stat(key)
            except NotFoundError:
                report.findings.append(Finding("missing", key, "not in the store", **where))
                continue
            size = asset.get("file:size")
            if isinstance(size, int) and size != stat.size:
                report.findings.append(
                    Finding("corrupt", key, f"size {stat.size}, catalogue says {size}", **where)
                )
                continue
            checksum = asset.get("file:checksum")
            if deep and isinstance(checksum, str):
                try:
                    expected = hexdigest_from_multihash(checksum)
                except ValueError:
                    continue  # another hash function: not ours to check
                actual = sha256_of(store, key)
                if actual != expected:
                    report.findings.append(
                        Finding(
                            "corrupt", key, f"sha256 {actual}, catalogue says {expected}", **where
                        )
                    )
    for key in store.iter_keys():
        if key not in referenced:
            report.findings.append(Finding("orphaned", key, "no item refers to it"))
    return report
