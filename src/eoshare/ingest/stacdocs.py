"""STAC documents in -> the catalogue. Called by ``eoshare load FILE...`` (cli.py).

Accepted files:

* ``.json``: one Item, one Collection, an ItemCollection (a GeoJSON FeatureCollection),
  a bare JSON array of items/collections, or ``{"collections": [...]}``;
* ``.ndjson`` / ``.jsonl``: one Item (or Collection) per line;
* ``.parquet``: stac-geoparquet, read one record batch at a time.

Items are yielded lazily and handed to ``Catalog.upsert_items`` which writes them in
batches, so memory stays bounded by the batch size whatever the file size (a ``.json``
file is parsed whole: it is one JSON value). Collections found in ``.json`` files are
written before any item. A document that cannot be read or is not valid is reported with
its place (``file:line`` or ``file:row N``) and skipped; the others are loaded.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from eoshare.catalog.assetkeys import strip_node_fields
from eoshare.catalog.base import JSON, Catalog, LoadReport, OnConflict, SearchQuery
from eoshare.catalog.validate import check_collection
from eoshare.errors import (
    ConflictError,
    EoshareError,
    InvalidItemError,
    InvalidRequestError,
    NotFoundError,
)
from eoshare.ingest.collections import (
    Extent,
    Summaries,
    made_by_eoshare,
    minimal_collection,
    refresh_extent,
    set_extent,
)
from eoshare.ingest.parallel import (
    Chunk,
    Outcome,
    PreparePool,
    default_workers,
    doc_type,
    few_collections,
)

log = logging.getLogger(__name__)

NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl")
JSON_SUFFIXES = (".json", ".geojson")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
# NDJSON files smaller than this in all are prepared in this process (no workers)
_POOL_BYTES = 8 * 1024 * 1024
# Problems kept with their text; past this many only the count grows (a broken 10 GB
# file must not fill memory with error messages).
MAX_PROBLEMS = 100


@dataclass
class LoadProblem:
    """One document (or a whole file) that was not loaded: where, and why."""

    location: str
    reason: str


@dataclass
class DocumentLoadReport(LoadReport):
    """A ``LoadReport`` plus what ``eoshare load`` prints: the problems and the files."""

    collections_updated: list[str] = field(default_factory=list)
    problems: list[LoadProblem] = field(default_factory=list)
    problem_count: int = 0
    files_loaded: int = 0
    files_failed: int = 0

    def problem(self, location: str, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(LoadProblem(location, reason))
        # debug only: the CLI prints every problem itself, as one readable line
        log.debug("not loaded", extra={"location": location, "reason": reason})

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


@dataclass
class Document:
    """One STAC document read from a file, with its place for error messages."""

    location: str
    doc: Any


class DocumentError(InvalidRequestError):
    """One document could not be read (bad JSON...); the reader goes on after it."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


# --- readers --------------------------------------------------------------------------
def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffixes, kind in (
        (NDJSON_SUFFIXES, "ndjson"),
        (JSON_SUFFIXES, "json"),
        (PARQUET_SUFFIXES, "parquet"),
    ):
        if name.endswith(suffixes):
            return kind
    raise InvalidRequestError(
        "unknown file type; expected .json, .ndjson/.jsonl or .parquet (stac-geoparquet)"
    )


@dataclass(frozen=True)
class DocumentLimits:
    """Size limits on the files ``eoshare load`` parses (``EOSHARE_INGEST__*``): a .json
    file is parsed whole, an NDJSON line is one document; both are bounded so that one
    file cannot exhaust the node's memory. (Nesting is bounded by orjson: 1024 levels.)"""

    max_json_bytes: int = 1024 * 1024 * 1024
    max_line_bytes: int = 64 * 1024 * 1024


