"""``eoshare backup`` and ``eoshare restore``: a consistent copy of a node, taken while it
serves, and the node brought back from it.

A backup is a folder::

    manifest.json        what is in it, with a sha256 for every file
    db/<name>.db         every SQLite database of the node (catalogue, access, orders,
                         uploads, and any later ones), each copied with SQLite's online
                         backup API: a snapshot of one moment, whatever writers do
    files/<name>         the node's other state files (signing keys, node identity)
    store/<key>          the asset objects the backed-up catalogue refers to (unless
                         ``--no-store``: then the manifest still lists them, with sizes and
                         checksums, for a store that is backed up by its own means)

It is written into a hidden folder beside the destination and renamed into place at the
end: a backup that was interrupted is never mistaken for a whole one. ``restore`` checks
every checksum before it writes anything, writes into an empty data directory, puts the
objects into the configured store (local or S3) and ends with ``eoshare verify``'s check.

Only embedded (SQLite) state is handled here; a node on PostgreSQL (``EOSHARE_CATALOG``
or ``EOSHARE_DATABASE``) backs its databases up with PostgreSQL's own tools (``pg_dump``,
see docs/deployment.md), and this command says so instead of copying a partial node.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eoshare
from eoshare.catalog import open_catalog
from eoshare.errors import InvalidRequestError, NotFoundError
from eoshare.storage.base import Store

FORMAT = "eoshare-backup/1"
# state files beside the databases: kept; logs and SQLite's side files are not state
_SKIPPED_SUFFIXES = (".db-wal", ".db-shm", ".db-journal", ".log", ".partial", ".tmp")


@dataclass
class BackupReport:
    dest: Path
    databases: dict[str, int] = field(default_factory=dict)  # name -> bytes
    files: list[str] = field(default_factory=list)
    objects: int = 0
    object_bytes: int = 0
    missing: list[str] = field(default_factory=list)  # referenced but absent from the store


@dataclass
class RestoreReport:
    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    objects: int = 0
    object_bytes: int = 0
    problems: list[str] = field(default_factory=list)  # what eoshare verify found after

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise InvalidRequestError(
            f"backup handles SQLite state only; back up {url.split('://')[0]} with its own "
            "tools (PostgreSQL: pg_dump)"
        )
    return Path(url.removeprefix("sqlite:///"))


def _no_state_database(database: str, what: str) -> None:
    if database:
        raise InvalidRequestError(
            f"{what} handles SQLite state only, and this node's state is in PostgreSQL "
            "(EOSHARE_DATABASE): back it up with pg_dump -Fc and restore it with pg_restore "
            "(docs/deployment.md, Backups); not supported by eoshare backup yet"
        )


def _databases(data_dir: Path, catalog: Path, access: Path) -> dict[str, Path]:
    """Every SQLite database of the node: the catalogue and access database wherever they
    are configured, and every ``*.db`` in the data directory."""
    found = {"catalog.db": catalog, "access.db": access}
    for path in sorted(data_dir.glob("*.db")):
        found.setdefault(path.name, path)
    return {name: path for name, path in found.items() if path.is_file()}


def _state_files(data_dir: Path, databases: dict[str, Path]) -> list[Path]:
    db_paths = {p.resolve() for p in databases.values()}
    return [
        p
        for p in sorted(data_dir.iterdir())
        if p.is_file()
        and p.resolve() not in db_paths
        and not p.name.endswith(_SKIPPED_SUFFIXES)
        and not p.name.endswith(".db")
    ]


def _snapshot(source: Path, target: Path) -> None:
    """One consistent copy of a live SQLite database (the online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def referenced_keys(catalog_db: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The store keys (with their asset) that a catalogue's items refer to."""
    catalog = open_catalog(f"sqlite:///{catalog_db}")
    try:
        for item in catalog.iter_items():
            for asset in (item.get("assets") or {}).values():
                if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
                    yield asset["eoshare:key"], asset
    finally:
        catalog.close()


def backup(
    *,
    data_dir: Path,
    catalog_url: str,
    access_db: Path,
    store: Store,
    dest: Path,
    with_store: bool = True,
    on_object: Callable[[str, int], None] | None = None,
    database: str = "",
) -> BackupReport:
    """Back the node up into ``dest`` (which must not exist, or be an empty folder)."""
    catalog_db = _sqlite_path(catalog_url)
    _no_state_database(database, "backup")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidRequestError(f"{dest} exists and is not empty: choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    report = BackupReport(dest)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "eoshare": eoshare.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "databases": {},
        "files": {},
        "store": {"url": store.url, "included": with_store, "objects": {}},
    }
    try:
        (work / "db").mkdir()
        databases = _databases(data_dir, catalog_db, access_db)
        for name, path in databases.items():
            target = work / "db" / name
            _snapshot(path, target)
        (work / "files").mkdir()
        for path in _state_files(data_dir, databases):
            shutil.copy2(path, work / "files" / path.name)
            manifest["files"][path.name] = {"sha256": _sha256_file(work / "files" / path.name)}
            report.files.append(path.name)
        # the objects that the snapshot of the catalogue refers to: later writes are not
        # in this backup, and their objects need not be
        for key, _asset in referenced_keys(work / "db" / "catalog.db"):
            if key in manifest["store"]["objects"]:
                continue
            try:
                entry = _copy_object(store, key, work / "store" if with_store else None)
            except NotFoundError:
                report.missing.append(key)
                continue
            manifest["store"]["objects"][key] = entry
            report.objects += 1
            report.object_bytes += entry["size"]
            if on_object:
                on_object(key, entry["size"])
        # checksums last: reading the catalogue snapshot above may have touched its file
        for name in databases:
            target = work / "db" / name
            for side in target.parent.glob(f"{name}-*"):
                side.unlink()
            manifest["databases"][name] = {"sha256": _sha256_file(target)}
            report.databases[name] = target.stat().st_size
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _copy_object(store: Store, key: str, root: Path | None) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    target = root / key if root is not None else None
    if target is not None:
        if not target.resolve().is_relative_to(root.resolve()):  # type: ignore[union-attr]
            raise InvalidRequestError(f"store key {key!r} leaves its folder")
        target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") if target is not None else open(os.devnull, "wb") as out:
        for chunk in store.iter_bytes(key):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidRequestError(f"{source} is not an eoshare backup (no manifest.json)") from exc
    except ValueError as exc:
        raise InvalidRequestError(f"{path}: not valid JSON") from exc
    if manifest.get("format") != FORMAT:
        raise InvalidRequestError(f"{path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def check_backup(source: Path, manifest: dict[str, Any]) -> None:
    """Every file of the backup has the checksum its manifest says (before any write)."""

    def check(path: Path, expected: str) -> None:
        if not path.is_file():
            raise InvalidRequestError(f"the backup lacks {path.relative_to(source)}")
        if _sha256_file(path) != expected:
            raise InvalidRequestError(f"{path.relative_to(source)} is damaged (sha256 differs)")

    for name, entry in manifest["databases"].items():
        check(source / "db" / _plain_name(name), entry["sha256"])
    for name, entry in manifest["files"].items():
        check(source / "files" / _plain_name(name), entry["sha256"])
    if manifest["store"]["included"]:
        root = (source / "store").resolve()
        for key, entry in manifest["store"]["objects"].items():
            path = (source / "store" / key).resolve()
            if not path.is_relative_to(root):
                raise InvalidRequestError(f"the backup names a store key that leaves it: {key!r}")
            check(path, entry["sha256"])


def _plain_name(name: str) -> str:
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise InvalidRequestError(f"the backup names a file that leaves its folder: {name!r}")
    return name


def restore(
    *,
    source: Path,
    data_dir: Path,
    store: Store,
    catalog_url: str,
    on_object: Callable[[str, int], None] | None = None,
    database: str = "",
) -> RestoreReport:
    """Bring a node back from a backup into an empty ``data_dir`` and the given store."""
    _no_state_database(database, "restore")
    manifest = read_manifest(source)
    check_backup(source, manifest)
    if data_dir.exists() and any(p.name != "store" for p in data_dir.iterdir()):
        raise InvalidRequestError(f"{data_dir} is not empty: restore into a new data directory")
    report = RestoreReport()
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in manifest["databases"]:
        shutil.copy2(source / "db" / name, data_dir / name)
        report.databases.append(name)
    for name in manifest["files"]:
        shutil.copy2(source / "files" / name, data_dir / name)
        report.files.append(name)
    if manifest["store"]["included"]:
        for key, entry in manifest["store"]["objects"].items():
            store.put_file(key, source / "store" / key)
            report.objects += 1
            report.object_bytes += entry["size"]
            if on_object:
                on_object(key, entry["size"])
    # the restored node agrees with its store: nothing missing or corrupt
    from eoshare.storage.verify import verify

    catalog = open_catalog(catalog_url)
    try:
        found = verify(catalog, store)
    finally:
        catalog.close()
    report.problems = [f"{f.kind}: {f.key} {f.detail}".strip() for f in found.findings]
    return report
