"""Move a node's state (everything but the catalogue and the archive) between SQLite files
and PostgreSQL: ``eoshare migrate --to postgresql://...`` when a node moves up, and
``eoshare migrate --to sqlite`` (or a folder) when a member leaves.

State is the stores of ``eoshare.statedb``: access (members, users, tokens, sessions,
agreements, acceptances, history, audit, quotas, login failures), orders, uploads, jobs,
disaster (activations, responders, alerts, orbits, products) and peers. Each part is
opened on both sides with its own migrations (so the target has the current schema), then
every table is copied in primary-key order, in batches, as upserts: a run that was
stopped is simply run again. At the end each table is compared: the number of rows and a
SHA-256 over all of them, in primary-key order, must match on both sides.

Staged upload bytes (``<data_dir>/uploads``) and the node's key files stay in the data
folder: they are files, not rows."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eoshare.statedb import Migration, StateDB, is_postgres


@dataclass(frozen=True)
class StatePart:
    """One SQLite file of node state and the components (stores) it holds."""

    file: str
    area: str
    components: tuple[tuple[str, tuple[Migration, ...]], ...]

    @property
    def tables(self) -> list[str]:
        """The tables the components' migrations create, in creation order."""
        names: list[str] = []
        for _, migrations in self.components:
            for m in migrations:
                for name in _CREATE.findall(m.sql):
                    if name not in names:
                        names.append(name)
        return names


_CREATE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


def state_parts() -> list[StatePart]:
    """Every part of a node's state (imported here: the stores sit above this module's
    callers only in the CLI)."""
    from eoshare.access import ratelimit
    from eoshare.access import store as access
    from eoshare.disaster import store as disaster
    from eoshare.downloads import orders, uploads
    from eoshare.federation import mirror, peers
    from eoshare.processing import jobs

    def part(file: str, area: str, *components: tuple[str, Any]) -> StatePart:
        return StatePart(file, area, tuple((c, tuple(m)) for c, m in components))

    return [
        part(
            "access.db",
            "access",
            ("access", access._MIGRATIONS),
            ("login_guard", ratelimit._MIGRATIONS),
        ),
        part("orders.db", "downloads", ("orders", orders._MIGRATIONS)),
        part("uploads.db", "downloads", ("uploads", uploads._MIGRATIONS)),
        part("processing.db", "processing", ("jobs", jobs._MIGRATIONS)),
        part("disaster.db", "disaster", ("disaster", disaster._MIGRATIONS)),
        part(
            "federation.db",
            "federation",
            ("peers", peers._MIGRATIONS),
            ("mirrors", mirror._MIGRATIONS),
        ),
    ]


@dataclass
class TableReport:
    part: str
    table: str
    rows: int = 0
    copied: int = 0
    checksum: str = ""


@dataclass
class StateMigrationReport:
    tables: list[TableReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)


Locate = Callable[[str], "str | Path"]


def _exists(location: str | Path, area: str) -> bool:
    """Whether there is state to read at ``location`` (without creating any)."""
    if not is_postgres(location):
        return Path(location).is_file()
    import psycopg

    with psycopg.connect(str(location), autocommit=True, connect_timeout=30) as conn:
        row = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (area,)
        ).fetchone()
    return row is not None


def _open(part: StatePart, location: str | Path) -> StateDB:
    """The part's database at ``location`` with every component's migrations applied."""
    db: StateDB | None = None
    for component, migrations in part.components:
        if db is None:
            db = StateDB(location, area=part.area, component=component, migrations=migrations)
        else:
            db.component = component
            db.migrate(migrations)
    assert db is not None
    return db


def _columns(db: StateDB, table: str) -> tuple[list[str], list[str]]:
    """The table's columns and its primary key's, in order."""
    if db.postgres:
        cols = [
            r[0]
            for r in db.read(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                (db.area, table),
            )
        ]
        pk = [
            r[0]
            for r in db.read(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = ?::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                (f"{db.area}.{table}",),
            )
        ]
        return cols, pk
    info = db.read(f"PRAGMA table_info({table})")
    cols = [r[1] for r in info]
    pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return cols, pk


def _q(name: str) -> str:
    """An identifier, quoted (a column may be a reserved word: ``window``)."""
    return '"' + name.replace('"', '""') + '"'


def _names(names: list[str]) -> str:
    return ", ".join(_q(n) for n in names)


def _batches(
    db: StateDB, table: str, cols: list[str], pk: list[str], size: int
) -> Iterator[list[Any]]:
    """The table's rows in primary-key order, ``size`` at a time (keyset paging)."""
    select = f"SELECT {_names(cols)} FROM {_q(table)}"
    order = f" ORDER BY {_names(pk)} LIMIT {int(size)}"
    key_at = [cols.index(k) for k in pk]
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            rows = db.read(select + order)
        else:
            marks = ", ".join("?" for _ in pk)
            rows = db.read(f"{select} WHERE ({_names(pk)}) > ({marks}){order}", last)
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][i] for i in key_at)


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def _table_digest(db: StateDB, table: str, cols: list[str], pk: list[str]) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    for rows in _batches(db, table, cols, pk, 5000):
        for row in rows:
            digest.update(orjson.dumps([_canonical(v) for v in row]))
            digest.update(b"\n")
            count += 1
    return count, digest.hexdigest()


