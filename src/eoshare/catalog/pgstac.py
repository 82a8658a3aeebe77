"""The catalogue on PostgreSQL with pgstac (``EOSHARE_CATALOG=postgresql://...``).

pgstac owns the schema (installed and migrated with ``pypgstac``), the item tables
(partitioned by collection), loading (``create_items``/``upsert_items`` through its
staging tables) and the translation of a search into SQL: ``stac_search_to_where`` turns
collections, ids, datetime, geometry and the CQL2 filter into a WHERE clause and
``sort_sqlorderby`` the sortby into an ORDER BY. The access module's visibility filter
is ANDed into the CQL2 sent to pgstac, so hidden items never leave the database.

What pgstac does not do the way the STAC API of eoshare promises, this module does in
SQL of its own, beside pgstac's tables:

* offset paging (``LIMIT/OFFSET`` over pgstac's WHERE and ORDER BY; pgstac pages by
  tokens), and a bounded ``numberMatched`` (exact up to ``count_limit``, left out when
  it takes longer than a statement timeout);
* free text (``q``) over the same fields as on SQLite, as phrases, without stemming;
* the queryables seen in the loaded items, per collection (``eoshare.properties``), so
  that ``/queryables`` and the refusal of unknown names behave as on SQLite.

SQL lives only here; driver errors are translated at the boundary by ``_translate``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import shapely
from hydraters import dehydrate, hydrate
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool
from shapely.geometry import mapping

from eoshare.catalog.base import JSON, ItemPage, LoadReport, OnConflict, SearchQuery, SortField
from eoshare.catalog.cql2filter import and_all, fold_collections, query_to_cql2
from eoshare.catalog.geometry import split_bbox
from eoshare.catalog.prepared import PreparedItem, prepare_item
from eoshare.catalog.queryables import (
    known_names,
    property_names,
    queryables_document,
)
from eoshare.catalog.sqlite_filter import literal_geometry
from eoshare.catalog.validate import check_collection
from eoshare.errors import (
    ConflictError,
    InvalidFilterError,
    InvalidItemError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
)

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS eoshare;
CREATE TABLE IF NOT EXISTS eoshare.properties (
    collection text NOT NULL,
    name text NOT NULL,
    type text NOT NULL,
    PRIMARY KEY (collection, name, type)
);
"""

# catalogues up to this many items always get an exact numberMatched (as on SQLite)
_EXACT_COUNT_ITEMS = 50_000

# above that, a count the planner costs higher than this (its units: a seq_page_cost of 1
# per page read) is not started: it would not finish within a page's time
_COUNT_COST_LIMIT = 1_000.0

# a search's order without sortby (pgstac's)
_DEFAULT_ORDER = "datetime DESC, collection DESC, id DESC"

# an ORDER BY on the columns a per-collection branch carries (see _split_keys)
_COLUMN_ORDER = re.compile(
    r"(?:(?:datetime|end_datetime|collection|id)(?: ASC| DESC)?(?:, |$))+", re.IGNORECASE
)

# how long the catalogue's size (PostgreSQL's estimate) is kept
_SIZE_TTL_S = 60.0

# the text free-text searches read, as on SQLite (catalog/prepared.py: fts_text)
_FTS_TEXT = """concat_ws(' ', id,
    content->'properties'->>'title', content->'properties'->>'description',
    content->'properties'->>'platform', content->'properties'->>'constellation',
    content->'properties'->>'mission',
    (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(content->'properties'->'keywords') = 'array'
        THEN content->'properties'->'keywords' ELSE '[]' END) x),
    (SELECT string_agg(x, ' ') FROM jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(content->'properties'->'instruments') = 'array'
        THEN content->'properties'->'instruments' ELSE '[]' END) x))"""


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _configure(conn: psycopg.Connection[Any]) -> None:
    set_json_dumps(_dumps, conn)
    set_json_loads(orjson.loads, conn)


