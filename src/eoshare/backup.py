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

A node on PostgreSQL (``EOSHARE_CATALOG`` and/or ``EOSHARE_DATABASE``) gets its databases
copied with PostgreSQL's own tools instead::

    db/catalog.pgdump    ``pg_dump --format=custom`` of the catalogue's database (and of
                         the node state too when ``EOSHARE_DATABASE`` is that database)
    db/state.pgdump      the state database, when it is another one

Each dump is taken in a snapshot exported by a read-only transaction that the backup
holds open; the objects to copy are read from the catalogue *in that same snapshot*, so
the dump and the store manifest describe one moment, as with SQLite. ``restore`` loads a
dump with ``pg_restore --single-transaction --exit-on-error`` into the restoring node's
own (empty) databases: all or nothing. Roles the dump grants to (pgstac's
``pgstac_read``...) are made first where the new server lacks them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
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
# a backup with PostgreSQL dumps (``postgresql`` in the manifest): an older eoshare, which
# would restore only its SQLite part, refuses it
FORMAT_PG = "eoshare-backup/2"
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


def _is_pg(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise InvalidRequestError(
            f"backup cannot copy a catalogue at {url.split('://')[0]}:// (SQLite or PostgreSQL)"
        )
    return Path(url.removeprefix("sqlite:///"))


# --- PostgreSQL: pg_dump / pg_restore ---------------------------------------------------
def pg_tool(name: str) -> str:
    """The newest installed PostgreSQL client program ``name`` (``pg_dump`` must be at
    least the server's version): ``EOSHARE_PG_BIN``, then Debian's versioned folders,
    then the PATH."""
    candidates: list[Path] = []
    if os.environ.get("EOSHARE_PG_BIN"):
        candidates.append(Path(os.environ["EOSHARE_PG_BIN"]) / name)
    versions = Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
    candidates += sorted(
        versions, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, reverse=True
    )
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise InvalidRequestError(
            f"{name} is not installed: the node's databases are in PostgreSQL "
            "(Debian: apt install postgresql-client)"
        )
    return found


def _pg_target(url: str) -> tuple[str, dict[str, str]]:
    """``url`` as a libpq connection string without its password, and the environment
    that carries the password (never on a command line, where ``ps`` shows it)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env


def _same_database(a: str, b: str) -> bool:
    from psycopg.conninfo import conninfo_to_dict

    def key(url: str) -> tuple[str, str, str]:
        d = conninfo_to_dict(url)
        return (str(d.get("host") or ""), str(d.get("port") or "5432"), str(d.get("dbname")))

    return key(a) == key(b)


def _pg_databases(catalog_url: str, database: str) -> dict[str, tuple[str, list[str]]]:
    """The node's PostgreSQL databases: dump name -> (URL, what it holds)."""
    found: dict[str, tuple[str, list[str]]] = {}
    if _is_pg(catalog_url):
        found["catalog.pgdump"] = (catalog_url, ["catalog"])
    if _is_pg(database):
        if found and _same_database(catalog_url, database):
            found["catalog.pgdump"][1].append("state")
        else:
            found["state.pgdump"] = (database, ["state"])
    return found


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise InvalidRequestError(f"{what} failed: {reason}")


@contextlib.contextmanager
def _pg_snapshot(url: str) -> Iterator[tuple[Any, str, int]]:
    """A read-only repeatable-read transaction on ``url``, held open: (its connection,
    the exported snapshot that pg_dump copies, the server's version number)."""
    import psycopg

    try:
        conn = psycopg.connect(url, options="-c search_path=pgstac,public")
    except psycopg.Error as exc:
        raise InvalidRequestError(f"cannot reach the database to back up: {exc}") from exc
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        yield conn, str(row[0]), conn.info.server_version
        conn.rollback()
    finally:
        conn.close()


def _pg_dump(url: str, snapshot: str, target: Path) -> None:
    dsn, env = _pg_target(url)
    _run_tool(
        [pg_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
         f"--file={target}", f"--dbname={dsn}"],
        env, "pg_dump",
    )  # fmt: skip


def _pg_is_empty(url: str) -> bool:
    """No schema or table of anyone's in the database (an extension's own are fine)."""
    import psycopg

    query = """
        SELECT count(*) FROM pg_namespace n
        WHERE n.nspname NOT IN ('public', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                          AND d.objid = n.oid AND d.deptype = 'e')
        UNION ALL
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'e')
    """
    try:
        with psycopg.connect(url) as conn:
            counts = [row[0] for row in conn.execute(query).fetchall()]
    except psycopg.Error as exc:
        raise InvalidRequestError(f"cannot reach the database to restore into: {exc}") from exc
    return not any(counts)


# the role lists of pg_dump's one-line GRANT / REVOKE / ALTER DEFAULT PRIVILEGES statements
_ROLE_LISTS = (
    re.compile(r"^(?:GRANT|ALTER DEFAULT PRIVILEGES)\b.*\bTO (.+?)(?: WITH GRANT OPTION)?;$"),
    re.compile(r"^(?:REVOKE|ALTER DEFAULT PRIVILEGES)\b.*\bFROM (.+?);$"),
    re.compile(r"^ALTER DEFAULT PRIVILEGES FOR ROLE (.+?) (?:IN SCHEMA|GRANT|REVOKE)\b"),
)
_ROLE = re.compile(r'^(?:"((?:[^"]|"")+)"|([A-Za-z_][\w$]*))$')


def _roles_named(sql_text: str) -> set[str]:
    """The roles a dump's privilege statements name (PUBLIC and the like aside)."""
    roles: set[str] = set()
    for line in sql_text.splitlines():
        if not line.startswith(("GRANT ", "REVOKE ", "ALTER DEFAULT PRIVILEGES ")):
            continue
        for pattern in _ROLE_LISTS:
            match = pattern.search(line)
            if match is None:
                continue
            for part in match.group(1).split(","):
                name = _ROLE.match(part.strip())
                if name is None:
                    continue
                role = name.group(1).replace('""', '"') if name.group(1) else name.group(2)
                if role.upper() not in ("PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"):
                    roles.add(role)
    return roles


def _pg_restore(dump: Path, url: str) -> None:
    """Load ``dump`` into the empty database ``url`` in one transaction, after making the
    roles it grants to where this server lacks them (roles belong to a server, not to a
    database, so ``pg_dump`` leaves them out)."""
    import psycopg
    from psycopg import sql

    dsn, env = _pg_target(url)
    listing = subprocess.run(
        [pg_tool("pg_restore"), "--schema-only", "--file=-", str(dump)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        raise InvalidRequestError(f"pg_restore cannot read {dump.name}: {listing.stderr.strip()}")
    roles = _roles_named(listing.stdout)
    if roles:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                have = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
                for role in sorted(roles - have):
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            raise InvalidRequestError(
                f"the dump grants to roles this server lacks ({', '.join(sorted(roles))}) "
                f"and they cannot be made: {exc}"
            ) from exc
    _replay(dump, dsn, env)


# pg_dump empties the search path for the whole restore so that nothing can be resolved
# against a schema planted earlier on it; but pgstac's SQL functions call PostGIS and each
# other unqualified (stac-utils/pgstac#64), and its tables' defaults and indexes run them
# while the dump is replayed. Into a database checked to be empty, the replay runs with
# pgstac's own path instead; nothing else in the dump is changed.
_EMPTY_PATH = b"SELECT pg_catalog.set_config('search_path', '', false);"
_PGSTAC_PATH = b"SELECT pg_catalog.set_config('search_path', 'pgstac, public', false);"


def _replay(dump: Path, dsn: str, env: dict[str, str]) -> None:
    """``pg_restore`` of ``dump`` as SQL, piped through psql in one transaction that
    stops at the first error: all of it or nothing."""
    with tempfile.TemporaryFile() as restore_err, tempfile.TemporaryFile() as psql_err:
        reader = subprocess.Popen(
            [pg_tool("pg_restore"), "--no-owner", "--file=-", str(dump)],
            env=env, stdout=subprocess.PIPE, stderr=restore_err,
        )  # fmt: skip
        writer = subprocess.Popen(
            [pg_tool("psql"), "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1",
             f"--dbname={dsn}", "-f", "-"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_err,
        )  # fmt: skip
        assert reader.stdout is not None and writer.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):  # psql stopped: its error says why
                for line in reader.stdout:
                    writer.stdin.write(
                        _PGSTAC_PATH + b"\n" if line.rstrip() == _EMPTY_PATH else line
                    )
                writer.stdin.close()
        finally:
            reader.stdout.close()
            if reader.wait() != 0 and reader.poll() is not None:
                writer.kill()
            writer.wait()
        for proc, err, what in ((reader, restore_err, "pg_restore"), (writer, psql_err, "psql")):
            if proc.returncode != 0:
                err.seek(0)
                lines = [
                    ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()
                ]
                reason = next((ln for ln in lines if "ERROR" in ln), lines[0] if lines else "")
                raise InvalidRequestError(
                    f"restoring {dump.name} failed ({what}): {reason or proc.returncode}"
                )


def _databases(data_dir: Path, catalog: Path | None, access: Path | None) -> dict[str, Path]:
    """Every SQLite database of the node: the catalogue and access database wherever they
    are configured, and every ``*.db`` in the data directory. ``access`` None: the node
    state is in PostgreSQL, so only the catalogue (when it is SQLite) is taken."""
    found = {"catalog.db": catalog, "access.db": access}
    if access is not None:
        for path in sorted(data_dir.glob("*.db")):
            found.setdefault(path.name, path)
    return {name: path for name, path in found.items() if path is not None and path.is_file()}


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


def _keys_of(items: Iterator[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in items:
        for asset in (item.get("assets") or {}).values():
            if isinstance(asset, dict) and isinstance(asset.get("eoshare:key"), str):
                yield asset["eoshare:key"], asset


def referenced_keys(catalog_db: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The store keys (with their asset) that a catalogue's items refer to."""
    catalog = open_catalog(f"sqlite:///{catalog_db}")
    try:
        yield from _keys_of(catalog.iter_items())
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
    catalog_db = None if _is_pg(catalog_url) else _sqlite_path(catalog_url)
    pg_databases = _pg_databases(catalog_url, database)
    if database and not _is_pg(database):
        raise InvalidRequestError(f"EOSHARE_DATABASE must be a postgresql:// URL, not {database!r}")
    if catalog_db is not None and not catalog_db.is_file():
        raise InvalidRequestError(
            f"there is no catalogue at {catalog_db}: is the data directory right?"
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidRequestError(f"{dest} exists and is not empty: choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    report = BackupReport(dest)
    manifest: dict[str, Any] = {
        "format": FORMAT_PG if pg_databases else FORMAT,
        "eoshare": eoshare.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "databases": {},
        "files": {},
        "store": {"url": store.url, "included": with_store, "objects": {}},
    }
    if pg_databases:
        manifest["postgresql"] = {}
    try:
        with contextlib.ExitStack() as snapshots:
            (work / "db").mkdir()
            catalog_conn: Any = None
            for name, (url, holds) in pg_databases.items():
                conn, snapshot, version = snapshots.enter_context(_pg_snapshot(url))
                _pg_dump(url, snapshot, work / "db" / name)
                manifest["postgresql"][name] = {"holds": holds, "server_version": version}
                if "catalog" in holds:
                    catalog_conn = conn
            # SQLite files: the catalogue when it is one, and the state databases unless
            # the state is in PostgreSQL (then a *.db left in the folder is not the node's)
            databases = _databases(data_dir, catalog_db, None if database else access_db)
            for name, path in databases.items():
                _snapshot(path, work / "db" / name)
            (work / "files").mkdir()
            for path in _state_files(data_dir, databases):
                shutil.copy2(path, work / "files" / path.name)
                manifest["files"][path.name] = {"sha256": _sha256_file(work / "files" / path.name)}
                report.files.append(path.name)
            # the objects that the snapshot of the catalogue refers to: later writes are
            # not in this backup, and their objects need not be
            if catalog_conn is not None:
                from eoshare.catalog.pgstac import items_on

                keys = _keys_of(items_on(catalog_conn))
            else:
                keys = referenced_keys(work / "db" / "catalog.db")
            for key, _asset in keys:
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
        for name in pg_databases:
            target = work / "db" / name
            manifest["postgresql"][name]["sha256"] = _sha256_file(target)
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
    if manifest.get("format") not in (FORMAT, FORMAT_PG):
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
    for name, entry in manifest.get("postgresql", {}).items():
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


def _restore_targets(manifest: dict[str, Any], catalog_url: str, database: str) -> dict[str, str]:
    """Each PostgreSQL dump of the backup -> the database of this node it goes into; the
    backup and the restoring node must keep their catalogue and state on the same engines
    (moving between engines is ``eoshare migrate``'s work, after the restore)."""
    dumps: dict[str, Any] = manifest.get("postgresql", {})
    holds = {what for entry in dumps.values() for what in entry.get("holds", [])}
    for what, url, setting in (
        ("catalog", catalog_url, "EOSHARE_CATALOG"),
        ("state", database, "EOSHARE_DATABASE"),
    ):
        if (what in holds) != _is_pg(url):
            where = "PostgreSQL" if what in holds else "SQLite"
            raise InvalidRequestError(
                f"the backup's {what} is in {where}: set {setting} "
                + ("to an empty PostgreSQL database" if what in holds else "to nothing")
                + " before restoring (then 'eoshare migrate' moves it if you want)"
            )
    targets: dict[str, str] = {}
    for name, entry in dumps.items():
        names = entry.get("holds", [])
        if "catalog" in names and "state" in names and not _same_database(catalog_url, database):
            raise InvalidRequestError(
                "the backup holds the catalogue and the node state in one database: "
                "set EOSHARE_CATALOG and EOSHARE_DATABASE to the same (empty) database"
            )
        targets[name] = catalog_url if "catalog" in names else database
    for name, url in targets.items():
        if not _pg_is_empty(url):
            raise InvalidRequestError(
                f"the database for {name} is not empty: restore into a new database"
            )
    return targets


def restore(
    *,
    source: Path,
    data_dir: Path,
    store: Store,
    catalog_url: str,
    on_object: Callable[[str, int], None] | None = None,
    database: str = "",
) -> RestoreReport:
    """Bring a node back from a backup into an empty ``data_dir`` and the given store
    (and, for a node on PostgreSQL, into its empty databases)."""
    manifest = read_manifest(source)
    check_backup(source, manifest)
    if data_dir.exists() and any(p.name != "store" for p in data_dir.iterdir()):
        raise InvalidRequestError(f"{data_dir} is not empty: restore into a new data directory")
    targets = _restore_targets(manifest, catalog_url, database)
    if "catalog.db" in manifest["databases"] and _is_pg(catalog_url):
        raise InvalidRequestError(
            "the backup's catalogue is SQLite: unset EOSHARE_CATALOG before restoring"
        )
    report = RestoreReport()
    for name, url in targets.items():
        _pg_restore(source / "db" / name, url)
        report.databases.append(name)
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