def _read_ndjson(path: Path, limits: DocumentLimits) -> Iterator[Document | DocumentError]:
    with open(path, "rb") as f:
        lineno = 0
        while True:
            line = f.readline(limits.max_line_bytes + 1)
            if not line:
                return
            lineno += 1
            location = f"{path}:{lineno}"
            if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
                while (rest := f.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of the over-long line, without holding it
                yield DocumentError(
                    location,
                    f"the line is longer than {limits.max_line_bytes} bytes "
                    "(EOSHARE_INGEST__MAX_NDJSON_LINE_BYTES)",
                )
                continue
            if not line.strip():
                continue
            try:
                yield Document(location, orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                yield DocumentError(location, f"not valid JSON: {exc}")


def _json_members(path: Path, value: Any) -> Iterator[Document | DocumentError]:
    """The documents inside one parsed JSON value, in file order."""
    if isinstance(value, list):
        for i, doc in enumerate(value):
            yield Document(f"{path}:[{i}]", doc)
    elif isinstance(value, dict) and value.get("type") == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, list):
            yield DocumentError(str(path), "a FeatureCollection needs a 'features' array")
            return
        for i, doc in enumerate(features):
            yield Document(f"{path}:features[{i}]", doc)
    elif (
        isinstance(value, dict)
        and "type" not in value
        and isinstance(value.get("collections"), list)
    ):
        for i, doc in enumerate(value["collections"]):
            yield Document(f"{path}:collections[{i}]", doc)
    else:
        yield Document(str(path), value)


def _read_json(path: Path, limits: DocumentLimits) -> Iterator[Document | DocumentError]:
    size = path.stat().st_size
    if size > limits.max_json_bytes:
        yield DocumentError(
            str(path),
            f"the file is {size} bytes, over the limit of {limits.max_json_bytes} for one "
            "JSON document (EOSHARE_INGEST__MAX_JSON_BYTES); use NDJSON or stac-geoparquet",
        )
        return
    data = path.read_bytes()
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield DocumentError(f"{path}", f"not valid JSON: {exc}")
        return
    yield from _json_members(path, value)


def _read_parquet(path: Path, batch_size: int) -> Iterator[Document | DocumentError]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidRequestError(f"not a readable Parquet file: {exc}") from exc
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for item in stac_table_to_items(pa.Table.from_batches([batch])):
                yield Document(f"{path}:row {row}", item)
                row += 1
    except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
        # A table that is not stac-geoparquet (no 'geometry', odd types...) fails inside
        # stac_geoparquet with a plain Python error; name the place and stop this file.
        raise InvalidRequestError(
            f"row {row}: not a stac-geoparquet table this reader understands: {exc}"
        ) from exc


def read_documents(
    path: Path, *, batch_size: int = 1000, limits: DocumentLimits | None = None
) -> Iterator[Document | DocumentError]:
    """Every document of one file, lazily; bad ones come as ``DocumentError`` values so
    that the caller can report them and go on. Raises for a file that cannot be read."""
    kind = _kind(path)
    if kind == "ndjson":
        return _read_ndjson(path, limits or DocumentLimits())
    if kind == "parquet":
        return _read_parquet(path, batch_size)
    return _read_json(path, limits or DocumentLimits())


_doc_type = doc_type


# --- collections ----------------------------------------------------------------------
def _write_collection(
    catalog: Catalog, doc: JSON, on_conflict: OnConflict, report: DocumentLoadReport
) -> None:
    cid = check_collection(doc)
    try:
        catalog.create_collection(doc)
        report.collections_created.append(cid)
    except ConflictError:
        if on_conflict == "error":
            raise ConflictError(
                f"collection {cid!r} already exists (use --on-conflict skip or update)"
            ) from None
        if on_conflict == "update":
            catalog.update_collection(cid, doc)
            report.collections_updated.append(cid)


# --- loading --------------------------------------------------------------------------
class _ItemStream:
    """The valid items of one file, checked on the way (so that a bad item is reported
    with its line) and with their collection made sure of."""

    def __init__(
        self,
        docs: Iterator[Document | DocumentError],
        *,
        catalog: Catalog,
        on_conflict: OnConflict,
        create_collections: bool,
        known: dict[str, bool],
        report: DocumentLoadReport,
        tick: Callable[[], None],
        made: list[str],
        batch_size: int = 1000,
    ) -> None:
        self.docs = docs
        self.catalog = catalog
        self.on_conflict = on_conflict
        self.create_collections = create_collections
        self.known = known
        self.report = report
        self.tick = tick
        self.last_location = ""
        self.made = made
        self.missing: dict[str, int] = {}
        # (document, location) of the items handed out lately, by id(): the catalogue
        # validates a batch right after taking it, so two batches' worth is enough.
        self._where: OrderedDict[int, tuple[JSON, str]] = OrderedDict()
        self._window = 2 * batch_size
        self.batch_size = batch_size
        # with on_conflict="error": the documents of the batch being read, checked against
        # the catalogue together, so that an item that exists is reported at its own line
        # and the others of its batch are still loaded
        self._pending: list[tuple[JSON, str]] = []
        self._seen: dict[tuple[str, str], str] = {}  # (collection, id) -> first location

    def _collection_exists(self, cid: str, location: str) -> bool:
        if cid not in self.known:
            try:
                if made_by_eoshare(self.catalog.get_collection(cid)):
                    self.made.append(cid)  # keep the extent and summaries eoshare made
                self.known[cid] = True
            except NotFoundError:
                if self.create_collections:
                    self.catalog.create_collection(
                        minimal_collection(cid, made_by="eoshare load from its items")
                    )
                    self.report.collections_created.append(cid)
                    self.made.append(cid)
                    self.known[cid] = True
                else:
                    self.known[cid] = False
        if not self.known[cid]:
            # Said once per collection and file, with a count at the end (see
            # finish()): a big file must not print the same line for every item.
            self.missing[cid] = self.missing.get(cid, 0) + 1
            if self.missing[cid] == 1:
                self.report.problem(
                    location,
                    f"collection {cid!r} does not exist; load its collection document "
                    "first or pass --create-collections",
                )
        return self.known[cid]

    def finish(self, path: Path) -> None:
        """Report the items skipped for want of their collection, after the first."""
        for cid, count in self.missing.items():
            if count > 1:
                self.report.problem(
                    str(path), f"{count - 1} more items of missing collection {cid!r} not loaded"
                )
                self.report.problem_count += count - 2

    def __iter__(self) -> Iterator[JSON]:
        for entry in self.docs:
            if isinstance(entry, DocumentError):
                self.report.problem(entry.location, entry.reason)
                continue
            location, doc = entry.location, entry.doc
            self.last_location = location
            kind = _doc_type(doc)
            try:
                if kind == "Collection":
                    # Only .ndjson files reach here with a collection (.json ones are
                    # written in the first pass); write it before the items after it.
                    _write_collection(self.catalog, doc, self.on_conflict, self.report)
                    continue
                if kind != "Feature":
                    raise InvalidItemError(
                        f"expected a STAC Item (type 'Feature'), got type {kind!r}"
                    )
                collection = doc.get("collection")
                if not isinstance(collection, str) or not collection:
                    raise InvalidItemError(f"item {doc.get('id')!r} names no 'collection'")
            except (InvalidRequestError, ConflictError) as exc:
                self.report.problem(location, exc.detail)
                continue
            if not self._collection_exists(collection, location):
                continue
            # Store keys are the node's own (ingest, upload): never taken from a document.
            doc = strip_node_fields(doc)
            # The full check happens once, in the catalogue (upsert_items), which hands
            # an invalid item back through invalid(); remember where each one came from.
            if self.on_conflict == "error":
                self._pending.append((doc, location))
                if len(self._pending) >= self.batch_size:
                    yield from self._without_conflicts()
                continue
            yield self._hand_out(doc, location)
        yield from self._without_conflicts()

    def _hand_out(self, doc: JSON, location: str) -> JSON:
        self._where[id(doc)] = (doc, location)
        if len(self._where) > self._window:
            self._where.popitem(last=False)
        self.tick()
        return doc

    def _without_conflicts(self) -> Iterator[JSON]:
        """The pending documents less those whose item exists already (in the catalogue,
        or earlier in this load), each of which is reported at its own line."""
        pending, self._pending = self._pending, []
        by_collection: dict[str, list[str]] = {}
        for doc, _ in pending:
            if isinstance(doc.get("id"), str):
                by_collection.setdefault(doc["collection"], []).append(doc["id"])
        existing: set[tuple[str, str]] = set()
        for cid, ids in by_collection.items():
            page = self.catalog.search(
                SearchQuery(collections=(cid,), ids=tuple(ids), limit=len(ids), count=False)
            )
            existing |= {(cid, item["id"]) for item in page.items}
        for doc, location in pending:
            item_id = doc.get("id")
            if isinstance(item_id, str):  # (an item without an id fails validation later)
                key = (str(doc["collection"]), item_id)
                if key in existing or key in self._seen:
                    where = "" if key in existing else f" (also at {self._seen[key]})"
                    self.report.problem(
                        location,
                        f"item {item_id!r} already exists in collection {key[0]!r}{where} "
                        "(use --on-conflict skip or update)",
                    )
                    continue
                self._seen[key] = location
            yield self._hand_out(doc, location)

    def invalid(self, item: JSON, exc: InvalidItemError) -> None:
        """Called by the catalogue for an item that fails validation: report its line."""
        entry = self._where.pop(id(item), None)
        location = entry[1] if entry is not None and entry[0] is item else self.last_location
        self.report.problem(location, exc.detail)


class _PreparedLoad:
    """The writer of ``eoshare load`` for a catalogue with ``write_prepared`` (SQLite):
    items come prepared (parsed, validated, rows derived) from ``PreparePool``, in file
    order; here only what needs the catalogue happens, with the same outcomes and the
    same one-line problems as ``_ItemStream`` + ``upsert_items``: collections written
    where they stand, items of a missing collection refused (once per collection and
    file), conflicts found per batch (``on_conflict="error"``: each reported at its own
    line, the rest of the batch loaded), then one ``write_prepared`` transaction per
    batch. The extent and summaries of a collection made by this load are built from
    the rows as they are written, so nothing is read back at the end."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        on_conflict: OnConflict,
        create_collections: bool,
        report: DocumentLoadReport,
        tick: Callable[[int], None],
        batch_size: int,
    ) -> None:
        self.catalog = catalog
        self.on_conflict = on_conflict
        self.report = report
        self.tick = tick
        self.batch_size = batch_size
        self.known: dict[str, bool] = {}
        self.made: list[str] = []  # collections whose extent eoshare keeps
        self.fresh: dict[str, tuple[Extent, Summaries]] = {}  # ...made by this load
        self.stale: set[str] = set()  # ...of which an item was replaced: read back
        # (collection, id) -> where first seen, of the items refused as invalid: a later
        # one is reported as their duplicate (the items written are found in the
        # catalogue itself, so that this stays small however big the load)
        self.seen: dict[tuple[str, str], tuple[str, int]] = {}
        # collections that exist and whose summaries eoshare does not keep: their items
        # need no summary facts (read by the pool's reader thread: replaced, not changed)
        self.plain: frozenset[str] = frozenset()
        self.stream = _ItemStream(
            iter(()), catalog=catalog, on_conflict=on_conflict,
            create_collections=create_collections, known=self.known, report=report,
            tick=lambda: None, made=self.made, batch_size=batch_size,
        )  # fmt: skip
        self.path = ""
        self.last_line = 0

    @property
    def last_location(self) -> str:
        """The place of the last document handed to the writer (for a file that fails)."""
        return f"{self.path}:{self.last_line}" if self.last_line else ""

    def load_file(self, chunks: Iterator[Chunk], path: Path) -> LoadReport:
        written = LoadReport()
        self.stream.missing = {}
        self.path = str(path)
        self.last_line = 0
        known = self.known
        base = 0  # lines of the file before the chunk
        pending: list[tuple[int, Outcome]] = []  # (line number, outcome)
        for lines, outcomes in chunks:
            for outcome in outcomes:
                kind, lineno = outcome[0], base + outcome[1]
                if kind == "problem":
                    self.report.problem(f"{path}:{lineno}", outcome[2])
                    continue
                self.last_line = lineno
                if kind == "collection":
                    self._flush(pending, written)
                    pending = []
                    try:
                        _write_collection(self.catalog, outcome[2], self.on_conflict, self.report)
                    except (InvalidRequestError, ConflictError) as exc:
                        self.report.problem(f"{path}:{lineno}", exc.detail)
                    continue
                cid = outcome[2].collection if kind == "item" else outcome[2]
                if known.get(cid) is not True:
                    before = len(self.made)
                    if not self.stream._collection_exists(cid, f"{path}:{lineno}"):
                        continue
                    if len(self.made) > before and cid in self.report.collections_created:
                        self.fresh[cid] = (Extent(), Summaries())
                    elif cid not in self.plain and cid not in self.made:
                        self.plain = self.plain | {cid}
                pending.append((lineno, outcome))
                if len(pending) >= self.batch_size:
                    self._flush(pending, written)
                    pending = []
            base += lines
        self._flush(pending, written)
        self.stream.finish(path)
        return written

    def _flush(self, pending: list[tuple[int, Outcome]], written: LoadReport) -> None:
        if not pending:
            return
        existing: set[tuple[str, str]] = set()
        check = self.on_conflict == "error"
        if check:
            keys = [
                (o[2].collection, o[2].id) if o[0] == "item" else (o[2], o[3])
                for _, o in pending
                if o[0] == "item" or o[3] is not None
            ]
            existing = self.catalog.existing_keys(keys)  # type: ignore[attr-defined]
        seen: dict[tuple[str, str], tuple[str, int]] = {}  # ...in this batch
        rows: list[Any] = []
        facts: list[Any] = []
        for lineno, outcome in pending:
            kind = outcome[0]
            if check:
                key = (outcome[2].collection, outcome[2].id) if kind == "item" else (
                    (outcome[2], outcome[3]) if outcome[3] is not None else None
                )  # fmt: skip
                if key is not None:
                    first = seen.get(key) or self.seen.get(key)
                    if key in existing or first is not None:
                        where = (
                            f" (also at {first[0]}:{first[1]})"
                            if first is not None and key not in existing
                            else ""
                        )
                        self.report.problem(
                            f"{self.path}:{lineno}",
                            f"item {key[1]!r} already exists in collection {key[0]!r}{where} "
                            "(use --on-conflict skip or update)",
                        )
                        continue
                    seen[key] = (self.path, lineno)
                    if kind == "invalid":  # never written: remembered past this batch
                        self.seen[key] = (self.path, lineno)
            if kind == "invalid":
                self.report.problem(f"{self.path}:{lineno}", outcome[4])
                continue
            rows.append(outcome[2])
            facts.append(outcome[3])
        if rows:
            done = self.catalog.write_prepared(rows, on_conflict=self.on_conflict)  # type: ignore[attr-defined]
            written.inserted += done.inserted
            written.updated += done.updated
            written.skipped += done.skipped
            if self.fresh:
                changed = bool(done.updated or done.skipped)
                for row, item_facts in zip(rows, facts, strict=True):
                    built = self.fresh.get(row.collection)
                    if built is None:
                        continue
                    if changed or item_facts is None:  # an item replaced or kept...
                        self.stale.add(row.collection)
                        continue
                    built[0].add(row.bbox, row.dt_start, row.dt_end)
                    built[1].add(item_facts)
        self.tick(len(pending))

    def finish(self) -> None:
        """The extent and summaries of every collection made from its items."""
        for cid in self.made:
            built = self.fresh.get(cid)
            if built is None or cid in self.stale:
                refresh_extent(self.catalog, cid)
            else:
                set_extent(self.catalog, cid, built[0].result(), built[1].result())


def _writes_prepared(catalog: Catalog) -> bool:
    inner: Any = catalog
    while hasattr(inner, "inner"):  # ObservedCatalog and the like
        inner = inner.inner
    return hasattr(inner, "write_prepared") and hasattr(inner, "existing_keys")


def load_documents(
    paths: Sequence[str | Path],
    *,
    catalog: Catalog,
    on_conflict: OnConflict = "error",
    create_collections: bool = False,
    batch_size: int = 1000,
    progress: bool = False,
    limits: DocumentLimits | None = None,
    workers: int | None = None,
) -> DocumentLoadReport:
    """Load STAC files into the catalogue; called by ``eoshare load``.

    First pass: the collections in ``.json`` files are created (or, with
    ``on_conflict="update"``, replaced). Second pass: the items of every file, streamed
    to ``catalog.upsert_items`` in batches of ``batch_size``. A file that cannot be read
    or a batch the catalogue refuses (e.g. a duplicate with ``on_conflict="error"``) is
    reported and the next file is loaded; batches already written stay written. With
    ``create_collections``, a collection that items name but nobody defined is made,
    and afterwards its extent is set from its items.

    Into a catalogue that takes prepared rows (SQLite), NDJSON files are parsed and
    checked by ``workers`` processes (default: one per CPU for 8 MB of NDJSON or more,
    else none; 0: in this process) beside
    this one, which writes (``_PreparedLoad``); the outcome is the same."""
    if batch_size < 1:
        raise InvalidRequestError("--batch-size must be at least 1")
    files = [Path(p) for p in paths]
    report = DocumentLoadReport()
    failed: set[Path] = set()

    # Pass 1: collections first, so that items in any file can refer to them.
    for path in files:
        try:
            if _kind(path) != "json":
                continue
            for entry in read_documents(path, limits=limits):
                if isinstance(entry, DocumentError) or _doc_type(entry.doc) != "Collection":
                    continue
                try:
                    _write_collection(catalog, entry.doc, on_conflict, report)
                except (InvalidRequestError, ConflictError) as exc:
                    report.problem(entry.location, exc.detail)
        except (EoshareError, OSError) as exc:
            report.problem(str(path), _reason(exc))
            failed.add(path)

    # Pass 2: items, streamed.
    bar = _progress(progress)
    task = bar.add_task("loading", total=None) if bar is not None else None

    def tick(n: int = 1) -> None:
        if bar is not None and task is not None:
            bar.advance(task, n)

    writer = _PreparedLoad(
        catalog=catalog, on_conflict=on_conflict, create_collections=create_collections,
        report=report, tick=tick, batch_size=batch_size,
    )  # fmt: skip
    # NDJSON files into a catalogue that takes prepared rows: parsed and checked by
    # worker processes (big files only: starting them costs more than a small file)
    fast = _writes_prepared(catalog)
    big = sum(p.stat().st_size for p in files if p.is_file() and _is_ndjson(p))
    if workers is None:
        workers = default_workers() if big >= _POOL_BYTES else 0
    limits = limits or DocumentLimits()
    # SQLite: the WAL checkpointed beside the writer while the batches are written
    bulk = getattr(catalog, "bulk_load", None) if fast else None
    with (
        PreparePool(workers if fast else 0) as pool,
        bulk() if bulk is not None else contextlib.nullcontext(),
        few_collections(),
        bar if bar is not None else contextlib.nullcontext(),
    ):
        for path in files:
            if path in failed:
                continue
            before = report.problem_count
            stream: _ItemStream | None = None
            try:
                if fast and _kind(path) == "ndjson":
                    chunks = pool.prepare_file(path, limits.max_line_bytes, lambda: writer.plain)
                    try:
                        written = writer.load_file(chunks, path)
                    finally:
                        chunks.close()  # stopped early: the pool is drained for the next file
                else:
                    docs = read_documents(path, batch_size=batch_size, limits=limits)
                    if _kind(path) == "json":
                        # Collections were written in pass 1; skip them now.
                        docs = (
                            e
                            for e in docs
                            if isinstance(e, DocumentError) or _doc_type(e.doc) != "Collection"
                        )
                    stream = _ItemStream(
                        docs,
                        catalog=catalog,
                        on_conflict=on_conflict,
                        create_collections=create_collections,
                        known=writer.known,
                        report=report,
                        tick=tick,
                        made=writer.made,
                        batch_size=batch_size,
                    )
                    written = catalog.upsert_items(
                        stream,
                        on_conflict=on_conflict,
                        batch_size=batch_size,
                        on_invalid=stream.invalid,
                    )
                    stream.finish(path)
            except (EoshareError, OSError) as exc:
                last = stream.last_location if stream is not None else writer.last_location
                reason = _reason(exc)
                if isinstance(exc, ConflictError):
                    reason += " (use --on-conflict skip or update)"
                report.problem(last or str(path), reason)
                failed.add(path)
                continue
            report.inserted += written.inserted
            report.updated += written.updated
            report.skipped += written.skipped
            if report.problem_count > before:
                failed.add(path)
            else:
                report.files_loaded += 1
            log.info(
                "loaded file",
                extra={
                    "file": str(path),
                    "inserted": written.inserted,
                    "updated": written.updated,
                    "skipped": written.skipped,
                },
            )
    report.files_failed = len(failed)
    writer.finish()
    return report


def _is_ndjson(path: Path) -> bool:
    return path.name.lower().endswith(NDJSON_SUFFIXES)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EoshareError):
        return exc.detail
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed} items"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