@contextlib.contextmanager
def _translate(what: str = "catalogue query") -> Iterator[None]:
    """psycopg and pgstac errors as eoshare errors."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise ConflictError(f"already exists: {_first_line(exc)}") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise StorageError(f"{what} took too long") from exc
    except (psycopg.errors.RaiseException, psycopg.errors.DataException) as exc:
        raise InvalidRequestError(f"{what} cannot be run: {_first_line(exc)}") from exc
    except (psycopg.errors.SyntaxError, psycopg.errors.UndefinedFunction) as exc:
        raise InvalidFilterError(f"the filter cannot be used: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise StorageError(f"{what} failed: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _stac_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _phrases(terms: Iterable[str]) -> list[str]:
    return [" ".join(words) for words in (re.findall(r"\w+", t) for t in terms) if words]


class PgstacCatalog:
    """The ``Catalog`` backend on PostgreSQL + pgstac. Thread-safe: a connection pool."""

    def __init__(
        self,
        url: str,
        *,
        count_limit: int = 100_000,
        count_budget_ms: int = 20,
        pool_size: int = 8,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.count_limit = count_limit
        # numberMatched of a large catalogue is counted for at most this long, and no
        # longer than the page took (as on SQLite: catalog/sqlite.py, _count)
        self.count_budget_ms = count_budget_ms
        self._size_cache: tuple[float, float] = (0.0, 0.0)
        with _translate("connecting to the catalogue"):
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True, "options": "-c search_path=pgstac,public"},
                configure=_configure,
                open=True,
                timeout=30,
            )
        if migrate:
            self._migrate()

    # --- schema -------------------------------------------------------------------------
    def _migrate(self) -> None:
        """pgstac's schema (pypgstac's migrations) and eoshare's tables beside it."""
        with self._conn() as conn:
            installed = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = 'pgstac'"
            ).fetchone()
        if installed is None:
            from pypgstac.db import PgstacDB
            from pypgstac.migrate import Migrate

            db = PgstacDB(dsn=self.url)
            try:
                Migrate(db).run_migration()
            except Exception as exc:  # pypgstac raises plain Exceptions
                raise StorageError(f"cannot install pgstac: {_first_line(exc)}") from exc
            finally:
                db.close()
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    @contextlib.contextmanager
    def _conn(self, what: str = "catalogue query") -> Iterator[psycopg.Connection[Any]]:
        with _translate(what), self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()

    # --- collections ------------------------------------------------------------------
    def list_collections(self) -> list[JSON]:
        with self._conn() as conn:
            rows = conn.execute("SELECT content FROM collections ORDER BY id").fetchall()
        return [r[0] for r in rows]

    def get_collection(self, collection_id: str) -> JSON:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT content FROM collections WHERE id = %s", (collection_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"collection {collection_id!r} does not exist")
        return dict(row[0])

    def create_collection(self, collection: JSON) -> JSON:
        cid = check_collection(collection)
        try:
            with self._conn() as conn:
                conn.execute("SELECT create_collection(%s)", (Jsonb(collection),))
        except ConflictError as exc:
            raise ConflictError(f"collection {cid!r} already exists") from exc
        return collection

    def update_collection(self, collection_id: str, collection: JSON) -> JSON:
        cid = check_collection(collection)
        if cid != collection_id:
            raise InvalidItemError(
                f"the collection's id {cid!r} does not match the URL's {collection_id!r}"
            )
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE collections SET content = %s WHERE id = %s", (Jsonb(collection), cid)
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"collection {collection_id!r} does not exist")
        return collection

    def delete_collection(self, collection_id: str) -> None:
        self.get_collection(collection_id)
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT delete_collection(%s)", (collection_id,))
            conn.execute("DELETE FROM eoshare.properties WHERE collection = %s", (collection_id,))

    def collection_extent(self, collection_id: str) -> JSON | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT count(*), min(st_xmin(geometry)), min(st_ymin(geometry)), "
                "max(st_xmax(geometry)), max(st_ymax(geometry)), min(datetime), "
                "max(end_datetime) FROM items WHERE collection = %s",
                (collection_id,),
            ).fetchone()
        if not row or not row[0]:
            return None
        _, minx, miny, maxx, maxy, start, end = row
        spatial = [[minx, miny, maxx, maxy]] if minx is not None else [[-180.0, -90.0, 180.0, 90.0]]
        return {
            "spatial": {"bbox": spatial},
            "temporal": {"interval": [[_stac_time(start), _stac_time(end)]]},
        }

    # --- items ------------------------------------------------------------------------
    def get_item(self, collection_id: str, item_id: str, *, visible: JSON | None = None) -> JSON:
        search: JSON = {"collections": [collection_id], "ids": [item_id]}
        if visible is not None:
            folded = fold_collections(visible, frozenset((collection_id,)))
            if folded is False:
                folded = {"op": "=", "args": [1, 2]}
            if folded is not True:
                search["filter"] = folded
                search["filter-lang"] = "cql2-json"
        with self._conn() as conn:
            where = _scalar(conn.execute("SELECT stac_search_to_where(%s)", (Jsonb(search),)))
            rows = conn.execute(
                sql.SQL("SELECT {} FROM items WHERE {}").format(_DEHYDRATED, sql.SQL(where))
            ).fetchall()
            docs = _hydrate(conn, rows)
        if not docs:
            raise NotFoundError(f"item {item_id!r} does not exist in collection {collection_id!r}")
        return docs[0]

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
        with self._conn() as conn:
            cur = conn.execute(
                "DELETE FROM items WHERE collection = %s AND id = %s", (collection_id, item_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"item {item_id!r} does not exist in collection {collection_id!r}"
                )

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
        on_invalid: Callable[[JSON, InvalidItemError], None] | None,
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
        pairs = list(keys)
        if not pairs:
            return set()
        with self._conn() as conn:
            return {
                (c, i)
                for c, i in conn.execute(
                    "SELECT collection, id FROM items WHERE (collection, id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([c for c, _ in pairs], [i for _, i in pairs]),
                ).fetchall()
            }

    def write_prepared(
        self, rows: list[PreparedItem], *, on_conflict: OnConflict = "error"
    ) -> LoadReport:
        """Write items already checked by ``prepare_item`` in one transaction: the new ones
        through one ``COPY`` (``_copy_items``), an existing one as ``on_conflict`` says.
        Called by ``upsert_items`` and by ``eoshare load``'s writer."""
        report = LoadReport()
        latest: dict[tuple[str, str], PreparedItem] = {}
        for r in rows:
            key = (r.collection, r.id)
            if key in latest and on_conflict == "error":
                raise ConflictError(f"item {r.id!r} is twice in one batch")
            latest[key] = r
        if not latest:
            return report
        collections = sorted({c for c, _ in latest})
        with self._conn("loading items") as conn, conn.transaction():
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM collections WHERE id = ANY(%s)", (collections,)
                ).fetchall()
            }
            for cid in collections:
                if cid not in known:
                    raise NotFoundError(
                        f"collection {cid!r} does not exist (create it first, or load "
                        "with --create-collections)"
                    )
            existing = {
                (c, i)
                for c, i in conn.execute(
                    "SELECT collection, id FROM items WHERE (collection, id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([c for c, _ in latest], [i for _, i in latest]),
                ).fetchall()
            }
            if existing and on_conflict == "error":
                cid, iid = sorted(existing)[0]
                raise ConflictError(f"item {iid!r} already exists in collection {cid!r}")
            new = [r for key, r in latest.items() if key not in existing]
            old = [r for key, r in latest.items() if key in existing]
            if old and on_conflict == "update":
                conn.execute(
                    "DELETE FROM items WHERE (collection, id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([r.collection for r in old], [r.id for r in old]),
                )
                _copy_items(conn, new + old)
            elif new:
                _copy_items(conn, new)
            seen = {(r.collection, r.properties) for r in latest.values()}  # mostly alike
            props = {(cid, name, typ) for cid, named in seen for name, typ in named}
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO eoshare.properties VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    sorted(props),
                )
            self._register_queryables(conn, {name for _, name, _ in props})
        report.inserted += len(new)
        if on_conflict == "update":
            report.updated += len(old)
        else:
            report.skipped += len(old)
        return report

    @staticmethod
    def _register_queryables(conn: psycopg.Connection[Any], names: set[str]) -> None:
        """Numbers and timestamps as pgstac queryables (wrapped ``to_float``/``to_tstz``,
        without an index), so that pgstac compares and sorts them as such and not as text.
        A name whose type differs between collections stays text, as pgstac reads it."""
        conn.execute(
            """
            INSERT INTO queryables (name, definition, property_wrapper, property_index_type)
            SELECT name, CASE min(type) WHEN 'number' THEN '{"type": "number"}'::jsonb
                   ELSE '{"type": "string", "format": "date-time"}'::jsonb END,
                   CASE min(type) WHEN 'number' THEN 'to_float' ELSE 'to_tstz' END, NULL
            FROM eoshare.properties
            WHERE name = ANY(%s) AND type <> 'null'
              AND NOT EXISTS (SELECT 1 FROM queryables q WHERE q.name = properties.name)
            GROUP BY name
            HAVING count(DISTINCT type) = 1 AND min(type) IN ('number', 'datetime')
            """,
            (sorted(names - {"datetime", "start_datetime", "end_datetime"}),),
        )

    def iter_items(self, collection_id: str | None = None) -> Iterator[JSON]:
        last = ("", "")
        while True:
            with self._conn() as conn:
                query = sql.SQL(
                    "SELECT {} FROM items WHERE (collection, id) > (%s, %s) {} "
                    "ORDER BY collection, id LIMIT 500"
                ).format(
                    _DEHYDRATED,
                    sql.SQL("AND collection = %s" if collection_id is not None else ""),
                )
                params: list[Any] = [*last]
                if collection_id is not None:
                    params.append(collection_id)
                rows = conn.execute(query, params).fetchall()
                docs = _hydrate(conn, rows)
            if not docs:
                return
            yield from docs
            last = (rows[-1][0], rows[-1][2])

    # --- queryables -------------------------------------------------------------------
    def _property_types(self, collections: tuple[str, ...]) -> dict[str, set[str]]:
        query = "SELECT name, type FROM eoshare.properties"
        params: list[Any] = []
        if collections:
            query += " WHERE collection = ANY(%s)"
            params.append(list(collections))
        types: dict[str, set[str]] = {}
        with self._conn() as conn:
            for name, typ in conn.execute(query, params).fetchall():
                types.setdefault(name, set()).add(typ)
        return types

    def queryables(self, collection_id: str | None = None) -> JSON:
        if collection_id is not None:
            self.get_collection(collection_id)
        return queryables_document(self._property_types((collection_id,) if collection_id else ()))

    # --- search -----------------------------------------------------------------------
    def _search_document(
        self, query: SearchQuery, check_names: bool = True
    ) -> tuple[JSON | None, list[str]]:
        """pgstac's search document for a query (None: nothing can match), and the
        names of the properties it uses."""
        search: JSON = {}
        if query.collections:
            search["collections"] = list(query.collections)
        if query.ids:
            search["ids"] = list(query.ids)
        if query.datetime_start is not None or query.datetime_end is not None:
            search["datetime"] = "/".join(
                _stac_time(t) or ".." for t in (query.datetime_start, query.datetime_end)
            )
        geom = None
        if query.bbox is not None:
            boxes = [shapely.box(*b) for b in split_bbox(query.bbox)]
            geom = shapely.union_all(boxes)
        if query.intersects is not None:
            shape = literal_geometry(query.intersects)
            geom = shape if geom is None else geom.intersection(shape)
        if geom is not None:
            if geom.is_empty:
                return None, []
            search["intersects"] = mapping(geom)
        types: dict[str, set[str]] | None = None
        legacy = None
        if query.query:
            types = self._property_types(query.collections)
            numeric = types
            legacy = query_to_cql2(
                query.query, lambda name: numeric.get(name, set()) - {"null"} == {"number"}
            )
        own = and_all(query.filter, legacy)
        names: list[str] = []
        if own is not None and check_names:
            names = sorted(property_names(own))
            if types is None:
                types = self._property_types(query.collections)
            known = known_names(types)
            for name in names:
                if not known(name.removeprefix("properties.")):
                    raise InvalidFilterError(
                        f"unknown queryable {name!r}: see /queryables for the names a "
                        "filter may use"
                    )
        visible: Any = True
        if query.visible is not None:
            visible = fold_collections(query.visible, frozenset(query.collections))
            if visible is False:
                return None, names
        expr = and_all(own, visible if visible is not True else None)
        if expr is not None:
            search["filter"] = expr
            search["filter-lang"] = "cql2-json"
        return search, names

    def _where_order(
        self, conn: psycopg.Connection[Any], query: SearchQuery
    ) -> tuple[sql.Composable | None, str]:
        """The WHERE clause (None: nothing can match) and the ORDER BY of a search, from
        pgstac's ``stac_search_to_where`` and ``sort_sqlorderby`` in one round trip."""
        search, _ = self._search_document(query)
        if search is None:
            return None, ""
        if query.sortby:
            known = known_names(self._property_types(query.collections))
            for s in query.sortby:
                name = s.field.removeprefix("properties.")
                if name == "geometry" or not known(name):
                    raise InvalidRequestError(
                        f"cannot sort by {s.field!r}: it is not a sortable queryable"
                    )
            sortby = {"sortby": [_sort_term(s) for s in query.sortby]}
            where, orderby = conn.execute(
                "SELECT stac_search_to_where(%s), sort_sqlorderby(%s, false)",
                (Jsonb(search), Jsonb(sortby)),
            ).fetchone() or (None, None)
        else:
            where = _scalar(conn.execute("SELECT stac_search_to_where(%s)", (Jsonb(search),)))
            orderby = _DEFAULT_ORDER
        if where is None or orderby is None:
            raise StorageError("the catalogue answered no row")
        clause: sql.Composable = sql.SQL(where)
        if query.q:
            phrases = _phrases(query.q)
            if not phrases:
                return None, ""
            tsquery = sql.SQL(" || ").join(
                sql.SQL("phraseto_tsquery('simple', {})").format(sql.Literal(p)) for p in phrases
            )
            clause = sql.SQL("({}) AND to_tsvector('simple', {}) @@ ({})").format(
                clause, sql.SQL(_FTS_TEXT), tsquery
            )
        return clause, str(orderby)

    def search(self, query: SearchQuery) -> ItemPage:
        with self._conn() as conn:
            where, orderby = self._where_order(conn, query)
            if where is None:
                return ItemPage(items=[], number_matched=0 if query.count else None,
                                next_offset=None, prev_offset=_prev(query))  # fmt: skip
            started = time.perf_counter()
            keys = self._split_keys(conn, query, orderby)
            if keys is None:
                keys = sql.SQL(
                    "SELECT collection, id FROM items WHERE {} ORDER BY {} LIMIT {} OFFSET {}"
                ).format(
                    where,
                    sql.SQL(orderby),
                    sql.Literal(query.limit + 1),
                    sql.Literal(query.offset),
                )
            rows = conn.execute(
                # the page's keys first, then its documents: the rows OFFSET skips are
                # never built into documents
                sql.SQL(
                    "SELECT {}, {} FROM (SELECT collection AS k_c, id AS k_id, "
                    "row_number() OVER () AS k_n FROM ({}) keys) page "
                    "JOIN items ON items.collection = page.k_c AND items.id = page.k_id "
                    "ORDER BY page.k_n"
                ).format(_DEHYDRATED, _BASE_ONCE, keys)
            ).fetchall()
            has_more = len(rows) > query.limit
            page = rows[: query.limit]
            # the base items came with the page (once per collection and tag): no second
            # round trip for them
            bases = {(r[0], r[1] or ""): r[4] for r in rows if r[4] is not None}
            items = _hydrate(conn, [r[:4] for r in page], bases)
            matched: int | None = None
            if query.count:
                if query.offset == 0 and not has_more:
                    matched = len(items)
                else:
                    # a count that cannot finish about as fast as the page did is given
                    # up: it must not cost the page (numberMatched is optional)
                    page_ms = (time.perf_counter() - started) * 1000
                    matched = self._count(conn, where, min(self.count_budget_ms, page_ms))
        return ItemPage(
            items=items,
            number_matched=matched,
            next_offset=query.offset + query.limit if has_more else None,
            prev_offset=_prev(query),
        )

    def _split_keys(
        self, conn: psycopg.Connection[Any], query: SearchQuery, orderby: str
    ) -> sql.Composable | None:
        """The page's keys of a search whose visibility filter differs by collection (an
        embargo on one, another hidden), newest first: one branch per collection, each with
        the filter folded for that collection (``fold_collections``) and its own
        ``ORDER BY ... LIMIT``, under a ``UNION ALL``. As one query, PostgreSQL walks a
        partition's datetime index testing ``NOT collection IN (...) OR (collection = ...
        AND datetime <= ...)`` row by row, past every embargoed row; split, the embargo is
        an index range (2 s against 20-40 ms at 1M items). None: not such a search."""
        if query.visible is None or query.ids or query.q or query.query:
            return None
        if not _COLUMN_ORDER.fullmatch(orderby):  # a sort on document properties
            return None
        if fold_collections(query.visible, frozenset(query.collections)) is True:
            return None
        cids = list(query.collections) or [
            r[0] for r in conn.execute("SELECT id FROM collections ORDER BY id").fetchall()
        ]
        docs = []
        for cid in cids:
            # the names were checked against the search's collections already: a property
            # one collection lacks matches nothing there, it is no error
            search, _ = self._search_document(replace(query, collections=(cid,)), check_names=False)
            if search is not None:  # None: nothing of that collection is visible
                docs.append(Jsonb(search))
        if not docs:
            return sql.SQL("SELECT NULL::text AS collection, NULL::text AS id WHERE false")
        wheres = [
            r[0]
            for r in conn.execute(
                "SELECT stac_search_to_where(d) FROM unnest(%s::jsonb[]) WITH ORDINALITY "
                "AS x(d, n) ORDER BY n",
                (docs,),
            ).fetchall()
        ]
        order = sql.SQL(orderby)
        depth = sql.Literal(query.offset + query.limit + 1)
        branches = sql.SQL(" UNION ALL ").join(
            sql.SQL(
                "(SELECT collection, id, datetime, end_datetime FROM items WHERE {} "
                "ORDER BY {} LIMIT {})"
            ).format(sql.SQL(w), order, depth)
            for w in wheres
        )
        return sql.SQL(
            "SELECT collection, id FROM ({}) branches ORDER BY {} LIMIT {} OFFSET {}"
        ).format(branches, order, sql.Literal(query.limit + 1), sql.Literal(query.offset))

    def _size(self, conn: psycopg.Connection[Any]) -> float:
        """How many items the catalogue holds, by PostgreSQL's statistics; read again at
        most every ``_SIZE_TTL_S`` (it only decides whether counts are time-bounded)."""
        expires, size = self._size_cache
        if time.monotonic() < expires:
            return size
        size = float(
            _scalar(
                conn.execute(
                    "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) "
                    "FROM pg_partition_tree('items') t JOIN pg_class c ON c.oid = t.relid "
                    "WHERE t.isleaf"
                )
            )
        )
        self._size_cache = (time.monotonic() + _SIZE_TTL_S, size)
        return size

    def _count(
        self, conn: psycopg.Connection[Any], where: sql.Composable, budget_ms: float
    ) -> int | None:
        """How many items match, or None past ``count_limit`` or, in a catalogue of more
        than ``_EXACT_COUNT_ITEMS`` items (PostgreSQL's estimate), when the planner
        expects the count to cost more than ``_COUNT_COST_LIMIT`` or it runs past
        ``budget_ms``: a count that cannot finish is not started, or given up early."""
        count = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM items WHERE {} LIMIT {}) s").format(
            where, sql.Literal(self.count_limit + 1)
        )
        bounded = self._size(conn) > _EXACT_COUNT_ITEMS
        if bounded:
            plan = _scalar(conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(count)))
            if float(plan[0]["Plan"]["Total Cost"]) > _COUNT_COST_LIMIT:
                return None
        timeout_ms = max(1, round(budget_ms)) if bounded else 0
        try:
            # one round trip: both statements run in one implicit transaction, to which
            # SET LOCAL applies
            cur = conn.execute(
                sql.SQL("SET LOCAL statement_timeout = {}; {}").format(
                    sql.Literal(timeout_ms), count
                )
            )
            cur.nextset()
            matched = _scalar(cur)
        except psycopg.errors.QueryCanceled:
            return None
        return None if matched > self.count_limit else int(matched)


