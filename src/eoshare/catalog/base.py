"""The catalogue contract: what every backend (SQLite by default, PostgreSQL later)
must do. The API, the CLI and ingest talk to this, never to SQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from eoshare.errors import InvalidItemError

JSON = dict[str, Any]
OnConflict = Literal["error", "skip", "update"]


@dataclass(frozen=True)
class SortField:
    """One sortby term: a queryable name (``datetime``, ``id``, ``eo:cloud_cover``...)."""

    field: str
    ascending: bool = True


@dataclass(frozen=True)
class SearchQuery:
    """A validated item search. Built by the API from GET/POST /search and from
    /collections/{cid}/items; every field is already parsed and checked."""

    collections: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    # [minx, miny, maxx, maxy]; minx > maxx means the box crosses the antimeridian
    bbox: tuple[float, float, float, float] | None = None
    intersects: JSON | None = None
    # inclusive bounds, timezone-aware UTC; None on one side is open-ended
    datetime_start: datetime | None = None
    datetime_end: datetime | None = None
    # CQL2 in its JSON form (``cql2.Expr(...).to_json()``)
    filter: JSON | None = None
    # the STAC query extension: {"eo:cloud_cover": {"lt": 10}}
    query: JSON | None = None
    q: tuple[str, ...] = ()
    sortby: tuple[SortField, ...] = ()
    limit: int = 10
    offset: int = 0
    # ANDed into every query by the access layer (a CQL2 JSON expression); None = no limit
    visible: JSON | None = None
    count: bool = True


@dataclass
class ItemPage:
    """One page of search results."""

    items: list[JSON]
    # None when the count was skipped or is over the count limit
    number_matched: int | None
    next_offset: int | None
    prev_offset: int | None


@dataclass
class LoadReport:
    """What a bulk write did."""

    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    # items refused by validation (reported through ``on_invalid``)
    invalid: int = 0
    collections_created: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.skipped


class Catalog(Protocol):
    """STAC collections and items. Every method raises ``NotFoundError`` for absent
    things, ``ConflictError`` for duplicates and ``InvalidItemError`` for invalid
    documents; no backend error escapes."""

    # --- collections -------------------------------------------------------------
    def list_collections(self) -> list[JSON]:
        """All collections, ordered by id. Called by GET /collections."""
        ...

    def get_collection(self, collection_id: str) -> JSON:
        """One collection. Called by GET /collections/{cid}."""
        ...

    def create_collection(self, collection: JSON) -> JSON:
        """Insert a new collection. Called by POST /collections."""
        ...

    def update_collection(self, collection_id: str, collection: JSON) -> JSON:
        """Replace a collection. Called by PUT/PATCH /collections/{cid}."""
        ...

    def delete_collection(self, collection_id: str) -> None:
        """Delete a collection and its items. Called by DELETE /collections/{cid}."""
        ...

    def collection_extent(self, collection_id: str) -> JSON | None:
        """The spatial and temporal extent of the items of a collection, as a STAC
        ``extent`` object; None when it has no items."""
        ...

    # --- items -------------------------------------------------------------------
    def get_item(self, collection_id: str, item_id: str, *, visible: JSON | None = None) -> JSON:
        """One item. Called by GET /collections/{cid}/items/{iid}."""
        ...

    def create_item(self, collection_id: str, item: JSON) -> JSON:
        """Insert one item. Called by POST /collections/{cid}/items."""
        ...

    def update_item(self, collection_id: str, item_id: str, item: JSON) -> JSON:
        """Replace one item. Called by PUT/PATCH /collections/{cid}/items/{iid}."""
        ...

    def delete_item(self, collection_id: str, item_id: str) -> None:
        """Delete one item. Called by DELETE /collections/{cid}/items/{iid}."""
        ...

    def upsert_items(
        self,
        items: Iterable[JSON],
        *,
        collection_id: str | None = None,
        on_conflict: OnConflict = "error",
        batch_size: int = 1000,
        on_invalid: Callable[[JSON, InvalidItemError], None] | None = None,
    ) -> LoadReport:
        """Write many items in batches, each batch in one transaction. Items name their
        collection in ``collection`` unless ``collection_id`` is given. Called by
        ``eoshare load``, ingest and ItemCollection POSTs. A batch that fails is rolled
        back whole. An invalid item raises ``InvalidItemError``, unless ``on_invalid``
        is given: then it is passed there, counted in ``LoadReport.invalid`` and skipped."""
        ...

    # --- search ------------------------------------------------------------------
    def search(self, query: SearchQuery) -> ItemPage:
        """Items matching a query, one page. Called by /search and /collections/{cid}/items."""
        ...

    def iter_items(self, collection_id: str | None = None) -> Iterator[JSON]:
        """Every item (of one collection), streamed. For exports and checks."""
        ...

    def queryables(self, collection_id: str | None = None) -> JSON:
        """The JSON schema of the fields a filter may use. Called by /queryables."""
        ...

    def close(self) -> None: ...
