"""``ObservedCatalog``: any ``Catalog`` that also says which items it has just written.

The one hook for "new data": ingest, load, transactions, uploads and harvest all write
through the catalogue, so wrapping it once (in ``create_app`` and in the CLI) sees every
write without touching each caller. Listeners receive ``(collection, item id)`` pairs
after the write has committed, a batch at a time; a listener's failure never fails the
write. Everything else is passed through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from eoshare.catalog.base import Catalog, LoadReport, OnConflict
from eoshare.errors import InvalidItemError

JSON = dict[str, Any]
ItemRef = tuple[str, str]
Listener = Callable[[list[ItemRef]], None]
log = logging.getLogger("eoshare.catalog")


class ObservedCatalog:
    """Delegates to ``inner``; calls ``listeners`` with the items each write committed."""

    def __init__(self, inner: Catalog, listeners: list[Listener] | None = None) -> None:
        self.inner = inner
        self.listeners: list[Listener] = listeners if listeners is not None else []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _notify(self, refs: list[ItemRef]) -> None:
        if not refs:
            return
        for listener in self.listeners:
            try:
                listener(refs)
            except Exception:
                log.exception("an item listener failed")

    @staticmethod
    def _ref(item: JSON, collection_id: str | None = None) -> ItemRef:
        return (str(collection_id or item.get("collection", "")), str(item.get("id", "")))

    def create_item(self, collection_id: str, item: JSON) -> JSON:
        out = self.inner.create_item(collection_id, item)
        self._notify([self._ref(out, collection_id)])
        return out

    def update_item(self, collection_id: str, item_id: str, item: JSON) -> JSON:
        out = self.inner.update_item(collection_id, item_id, item)
        self._notify([(collection_id, item_id)])
        return out

    def upsert_items(
        self,
        items: Iterable[JSON],
        *,
        collection_id: str | None = None,
        on_conflict: OnConflict = "error",
        batch_size: int = 1000,
        on_invalid: Callable[[JSON, InvalidItemError], None] | None = None,
    ) -> LoadReport:
        if not self.listeners:
            return self.inner.upsert_items(
                items, collection_id=collection_id, on_conflict=on_conflict,
                batch_size=batch_size, on_invalid=on_invalid,
            )  # fmt: skip
        # One inner call per batch (each is one transaction there too), so that the
        # listeners hear about each batch once it is committed, without holding a whole
        # load's items in memory.
        total = LoadReport()
        iterator: Iterator[JSON] = iter(items)
        while True:
            chunk = list(islice(iterator, max(1, batch_size)))
            if not chunk:
                break
            invalid: set[int] = set()

            def note_invalid(
                item: JSON, exc: InvalidItemError, invalid: set[int] = invalid
            ) -> None:
                invalid.add(id(item))
                if on_invalid is not None:
                    on_invalid(item, exc)

            report = self.inner.upsert_items(
                chunk, collection_id=collection_id, on_conflict=on_conflict,
                batch_size=len(chunk), on_invalid=note_invalid if on_invalid else None,
            )  # fmt: skip
            total.inserted += report.inserted
            total.updated += report.updated
            total.skipped += report.skipped
            total.invalid += report.invalid
            total.collections_created.extend(report.collections_created)
            if report.inserted or report.updated:
                self._notify([self._ref(i, collection_id) for i in chunk if id(i) not in invalid])
        return total

    def write_prepared(self, rows: list[Any], *, on_conflict: OnConflict = "error") -> LoadReport:
        """``eoshare load``'s batches of prepared rows (``SqliteCatalog.write_prepared``),
        heard by the listeners like any other write."""
        report: LoadReport = self.inner.write_prepared(  # type: ignore[attr-defined]
            rows, on_conflict=on_conflict
        )
        if report.inserted or report.updated:
            self._notify([(str(r.collection), str(r.id)) for r in rows])
        return report
