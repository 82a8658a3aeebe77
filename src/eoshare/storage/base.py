"""The store contract: where asset bytes live. A local directory by default; an
S3-compatible object store later (issue: downloads and storage). Keys are relative,
'/'-separated paths such as ``sentinel-2/S2A_.../B04.tif``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class StoredObject:
    """What the store knows about one object."""

    key: str
    size: int
    # "sha256:<hex>"; None where the store does not know it
    sha256: str | None = None
    # a validator that changes whenever the bytes do (mtime+size locally, the S3 ETag);
    # used for HTTP ETag/If-Range. None where the store has none.
    etag: str | None = None
    # last modification, seconds since the epoch (for Last-Modified); None if unknown
    modified: float | None = None


class Store(Protocol):
    """Asset bytes. Raises ``NotFoundError`` for an absent key, ``InvalidRequestError``
    for a key that tries to leave the store, ``StorageError`` for I/O failures."""

    url: str

    def put_file(self, key: str, source: Path) -> StoredObject:
        """Copy a local file in, atomically: readers see the old object or the whole
        new one, never a part. Called by ingest and uploads."""
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Write small bytes atomically (thumbnails, manifests)."""
        ...

    def stat(self, key: str) -> StoredObject:
        """Size (and checksum if known) of one object."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable, seekable binary stream. Called by downloads and tiles."""
        ...

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of an object (``end`` None: to its end), streamed in
        chunks of at most ``chunk_size``. Called by downloads, orders and migrate; a
        closed generator releases its file or connection."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove an object; absent is not an error."""
        ...

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under a prefix. Called by ``eoshare verify``."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for readers that want one (GDAL), or None for remote stores."""
        ...

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL that fetches the object directly from the store without other
        credentials, valid for ``expires_s`` seconds (S3's presigned GET), or None where
        the store has no such thing. Called by downloads when an operator enables
        redirects (``EOSHARE_DOWNLOADS__REDIRECT``)."""
        ...

    def gdal_path(self, key: str) -> tuple[str, dict[str, str]]:
        """A path GDAL/rasterio can open (a file path, or ``/vsis3/bucket/key``) and the
        GDAL configuration options it needs (endpoint, credentials). Called by tiles."""
        ...
