"""The embedded catalogue: SQLite with WAL, an R*Tree over item bboxes, an FTS5 index
for free text, and the item documents stored verbatim as JSON text.

Schema (see ``_SCHEMA``): ``items`` holds the document and the indexed facts; the R*Tree
row id is ``item_rowid * 2 + part`` so that an item crossing the antimeridian has two
boxes and both can be found and deleted by key. Exact spatial tests (the bbox is only a
pre-filter) run in shapely through the ``eo_spatial`` SQL function.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import shapely
from shapely import prepared

from eoshare.catalog import text
from eoshare.catalog.base import JSON, ItemPage, LoadReport, OnConflict, SearchQuery, SortField
from eoshare.catalog.cql2filter import fold_collections, query_to_cql2
from eoshare.catalog.geometry import split_bbox
from eoshare.catalog.prepared import ITEM_COLUMNS, PreparedItem, prepare_item
from eoshare.catalog.queryables import COMMON, queryables_document
from eoshare.catalog.sqlite_bulk import WalCheckpointer
from eoshare.catalog.sqlite_filter import COLUMNS, FilterTranslator, json_path, literal_geometry
from eoshare.catalog.validate import check_collection, iso, parse_datetime
from eoshare.errors import (
    ConflictError,
    InvalidFilterError,
    InvalidItemError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
    database_error,
)
from eoshare.sqlitewal import enable_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    content TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    rowid INTEGER PRIMARY KEY,
    collection TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    dt_start TEXT NOT NULL,
    dt_end TEXT NOT NULL,
    minx REAL, miny REAL, maxx REAL, maxy REAL,
    geom BLOB,
    content TEXT NOT NULL,
    UNIQUE (collection, id)
);
CREATE INDEX IF NOT EXISTS items_dt ON items (dt_start, dt_end);
CREATE INDEX IF NOT EXISTS items_collection_dt ON items (collection, dt_start);
CREATE INDEX IF NOT EXISTS items_id ON items (id);
-- dt_start/dt_end ride along (auxiliary columns) so that a bbox + datetime search
-- drops candidates without reading their (large) item rows
CREATE VIRTUAL TABLE IF NOT EXISTS items_rtree USING rtree (
    key, minx, maxx, miny, maxy, +dt_start, +dt_end
);
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5 (
    text, tokenize = 'unicode61 remove_diacritics 2'
);
-- items per collection, kept with every write: numberMatched of a search that only
-- pages through collections (with a visibility filter) is a sum, not a scan
CREATE TABLE IF NOT EXISTS collection_counts (
    collection TEXT PRIMARY KEY REFERENCES collections(id) ON DELETE CASCADE,
    n INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queryables (
    collection TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (collection, name, type)
);
"""

# Memory of the catalogue in a server process: at most POOL_SIZE connections (threads
# beyond that wait for one: SQLite answers in milliseconds and the machine has few cores),
# each with a page cache of CACHE_KIB and its own mapping of the first MMAP_BYTES of the
# file. The bound is POOL_SIZE * CACHE_KIB of heap plus file pages the OS can reclaim;
# before the pool every thread that ever ran a query kept a connection with 64 MiB.
POOL_SIZE = 8
CACHE_KIB = 16 * 1024
MMAP_BYTES = 256 * 1024 * 1024

# catalogues up to this many items always get an exact numberMatched (no time budget)
_EXACT_COUNT_ITEMS = 50_000

# _count_by_collection's answer for a search it cannot count
_NOT_APPLICABLE = object()

# a search whose index candidates (R*Tree boxes, ids) are at most this many is read whole:
# the page and an exact numberMatched from one pass, no separate count
_ONE_PASS_ROWS = 5000


class _Query:
    """Prepared geometry cache shared by the SQL functions of one catalogue."""

    @staticmethod
    @lru_cache(maxsize=256)
    def geometry(wkb: bytes) -> Any:
        return prepared.prep(shapely.from_wkb(wkb))


def _eo_spatial(op: str, item_wkb: bytes | None, query_wkb: bytes) -> int:
    if item_wkb is None:
        return 0
    q = _Query.geometry(query_wkb)
    g = shapely.from_wkb(item_wkb)
    if op == "s_intersects":
        return int(q.intersects(g))
    if op == "s_disjoint":
        return int(q.disjoint(g))
    if op == "s_within":  # item within query
        return int(q.contains(g))
    if op == "s_contains":  # item contains query
        return int(q.within(g))
    qg = q.context
    result = {
        "s_equals": g.equals,
        "s_touches": g.touches,
        "s_overlaps": g.overlaps,
        "s_crosses": g.crosses,
    }[op](qg)
    return int(result)