# An item as pgstac stores it, before hydration: the row's columns and its content (the
# differences from its collection's base item). Hydrated here, in Rust (``hydraters``, as
# pypgstac does), and not with pgstac's content_hydrate(), whose recursive PL/pgSQL merge
# costs tens of milliseconds per item of real (asset-rich) STAC.
_DEHYDRATED = sql.SQL(
    "collection, content->>'pgstac:base_item', id, jsonb_build_object('id', id, "
    "'geometry', ST_AsGeoJSON(geometry, 20)::jsonb, 'collection', collection, "
    "'type', 'Feature') || (content - 'pgstac:base_item')"
)


def _hydrate(
    conn: psycopg.Connection[Any],
    rows: list[Any],
    known: dict[tuple[str, str], Any] | None = None,
) -> list[JSON]:
    """Whole items from rows of ``_DEHYDRATED``: each merged with the base item of its
    collection (the one it was stored against: pgstac tags it when that has changed).
    ``known``: base items already read, by (collection, tag); the others are read here."""
    bases = dict(known or {})
    keys = sorted({(r[0], r[1] or "") for r in rows} - set(bases))
    if not rows:
        return []
    if keys:
        bases.update(
            ((c, t), b)
            for c, t, b in conn.execute(
                "SELECT c, t, collection_base_item(c, nullif(t, '')::int) "
                "FROM unnest(%s::text[], %s::text[]) AS x(c, t)",
                ([c for c, _ in keys], [t for _, t in keys]),
            ).fetchall()
        )
    out = []
    for collection, tag, _, doc in rows:
        base = bases.get((collection, tag or ""))
        if base:
            doc = hydrate(base, doc, strip_unmatched_markers=True)
        out.append(_as_written(doc))
    return out


