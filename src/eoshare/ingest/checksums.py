"""Checksums in the forms STAC and the store use.

The STAC file extension writes ``file:checksum`` as a multihash in hex: the code of the
hash function (0x12 = sha2-256), the digest length (0x20 = 32 bytes), then the digest.
Called by ingest (to fill ``file:checksum``) and by checks that compare stored bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1024 * 1024
_SHA2_256_PREFIX = "1220"


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks (files can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def multihash_sha256(hexdigest: str) -> str:
    """A sha256 hex digest as a sha2-256 multihash: ``1220`` + the digest."""
    return _SHA2_256_PREFIX + hexdigest.lower()


def hexdigest_from_multihash(value: str) -> str:
    """The inverse of :func:`multihash_sha256`; raises ValueError for other hashes."""
    if not value.lower().startswith(_SHA2_256_PREFIX) or len(value) != 68:
        raise ValueError(f"{value!r} is not a sha2-256 multihash")
    return value[4:].lower()
