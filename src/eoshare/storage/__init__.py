"""Asset storage: the ``Store`` protocol and its backends."""

from __future__ import annotations

from eoshare.storage.base import Store, StoredObject

__all__ = ["Store", "StoredObject", "open_store"]


def open_store(url: str) -> Store:
    """The store for a URL: ``file:///path`` (or a plain path) is a local directory."""
    from eoshare.storage.local import LocalStore

    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalStore(unquote(urlparse(url).path))
    if "://" not in url:
        return LocalStore(url)
    from eoshare.errors import InvalidRequestError

    raise InvalidRequestError(f"unsupported storage URL {url!r}; use file:///path")