def items_on(conn: psycopg.Connection[Any], page: int = 500) -> Iterator[JSON]:
    """Every item of a pgstac database, read on ``conn`` inside its own transaction (a
    backup reads the items of the exported snapshot that ``pg_dump`` copies). The
    connection's ``search_path`` must start with ``pgstac``."""
    _configure(conn)
    last = ("", "")
    while True:
        rows = conn.execute(
            sql.SQL(
                "SELECT {} FROM items WHERE (collection, id) > (%s, %s) "
                "ORDER BY collection, id LIMIT %s"
            ).format(_DEHYDRATED),
            [*last, page],
        ).fetchall()
        if not rows:
            return
        yield from _hydrate(conn, rows)
        last = (rows[-1][0], rows[-1][2])


# beside _DEHYDRATED in a page: the base item of the row's collection and tag, on the first
# row of each (collection, tag) only (NULL on the others)
_BASE_ONCE = sql.SQL(
    "CASE WHEN row_number() OVER (PARTITION BY items.collection, "
    "items.content->>'pgstac:base_item' ORDER BY page.k_n) = 1 THEN "
    "collection_base_item(items.collection, "
    "nullif(items.content->>'pgstac:base_item', '')::int) END"
)


def _copy_items(conn: psycopg.Connection[Any], items: list[PreparedItem]) -> None:
    """Write items as pypgstac's Loader does, inside the caller's transaction: dehydrated
    against their collection's base item in Rust (``hydraters``), the partitions made or
    widened with ``check_partition``, then one ``COPY`` into ``items``. pgstac's own
    ``create_items()`` dehydrates in PL/pgSQL, several times slower. The footprint
    indexed is ``index_geometry``'s (prepared with the row); when it is not the one
    written (cut at the antimeridian, made valid), the written one rides along in the
    document (``_AS_WRITTEN``)."""
    collections = sorted({r.collection for r in items})
    info = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT c.id, b.base_item, c.key, c.partition_trunc, b.base_item_id "
            "FROM collections c, current_base_item(c.id) b WHERE c.id = ANY(%s)",
            (collections,),
        ).fetchall()
    }
    ranges: dict[str, list[Any]] = {}
    rows = []
    for r in items:
        cid = r.collection
        base, key, trunc, base_id = info[cid]
        start, end = r.dt_start, r.dt_end
        digits = start.replace("-", "")
        suffix = {"year": f"_{digits[:4]}", "month": f"_{digits[:6]}"}.get(trunc or "", "")
        span = ranges.setdefault(f"_items_{key}{suffix}", [cid, start, start, end, end])
        span[1], span[2] = min(span[1], start), max(span[2], start)
        span[3], span[4] = min(span[3], end), max(span[4], end)
        geometry = None
        if r.geom_wkb is not None:
            geometry = shapely.to_wkb(
                shapely.set_srid(shapely.from_wkb(r.geom_wkb), 4326), hex=True, include_srid=True
            )
        doc = orjson.loads(r.content)  # a document of its own: dehydrate() strips it
        if r.reshaped:
            doc[_AS_WRITTEN] = doc.get("geometry")
        content = dehydrate(base, doc) if base else doc
        for name in ("id", "collection", "geometry", "pgstac:base_item"):
            content.pop(name, None)
        if base_id is not None:
            content["pgstac:base_item"] = base_id
        rows.append((r.id, cid, start, end, geometry, _dumps(content)))
    for cid, dmin, dmax, emin, emax in ranges.values():
        conn.execute(
            "SELECT check_partition(%s, tstzrange(%s, %s, '[]'), tstzrange(%s, %s, '[]'))",
            (cid, dmin, dmax, emin, emax),
        )
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY items (id, collection, datetime, end_datetime, geometry, content) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)


# the geometry as written, when pgstac indexes another (see _copy_items)
_AS_WRITTEN = "eoshare:geometry"


def _as_written(doc: JSON) -> JSON:
    geometry = doc.pop(_AS_WRITTEN, None)
    if geometry is not None:
        doc["geometry"] = geometry
    return doc


def _scalar(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    if row is None:
        raise StorageError("the catalogue answered no row")
    return row[0]


def _prev(query: SearchQuery) -> int | None:
    return max(query.offset - query.limit, 0) if query.offset > 0 else None


def _sort_term(s: SortField) -> JSON:
    name = s.field.removeprefix("properties.")
    return {"field": name, "direction": "asc" if s.ascending else "desc"}