def _copy_table(
    source: StateDB, target: StateDB, table: str, cols: list[str], pk: list[str], batch: int
) -> int:
    marks = ", ".join("?" for _ in cols)
    rest = [c for c in cols if c not in pk]
    conflict = (
        f" ON CONFLICT ({_names(pk)}) DO UPDATE SET "
        + ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in rest)
        if rest
        else f" ON CONFLICT ({_names(pk)}) DO NOTHING"
    )
    sql = f"INSERT INTO {_q(table)} ({_names(cols)}) VALUES ({marks}){conflict}"
    copied = 0
    for rows in _batches(source, table, cols, pk, batch):
        with target.tx() as conn:
            conn.executemany(sql, [[_canonical(v) for v in r] for r in rows])
        copied += len(rows)
    if target.postgres:
        # identity columns (INTEGER PRIMARY KEY on SQLite) continue after the copied ids
        for (column,) in target.read(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND "
            "table_name = ? AND is_identity = 'YES'",
            (target.area, table),
        ):
            with target.tx() as conn:
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence(?, ?), "
                    f"coalesce((SELECT max({_q(column)}) FROM {_q(table)}), 0) + 1, false)",
                    (f"{target.area}.{table}", column),
                )
    return copied


def migrate_state(
    source: Locate,
    target: Locate,
    *,
    batch_size: int = 1000,
    progress: Callable[[str, int], None] | None = None,
) -> StateMigrationReport:
    """Copy every part of the node's state from ``source(file)`` to ``target(file)`` (a
    path, or a PostgreSQL URL for every part), then compare every table."""
    report = StateMigrationReport()
    for part in state_parts():
        src_location, dst_location = source(part.file), target(part.file)
        if str(src_location) == str(dst_location):
            report.problems.append(f"{part.file}: the source and the target are the same")
            continue
        if not _exists(src_location, part.area):
            continue  # this node never used it: the store makes it on first use
        src = _open(part, src_location)
        dst = _open(part, dst_location)
        try:
            for table in part.tables:
                cols, pk = _columns(src, table)
                dst_cols, _ = _columns(dst, table)
                if sorted(cols) != sorted(dst_cols) or not pk:
                    report.problems.append(
                        f"{part.file}: table {table} differs between the source and the target"
                    )
                    continue
                copied = _copy_table(src, dst, table, cols, pk, batch_size)
                if progress is not None:
                    progress(f"{part.area}.{table}", copied)
                count, digest = _table_digest(src, table, cols, pk)
                there, theirs = _table_digest(dst, table, cols, pk)
                report.tables.append(TableReport(part.file, table, count, copied, digest))
                if (count, digest) != (there, theirs):
                    report.problems.append(
                        f"{part.area}.{table}: {count} rows in the source, {there} in the "
                        "target" + ("" if count != there else "; their checksums differ")
                    )
        finally:
            src.close()
            dst.close()
    return report


# --- the whole node: catalogue, state and (optionally) the archive ----------------------
@dataclass
class NodeTarget:
    """Where ``eoshare migrate --to`` moves a node."""

    catalog: str  # sqlite:///... or postgresql://...
    # a PostgreSQL URL, the folder of the state's SQLite files, or None: the catalogue only
    state: str | Path | None

    def locate(self, file: str) -> str | Path:
        if self.state is None:
            raise ValueError("this target moves the catalogue only")
        return self.state if isinstance(self.state, str) else self.state / file


def resolve_target(to: str, *, data_dir: Path, database: str | None = None) -> NodeTarget:
    """``--to``: ``postgresql://...`` (the catalogue in pgstac there, the state in its
    schemas, or in ``database``), ``sqlite`` (back into the node's data folder) or a
    folder (``catalog.db`` and the state's files in it); any other catalogue URL
    (``sqlite:///path/catalog.db``) moves the catalogue only."""
    from eoshare.errors import InvalidRequestError

    if is_postgres(to):
        state: str | Path = database or to
        if database is not None and not is_postgres(database):
            state = Path(database)
        return NodeTarget(to, state)
    if database is not None:
        raise InvalidRequestError("--database goes with a PostgreSQL --to only")
    if "://" in to:
        return NodeTarget(to, None)
    folder = data_dir if to == "sqlite" else Path(to)
    return NodeTarget(f"sqlite:///{(folder / 'catalog.db').resolve()}", folder.resolve())


def state_sources(settings: Any) -> Locate:
    """Where the node's state lives now, part by part (``settings``: eoshare's)."""
    paths = {
        "access.db": settings.access_db_path,
        "disaster.db": settings.disaster_db_path,
        "federation.db": settings.federation_db_path,
        "processing.db": (
            Path(settings.processing.db)
            if settings.processing.db
            else settings.data_dir / "processing.db"
        ),
    }

    def locate(file: str) -> str | Path:
        return settings.state_db(Path(paths.get(file, settings.data_dir / file)))  # type: ignore[no-any-return]

    return locate