def _eo_ts(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return iso(parse_datetime(value))
    except InvalidRequestError:
        return value


def fts_query(terms: Iterable[str]) -> str:
    """Free-text terms (OR-ed, each a phrase) as an FTS5 MATCH expression."""
    phrases = []
    for term in terms:
        words = re.findall(r"\w+", term)
        if words:
            phrases.append('"' + " ".join(words) + '"')
    return " OR ".join(phrases)


class SqliteCatalog:
    """The default ``Catalog`` backend. Safe to share between threads: a thread borrows
    one of at most ``pool_size`` connections for each call (``_use``); SQLite's WAL lets
    readers run beside one writer."""

    def __init__(
        self,
        path: str | Path,
        *,
        count_limit: int = 100_000,
        count_budget_s: float = 0.02,
        pool_size: int = POOL_SIZE,
        cache_kib: int = CACHE_KIB,
        mmap_bytes: int = MMAP_BYTES,
    ) -> None:
        self.path = str(path)
        self._uri = False
        if self.path == ":memory:":
            # every thread has its own connection: share one named in-memory database
            self.path = f"file:eoshare-{id(self)}?mode=memory&cache=shared"
            self._uri = True
        # numberMatched is counted up to this many rows, then left out
        self.count_limit = count_limit
        # ...and for at most this long, plus twice what the page took (see _count)
        self.count_budget_s = count_budget_s
        if not self._uri:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # a bounded pool of connections (see _use): each has its own page cache and its
        # own mapping of the file, so one connection per thread that ever ran a query
        # grew the server's memory with every new thread
        self.pool_size = max(1, pool_size)
        self.cache_kib = cache_kib
        self.mmap_bytes = mmap_bytes
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._checkpointer: WalCheckpointer | None = None  # during bulk_load()
        with self._use() as conn:
            self._migrate(conn)

    # --- schema -------------------------------------------------------------------------
    SCHEMA_VERSION = 3

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema, or bring an older catalogue file up to date.

        Version 2 added dt_start/dt_end to the R*Tree; it is rebuilt from the items.
        Version 3 added the per-collection item counts, counted once here."""
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        rebuild = (
            version < 2
            and conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'items_rtree'").fetchone()
            is not None
        )
        if rebuild:
            # rebuilt below; a crash in between leaves user_version < 2: done again
            conn.execute("DROP TABLE items_rtree")
        conn.executescript(_SCHEMA)
        if rebuild:
            with self._write() as w:
                w.execute(
                    "INSERT INTO items_rtree SELECT rowid * 2, minx, "
                    "CASE WHEN minx > maxx THEN 180.0 ELSE maxx END, miny, maxy, dt_start, "
                    "dt_end FROM items WHERE minx IS NOT NULL"
                )
                w.execute(
                    "INSERT INTO items_rtree SELECT rowid * 2 + 1, -180.0, maxx, miny, maxy, "
                    "dt_start, dt_end FROM items WHERE minx > maxx"
                )
        if version < 3:
            with self._write() as w:
                w.execute("DELETE FROM collection_counts")
                w.execute(
                    "INSERT INTO collection_counts SELECT collection, count(*) FROM items "
                    "GROUP BY collection"
                )
        conn.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")

    # --- connections ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=30.0,
                check_same_thread=False,
                isolation_level=None,
                uri=self._uri,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open catalogue {self.path}: {exc}") from exc
        enable_wal(conn)  # several processes opening a new file at once (eoshare.sqlitewal)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size=-{int(self.cache_kib)}")
        conn.execute(f"PRAGMA mmap_size={int(self.mmap_bytes)}")
        # CQL2 LIKE is case-sensitive (CASEI() on both sides makes it insensitive);
        # SQLite's LIKE would otherwise ignore ASCII case and only ASCII case
        conn.execute("PRAGMA case_sensitive_like=ON")
        conn.create_function("eo_spatial", 3, _eo_spatial, deterministic=True)
        conn.create_function("eo_ts", 1, _eo_ts, deterministic=True)
        # CQL2 casei/accenti: Unicode, not SQLite's ASCII-only lower() (catalog/text.py)
        conn.create_function("eo_casei", 1, text.casei, deterministic=True)
        conn.create_function("eo_accenti", 1, text.accenti, deterministic=True)
        return conn

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """A connection for the duration of one call. A thread that holds one already
        (a read inside a write transaction) gets the same one; otherwise an idle one
        (the most recently used: its cache is warm), a new one while fewer than
        ``pool_size`` exist, or it waits for one to come back."""
        held: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if held is not None:
            self._local.depth += 1
            try:
                yield held
            finally:
                self._local.depth -= 1
            return
        conn: sqlite3.Connection | None = None
        with self._freed:
            while conn is None:
                if self._idle:
                    conn = self._idle.pop()
                elif len(self._all) < self.pool_size:
                    conn = self._connect()
                    self._all.append(conn)
                else:
                    self._freed.wait()
        self._local.conn = conn
        self._local.depth = 1
        try:
            yield conn
        finally:
            self._local.conn = None
            with self._freed:
                if conn in self._all:  # not closed meanwhile
                    self._idle.append(conn)
                    self._freed.notify()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back whole on any error."""
        with self._use() as conn:
            # a bulk load (bulk_load): the WAL is checkpointed by a thread of its own
            checkpointer = self._checkpointer
            try:
                if checkpointer is not None:
                    checkpointer.before_write(conn)
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if checkpointer is not None:
                    checkpointer.committed(conn)
                raise StorageError(f"catalogue is not writable: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk): nothing to undo then
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise database_error("cannot write the catalogue", exc) from exc
                raise
            finally:
                if checkpointer is not None:
                    checkpointer.committed(conn)

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """While many batches are written one after the other (``eoshare load``): the
        WAL is checkpointed by a thread of its own beside the writer, instead of by
        the committing writer itself (see ``catalog/sqlite_bulk.py``)."""
        if self._uri or self._checkpointer is not None:  # in memory: no WAL; nested
            yield
            return
        self._checkpointer = WalCheckpointer(self._connect)
        try:
            yield
        finally:
            checkpointer, self._checkpointer = self._checkpointer, None
            checkpointer.close()
            with self._lock:  # the writer's connection: its usual page cache again
                for conn in self._idle:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA cache_size=-{int(self.cache_kib)}")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
            self._idle.clear()
        self._local = threading.local()

    # --- collections ------------------------------------------------------------------
    def list_collections(self) -> list[JSON]:
        with self._use() as conn:
            rows = conn.execute("SELECT content FROM collections ORDER BY id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def get_collection(self, collection_id: str) -> JSON:
        with self._use() as conn:
            row = conn.execute(
                "SELECT content FROM collections WHERE id = ?", (collection_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"collection {collection_id!r} does not exist")
        return dict(orjson.loads(row[0]))

    def create_collection(self, collection: JSON) -> JSON:
        cid = check_collection(collection)
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO collections (id, content) VALUES (?, ?)",
                    (cid, orjson.dumps(collection).decode()),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"collection {cid!r} already exists") from exc
        return collection

    def update_collection(self, collection_id: str, collection: JSON) -> JSON:
        cid = check_collection(collection)
        if cid != collection_id:
            raise InvalidItemError(
                f"the collection's id {cid!r} does not match the URL's {collection_id!r}"
            )
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE collections SET content = ? WHERE id = ?",
                (orjson.dumps(collection).decode(), cid),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"collection {collection_id!r} does not exist")
        return collection

    def delete_collection(self, collection_id: str) -> None:
        with self._write() as conn:
            self.get_collection(collection_id)
            conn.execute(
                "DELETE FROM items_rtree WHERE key IN (SELECT rowid * 2 FROM items WHERE "
                "collection = ? UNION ALL SELECT rowid * 2 + 1 FROM items WHERE collection = ?)",
                (collection_id, collection_id),
            )
            conn.execute(
                "DELETE FROM items_fts WHERE rowid IN "
                "(SELECT rowid FROM items WHERE collection = ?)",
                (collection_id,),
            )
            conn.execute("DELETE FROM items WHERE collection = ?", (collection_id,))
            conn.execute("DELETE FROM queryables WHERE collection = ?", (collection_id,))
            conn.execute("DELETE FROM collection_counts WHERE collection = ?", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    def collection_extent(self, collection_id: str) -> JSON | None:
        with self._use() as conn:
            row = conn.execute(
                "SELECT count(*), min(minx), min(miny), max(maxx), max(maxy), min(dt_start), "
                "max(dt_end), sum(minx > maxx) FROM items WHERE collection = ?",
                (collection_id,),
            ).fetchone()
        if not row or not row[0]:
            return None
        _, minx, miny, maxx, maxy, start, end, crossing = row
        if crossing:
            minx, maxx = -180.0, 180.0
        spatial = [[minx, miny, maxx, maxy]] if minx is not None else [[-180.0, -90.0, 180.0, 90.0]]
        return {
            "spatial": {"bbox": spatial},
            "temporal": {"interval": [[_stac_time(start), _stac_time(end)]]},
        }

    # --- items ------------------------------------------------------------------------
    def get_item(self, collection_id: str, item_id: str, *, visible: JSON | None = None) -> JSON:
        sql = "SELECT content FROM items WHERE collection = ? AND id = ?"
        params: list[Any] = [collection_id, item_id]
        if visible is not None:
            folded = fold_collections(visible, frozenset((collection_id,)))
            if folded is not True:
                tr = FilterTranslator()
                sql += " AND " + tr.translate(folded)
                params += tr.params
        with self._use() as conn:
            row = conn.execute(sql, params).fetchone()
        if row is None:
            raise NotFoundError(f"item {item_id!r} does not exist in collection {collection_id!r}")
        return dict(orjson.loads(row[0]))

    def create_item(self, collection_id: str, item: JSON) -> JSON:
        self.upsert_items([item], collection_id=collection_id, on_conflict="error")
        return self.get_item(collection_id, item["id"])

    def update_item(self, collection_id: str, item_id: str, item: JSON) -> JSON:
        if item.get("id") != item_id:
            raise InvalidItemError(
                f"the item's id {item.get('id')!r} does not match the URL's {item_id!r}"
            )
        self.get_item(collection_id, item_id)
        self.upsert_items([item], collection_id=collection_id, on_conflict="update")
        return self.get_item(collection_id, item_id)

    def delete_item(self, collection_id: str, item_id: str) -> None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT rowid FROM items WHERE collection = ? AND id = ?", (collection_id, item_id)
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"item {item_id!r} does not exist in collection {collection_id!r}"
                )
            self._unindex(conn, row[0])
            conn.execute("DELETE FROM items WHERE rowid = ?", (row[0],))
            conn.execute(
                "UPDATE collection_counts SET n = n - 1 WHERE collection = ?", (collection_id,)
            )

    @staticmethod
    def _unindex(conn: sqlite3.Connection, rowid: int) -> None:
        conn.execute("DELETE FROM items_rtree WHERE key IN (?, ?)", (rowid * 2, rowid * 2 + 1))
        conn.execute("DELETE FROM items_fts WHERE rowid = ?", (rowid,))

    def upsert_items(
        self,
        items: Iterable[JSON],
        *,
        collection_id: str | None = None,
        on_conflict: OnConflict = "error",
        batch_size: int = 1000,
        on_invalid: Callable[[JSON, InvalidItemError], None] | None = None,
    ) -> LoadReport:
        report = LoadReport()
        batch: list[JSON] = []
        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                self._write_batch(batch, collection_id, on_conflict, report, on_invalid)
                batch = []
        if batch:
            self._write_batch(batch, collection_id, on_conflict, report, on_invalid)
        return report

    def _write_batch(
        self,
        batch: list[JSON],
        collection_id: str | None,
        on_conflict: OnConflict,
        report: LoadReport,
        on_invalid: Callable[[JSON, InvalidItemError], None] | None = None,
    ) -> None:
        rows: list[PreparedItem] = []
        for item in batch:
            try:
                row, _ = prepare_item(item, collection_id)
            except InvalidItemError as exc:
                if on_invalid is None:
                    raise
                on_invalid(item, exc)
                report.invalid += 1
                continue
            rows.append(row)
        written = self.write_prepared(rows, on_conflict=on_conflict)
        report.inserted += written.inserted
        report.updated += written.updated
        report.skipped += written.skipped

    def existing_keys(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (collection, id) pairs of ``keys`` that are in the catalogue."""
        by_collection: dict[str, list[str]] = {}
        for cid, iid in keys:
            by_collection.setdefault(cid, []).append(iid)
        found: set[tuple[str, str]] = set()
        with self._use() as conn:
            for cid, ids in by_collection.items():
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    found.update(
                        (cid, r[0])
                        for r in conn.execute(
                            "SELECT id FROM items WHERE collection = ? AND id IN "
                            f"({', '.join('?' * len(part))})",
                            [cid, *part],
                        )
                    )
        return found

    def write_prepared(
        self, rows: list[PreparedItem], *, on_conflict: OnConflict = "error"
    ) -> LoadReport:
        """Write items already checked by ``prepare_item``, in one transaction: the new
        ones with one ``executemany`` per table (row ids given here, under the write
        lock), an existing one as ``on_conflict`` says (``error``: ConflictError and
        nothing is written). An item twice in ``rows`` is written once, then treated as
        existing. Called by ``upsert_items`` and by ``eoshare load``'s writer."""
        report = LoadReport()
        if not rows:
            return report
        with self._write() as conn:
            for cid in sorted({r.collection for r in rows}):
                if (
                    conn.execute("SELECT 1 FROM collections WHERE id = ?", (cid,)).fetchone()
                    is None
                ):
                    raise NotFoundError(
                        f"collection {cid!r} does not exist (create it first, or load "
                        "with --create-collections)"
                    )
            existing: dict[tuple[str, str], int] = {}
            by_collection: dict[str, list[str]] = {}
            for r in rows:
                by_collection.setdefault(r.collection, []).append(r.id)
            for cid, ids in by_collection.items():
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    for iid, rowid in conn.execute(
                        "SELECT id, rowid FROM items WHERE collection = ? AND id IN "
                        f"({', '.join('?' * len(part))})",
                        [cid, *part],
                    ):
                        existing[(cid, iid)] = rowid
            (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM items").fetchone()
            new: dict[tuple[str, str], tuple[int, PreparedItem]] = {}
            updates: dict[int, PreparedItem] = {}  # row id -> the item's last version
            for r in rows:
                key = (r.collection, r.id)
                if key not in existing and key not in new:
                    last += 1
                    new[key] = (last, r)
                    continue
                if on_conflict == "error":
                    raise ConflictError(
                        f"item {r.id!r} already exists in collection {r.collection!r}"
                    )
                if on_conflict == "skip":
                    report.skipped += 1
                    continue
                report.updated += 1
                if key in new:  # twice in this batch: the later one wins
                    new[key] = (new[key][0], r)
                else:
                    updates[existing[key]] = r
            report.inserted = len(new)
            for rowid in updates:
                self._unindex(conn, rowid)
            conn.executemany(
                "UPDATE items SET dt_start = ?, dt_end = ?, minx = ?, miny = ?, maxx = ?,"
                " maxy = ?, geom = ?, content = CAST(? AS TEXT) WHERE rowid = ?",
                [(*r[2:ITEM_COLUMNS], rowid) for rowid, r in updates.items()],
            )
            written = [*new.values(), *updates.items()]
            # (the content comes as UTF-8 bytes: stored as TEXT, for SQLite's JSON functions)
            conn.executemany(
                "INSERT INTO items (rowid, collection, id, dt_start, dt_end, minx, miny, maxx,"
                " maxy, geom, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TEXT))",
                [(rowid, *r[:ITEM_COLUMNS]) for rowid, r in new.values()],
            )
            rtree_rows: list[tuple[int, float, float, float, float, str, str]] = []
            for rowid, r in written:
                minx, miny, maxx, maxy = r.minx, r.miny, r.maxx, r.maxy
                if minx is None or miny is None or maxx is None or maxy is None:
                    continue
                if minx <= maxx:
                    rtree_rows.append((rowid * 2, minx, maxx, miny, maxy, r[2], r[3]))
                else:  # across the antimeridian: two boxes (split_bbox)
                    rtree_rows.append((rowid * 2, minx, 180.0, miny, maxy, r[2], r[3]))
                    rtree_rows.append((rowid * 2 + 1, -180.0, maxx, miny, maxy, r[2], r[3]))
            conn.executemany("INSERT INTO items_rtree VALUES (?, ?, ?, ?, ?, ?, ?)", rtree_rows)
            conn.executemany(
                "INSERT INTO items_fts (rowid, text) VALUES (?, ?)",
                [(rowid, r.fts) for rowid, r in written],
            )
            kinds = {(r.collection, r.properties) for _, r in written}  # mostly alike
            qrows = {(cid, name, typ) for cid, props in kinds for name, typ in props}
            conn.executemany("INSERT OR IGNORE INTO queryables VALUES (?, ?, ?)", sorted(qrows))
            new_per_collection: dict[str, int] = {}
            for key in new:
                new_per_collection[key[0]] = new_per_collection.get(key[0], 0) + 1
            conn.executemany(
                "INSERT INTO collection_counts VALUES (?, ?) ON CONFLICT (collection) "
                "DO UPDATE SET n = n + excluded.n",
                sorted(new_per_collection.items()),
            )
        return report

    def iter_items(self, collection_id: str | None = None) -> Iterator[JSON]:
        last = 0
        while True:
            sql = "SELECT rowid, content FROM items WHERE rowid > ?"
            params: list[Any] = [last]
            if collection_id is not None:
                sql += " AND collection = ?"
                params.append(collection_id)
            # a connection per batch: the generator may be resumed in another thread
            with self._use() as conn:
                rows = conn.execute(sql + " ORDER BY rowid LIMIT 1000", params).fetchall()
            if not rows:
                return
            for _, content in rows:
                yield orjson.loads(content)
            last = rows[-1][0]

    # --- queryables -------------------------------------------------------------------
    def _property_types(self, collections: tuple[str, ...]) -> dict[str, set[str]]:
        sql = "SELECT name, type FROM queryables"
        params: list[Any] = []
        if collections:
            sql += f" WHERE collection IN ({', '.join('?' * len(collections))})"
            params = list(collections)
        types: dict[str, set[str]] = {}
        with self._use() as conn:
            for name, typ in conn.execute(sql, params):
                types.setdefault(name, set()).add(typ)
        return types

    def queryables(self, collection_id: str | None = None) -> JSON:
        if collection_id is not None:
            self.get_collection(collection_id)
        return queryables_document(self._property_types((collection_id,) if collection_id else ()))

    # --- search -----------------------------------------------------------------------
    def search(self, query: SearchQuery) -> ItemPage:
        with self._use() as conn:
            return self._search(conn, query)

    def _search(self, conn: sqlite3.Connection, query: SearchQuery) -> ItemPage:
        where, params = self._where(query)
        order = self._order(query.sortby, query)
        # Two steps: order and cut the page on row ids, then read the page's documents.
        # A document is the last column, in overflow pages of its own, so the first step
        # reads only the small head of each matching row (ids, times, bbox, footprint)
        # instead of sorting every match's whole document.
        started = time.perf_counter()
        matched: int | None = None
        counted = False
        try:
            if query.count and self._few_candidates(conn, query):
                # Few rows can match (a small box, a few ids): read all of them once, in
                # order, and both the page and numberMatched come from that one pass.
                sql = f"SELECT rowid FROM items WHERE {where} ORDER BY {order[0]}"
                every = [r[0] for r in conn.execute(sql, [*params, *order[1]]).fetchall()]
                counted = True
                matched = len(every) if len(every) <= self.count_limit else None
                rowids = every[query.offset : query.offset + query.limit + 1]
            else:
                sql = f"SELECT rowid FROM items WHERE {where} ORDER BY {order[0]} LIMIT ? OFFSET ?"
                rowids = [
                    r[0]
                    for r in conn.execute(
                        sql, [*params, *order[1], query.limit + 1, query.offset]
                    ).fetchall()
                ]
        except sqlite3.OperationalError as exc:
            raise _translate(exc) from exc
        has_more = len(rowids) > query.limit
        rowids = rowids[: query.limit]
        docs: dict[int, Any] = {}
        if rowids:
            marks = ", ".join("?" * len(rowids))
            docs = dict(
                conn.execute(
                    f"SELECT rowid, content FROM items WHERE rowid IN ({marks})", rowids
                ).fetchall()
            )
        page_s = time.perf_counter() - started
        items = [orjson.loads(docs[r]) for r in rowids if r in docs]
        if query.count and not counted:
            if query.offset == 0 and not has_more:
                matched = len(items)
            else:
                by_collection = self._count_by_collection(conn, query)
                if by_collection is not _NOT_APPLICABLE:
                    matched = by_collection
                else:
                    # a count that cannot finish about as fast as the page did is given
                    # up: it must not cost the page (numberMatched is optional)
                    matched = self._count(
                        conn, where, params, min(self.count_budget_s, max(page_s, 0.002))
                    )
        prev_offset = max(query.offset - query.limit, 0) if query.offset > 0 else None
        return ItemPage(
            items=items,
            number_matched=matched,
            next_offset=query.offset + query.limit if has_more else None,
            prev_offset=prev_offset,
        )

    def _few_candidates(self, conn: sqlite3.Connection, query: SearchQuery) -> bool:
        """Whether an index bounds the rows a search can match to ``_ONE_PASS_ROWS`` or
        fewer (the R*Tree for a box or a footprint, the id index for ids): counted there
        without reading an item row. Then reading every match costs about what a page
        does, and the exact count comes with it."""
        if query.filter is not None or query.query or query.q:
            # a filter on document properties reads each candidate's document: a page
            # that stops at its limit may read far fewer than every candidate
            return False
        if query.ids:
            marks = ", ".join("?" * len(query.ids))
            (n,) = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM items INDEXED BY items_id "
                f"WHERE id IN ({marks}) LIMIT ?)",
                [*query.ids, _ONE_PASS_ROWS + 1],
            ).fetchone()
            return bool(n <= _ONE_PASS_ROWS)
        boxes = self._boxes(query)
        if not boxes:
            return False
        n = 0
        for x0, y0, x1, y1 in boxes:
            box_sql = "SELECT 1 FROM items_rtree WHERE minx <= ? AND maxx >= ? AND miny <= ?"
            box_sql += " AND maxy >= ?"
            box_params: list[Any] = [x1, x0, y1, y0]
            if query.datetime_start is not None:
                box_sql += " AND dt_end >= ?"
                box_params.append(iso(query.datetime_start))
            if query.datetime_end is not None:
                box_sql += " AND dt_start <= ?"
                box_params.append(iso(query.datetime_end))
            (k,) = conn.execute(
                f"SELECT count(*) FROM ({box_sql} LIMIT ?)", [*box_params, _ONE_PASS_ROWS + 1]
            ).fetchone()
            n += k
        return bool(n <= _ONE_PASS_ROWS)

    @staticmethod
    def _boxes(query: SearchQuery) -> list[tuple[float, float, float, float]]:
        """The R*Tree boxes a search's bbox / intersects is looked up with."""
        if query.bbox is not None:
            return split_bbox(query.bbox)
        if query.intersects is not None:
            minx, miny, maxx, maxy = literal_geometry(query.intersects).bounds
            return [(minx, miny, maxx, maxy)]
        return []

    def _count_by_collection(self, conn: sqlite3.Connection, query: SearchQuery) -> Any:
        """numberMatched of a search that only pages through collections (the commonest
        big count), from the kept per-collection counts: the visibility filter is folded
        for each collection, so a collection the caller sees whole adds its count, a
        hidden one nothing, and only a partly visible one (an embargo) is counted, along
        its (collection, datetime) index. ``_NOT_APPLICABLE`` for any other search."""
        if (
            query.bbox is not None
            or query.intersects is not None
            or query.ids
            or query.filter is not None
            or query.query
            or query.q
            or query.datetime_start is not None
            or query.datetime_end is not None
        ):
            return _NOT_APPLICABLE
        counts: dict[str, int] = dict(
            conn.execute("SELECT collection, n FROM collection_counts").fetchall()
        )
        total = 0
        for cid in set(query.collections or counts):
            n = counts.get(cid, 0)
            if n <= 0:
                continue
            visible = (
                True
                if query.visible is None
                else fold_collections(query.visible, frozenset((cid,)))
            )
            if visible is True:
                total += n
            elif visible is not False:
                tr = FilterTranslator()
                condition = tr.translate(visible)
                (k,) = conn.execute(
                    f"SELECT count(*) FROM items WHERE items.collection = ? AND {condition}",
                    [cid, *tr.params],
                ).fetchone()
                total += int(k)
        return None if total > self.count_limit else total

    def _count(
        self, conn: sqlite3.Connection, where: str, params: list[Any], budget_s: float
    ) -> int | None:
        """How many items match, or None when that is over ``count_limit`` or takes
        longer than ``budget_s`` (numberMatched is optional in STAC API).

        The time bound matters for filters that no index serves (a property inside the
        JSON document): counting them reads every item, seconds for a large catalogue,
        when the page itself needed only a few rows. ``search`` grants what the page took
        (at most ``count_budget_s``): a count given up costs at most one more page, and a
        count over the same rows as a page that had to read them all still completes."""
        cap = self.count_limit
        deadline = time.perf_counter() + budget_s
        calls = 0
        (size,) = conn.execute("SELECT coalesce(sum(n), 0) FROM collection_counts").fetchone()

        def over_budget() -> int:
            # SQLite calls this every 100 virtual-machine steps (5 to 10 per row);
            # non-zero interrupts the query, never within the first 1000 steps.
            nonlocal calls
            calls += 1
            return int(calls > 10 and time.perf_counter() > deadline)

        # A small catalogue is always counted exactly, however busy the machine; the
        # budget is for large ones, where a filter on a document property would read
        # every document.
        if size > _EXACT_COUNT_ITEMS:
            conn.set_progress_handler(over_budget, 100)
        try:
            (matched,) = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM items WHERE {where} LIMIT ?)",
                [*params, cap + 1],
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc) and over_budget():
                return None
            raise _translate(exc) from exc
        finally:
            conn.set_progress_handler(None, 0)
        return None if matched > cap else int(matched)

    def _known(self, collections: tuple[str, ...]) -> Callable[[str], bool]:
        types = self._property_types(collections)

        def known(name: str) -> bool:
            return name in COLUMNS or name == "geometry" or name in types or name in COMMON

        return known

    def _where(self, query: SearchQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.collections:
            # With ids, the id index is the one to use: the unary "+" keeps SQLite off the
            # (collection, datetime) index, which it would otherwise pick and then read
            # the whole collection (484 ms for 5 ids at 100k items, against 4 ms).
            column = "+items.collection" if query.ids else "items.collection"
            clauses.append(f"{column} IN ({', '.join('?' * len(query.collections))})")
            params += query.collections
        if query.ids:
            clauses.append(f"items.id IN ({', '.join('?' * len(query.ids))})")
            params += query.ids
        if query.datetime_start is not None:
            clauses.append("items.dt_end >= ?")
            params.append(iso(query.datetime_start))
        if query.datetime_end is not None:
            clauses.append("items.dt_start <= ?")
            params.append(iso(query.datetime_end))
        boxes: list[tuple[float, float, float, float]] = []
        geom = None
        if query.bbox is not None:
            boxes = split_bbox(query.bbox)
            geom = literal_geometry({"bbox": list(query.bbox)})
        if query.intersects is not None:
            geom2 = literal_geometry(query.intersects)
            geom = geom2 if geom is None else geom.intersection(geom2)
            if query.bbox is None:
                minx, miny, maxx, maxy = geom2.bounds
                boxes = [(minx, miny, maxx, maxy)]
            if geom.is_empty:
                clauses.append("0")
        if boxes:
            box_sql = "SELECT key >> 1 FROM items_rtree"
            box_sql += " WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?"
            dt_params: list[Any] = []
            if query.datetime_start is not None:
                box_sql += " AND dt_end >= ?"
                dt_params.append(iso(query.datetime_start))
            if query.datetime_end is not None:
                box_sql += " AND dt_start <= ?"
                dt_params.append(iso(query.datetime_end))
            clauses.append(f"items.rowid IN ({' UNION ALL '.join(box_sql for _ in boxes)})")
            for x0, y0, x1, y1 in boxes:
                params += [x1, x0, y1, y0, *dt_params]
        if geom is not None and not geom.is_empty:
            clauses.append("eo_spatial('s_intersects', items.geom, ?)")
            params.append(shapely.to_wkb(geom))
        if query.q:
            match = fts_query(query.q)
            if match:
                clauses.append(
                    "items.rowid IN (SELECT rowid FROM items_fts WHERE items_fts MATCH ?)"
                )
                params.append(match)
            else:
                clauses.append("0")
        # the visibility filter (collections, dates: columns) before the search's own
        # filter, which may read each row's document: SQLite tests the terms in order
        if query.visible is not None:
            visible = fold_collections(query.visible, frozenset(query.collections))
            if visible is not True:
                tr = FilterTranslator()
                clauses.append(tr.translate(visible))
                params += tr.params
        if query.filter is not None:
            tr = FilterTranslator(self._known(query.collections))
            clauses.append(tr.translate(query.filter))
            params += tr.params
        if query.query:
            types = self._property_types(query.collections)
            legacy = query_to_cql2(
                query.query, lambda name: types.get(name, set()) - {"null"} == {"number"}
            )
            if legacy is not None:
                tr = FilterTranslator(self._known(query.collections))
                clauses.append(tr.translate(legacy))
                params += tr.params
        return (" AND ".join(clauses) or "1"), params

    def _order(self, sortby: tuple[SortField, ...], query: SearchQuery) -> tuple[str, list[Any]]:
        if not sortby:
            return "items.dt_start DESC, items.rowid DESC", []
        known = self._known(query.collections)
        terms: list[str] = []
        params: list[Any] = []
        for s in sortby:
            name = s.field.removeprefix("properties.")
            if name == "geometry" or not known(name):
                raise InvalidRequestError(
                    f"cannot sort by {s.field!r}: it is not a sortable queryable"
                )
            if name in COLUMNS:
                expr = COLUMNS[name]
            else:
                expr = "json_extract(items.content, ?)"
                params.append(json_path(name))
            terms.append(f"{expr} {'ASC' if s.ascending else 'DESC'}")
        terms.append("items.rowid ASC")
        return ", ".join(terms), params


def _stac_time(value: str | None) -> str | None:
    if value is None:
        return None
    # 2020-02-19T11:30:00.000000Z -> 2020-02-19T11:30:00Z when there is no fraction
    return value.replace(".000000Z", "Z")


def _translate(exc: sqlite3.OperationalError) -> Exception:
    msg = str(exc)
    if "fts5" in msg or "MATCH" in msg:
        return InvalidRequestError(f"the free-text query cannot be used: {msg}")
    if "too many SQL variables" in msg or "too complex" in msg or "Expression tree" in msg:
        return InvalidFilterError("the filter is too large or too deeply nested")
    return StorageError(f"catalogue query failed: {msg}")
