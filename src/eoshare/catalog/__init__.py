"""The catalogue of STAC collections and items: the ``Catalog`` protocol and its
backends (SQLite by default)."""

from __future__ import annotations

from eoshare.catalog.base import Catalog, ItemPage, LoadReport, SearchQuery, SortField
from eoshare.errors import InvalidRequestError

__all__ = ["Catalog", "ItemPage", "LoadReport", "SearchQuery", "SortField", "open_catalog"]


def open_catalog(url: str, *, count_limit: int = 100_000) -> Catalog:
    """The catalogue for a URL: ``sqlite:///abs/path.db``, ``sqlite://:memory:`` or
    ``postgresql://user@host:port/database`` (pgstac, installed there when missing)."""
    if url.startswith("sqlite://"):
        from eoshare.catalog.sqlite import SqliteCatalog

        path = url.removeprefix("sqlite://")
        if path.startswith("/") and path != "/:memory:":
            return SqliteCatalog(path, count_limit=count_limit)
        memory = path in (":memory:", "/:memory:")
        return SqliteCatalog(":memory:" if memory else path, count_limit=count_limit)
    if url.startswith(("postgresql://", "postgres://")):
        from eoshare.catalog.pgstac import PgstacCatalog

        return PgstacCatalog(url, count_limit=count_limit)
    raise InvalidRequestError(
        f"unsupported catalogue URL {url!r}; use sqlite:///path/to/catalog.db or "
        "postgresql://user@host:port/database"
    )
