"""Asset storage: the ``Store`` protocol and its backends."""

from __future__ import annotations

from typing import Any

from eoshare.storage.base import Store, StoredObject

__all__ = ["Store", "StoredObject", "open_store"]


def open_store(url: str, **s3_options: Any) -> Store:
    """The store for a URL: ``file:///path`` (or a plain path) is a local directory;
    ``s3://bucket/prefix?endpoint=...&region=...`` an S3-compatible object store, with
    ``s3_options`` (access_key_id, secret_access_key, region...) over the AWS_* env."""
    from eoshare.storage.local import LocalStore

    if url.startswith("s3://"):
        from eoshare.storage.s3 import S3Store

        return S3Store.from_url(url, **s3_options)

    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalStore(unquote(urlparse(url).path))
    if "://" not in url:
        return LocalStore(url)
    from eoshare.errors import InvalidRequestError

    raise InvalidRequestError(
        f"unsupported storage URL {url!r}; use file:///path or s3://bucket/prefix"
    )
