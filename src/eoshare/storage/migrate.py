"""``eoshare storage migrate``: copy every object from one store to another, verifying
each one's sha256 on both sides, so that an operator can move the archive (a local disk
to S3, or back) and then point ``EOSHARE_STORAGE`` at the new store. Nothing else
changes: items keep their ``eoshare:key`` and the API builds hrefs from it.

An object already in the target with the same size and sha256 is skipped, so an
interrupted migration is simply run again."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from eoshare.catalog.base import Catalog
from eoshare.errors import EoshareError, NotFoundError
from eoshare.ingest.checksums import hexdigest_from_multihash
from eoshare.storage.base import Store
from eoshare.storage.verify import sha256_of
from eoshare.workdirs import sweep, workdir


@dataclass
class MigrateReport:
    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _catalogue_checksums(catalog: Catalog | None) -> dict[str, str]:
    sums: dict[str, str] = {}
    if catalog is None:
        return sums
    for item in catalog.iter_items():
        for asset in (item.get("assets") or {}).values():
            if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
                with contextlib.suppress(ValueError):
                    sums[asset["eoshare:key"]] = hexdigest_from_multihash(
                        str(asset.get("file:checksum", ""))
                    )
    return sums


MIGRATE_WORKDIR = "eoshare-migrate-"


def migrate(
    source: Store,
    target: Store,
    *,
    catalog: Catalog | None = None,
    on_object: Callable[[str, int], None] | None = None,
) -> MigrateReport:
    report = MigrateReport()
    expected = _catalogue_checksums(catalog)
    sweep(MIGRATE_WORKDIR)  # what an earlier, killed migrate left in the temporary folder
    with workdir(MIGRATE_WORKDIR) as tmp:
        spool = tmp / "object"
        for key in source.iter_keys():
            try:
                size = source.stat(key).size
                try:
                    there = target.stat(key)
                except NotFoundError:
                    there = None
                same = there is not None and there.size == size
                if same and sha256_of(target, key) == sha256_of(source, key):
                    report.skipped += 1
                    continue
                digest = hashlib.sha256()
                with spool.open("wb") as out:
                    for chunk in source.iter_bytes(key):
                        digest.update(chunk)
                        out.write(chunk)
                src_sha = digest.hexdigest()
                if key in expected and expected[key] != src_sha:
                    raise EoshareError(
                        f"the source object is corrupt: sha256 {src_sha}, "
                        f"catalogue says {expected[key]}"
                    )
                target.put_file(key, spool)
                if sha256_of(target, key) != src_sha:
                    raise EoshareError("the copy in the target does not match the source")
                report.copied += 1
                report.bytes += size
                if on_object is not None:
                    on_object(key, size)
            except EoshareError as exc:
                report.failures.append((key, exc.detail))
    return report
