"""The default store: a directory on the local disk.

Built by ``eoshare.storage.open_store`` for ``file://`` URLs and plain paths; used by
ingest (``put_file``), downloads and tiles (``open``/``local_path``).

Every write goes to a temporary file in the target's own directory, is fsynced, then
``os.replace``d over the target, so a reader (or a crash) sees the old object or the whole
new one and never a part. Keys are checked before they touch the filesystem: a key is a
relative, '/'-separated path that cannot leave the root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from eoshare.errors import InvalidRequestError, NotFoundError, StorageError, storage_error
from eoshare.storage.base import StoredObject

_CHUNK = 1024 * 1024
# Temporary files start with this; iter_keys hides them and a crash leaves only these.
_TMP_PREFIX = ".eoshare-tmp-"
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative store key, else raise InvalidRequestError.

    Rejected: empty keys, absolute paths, backslashes, control characters (NUL...),
    empty, ``.`` or ``..`` segments, and percent-encoded forms of any of these (a key is
    often taken from a URL path, so ``%2e%2e`` must not slip through a later decode)."""
    if not isinstance(key, str) or not key:
        raise InvalidRequestError("a store key must be a non-empty string")
    # Decode repeatedly so that double encodings (%252e) are caught as well.
    decoded, previous = key, None
    while decoded != previous:
        previous, decoded = decoded, unquote(decoded)
    for form in {key, decoded}:
        if _FORBIDDEN.search(form):
            raise InvalidRequestError(
                f"store key {key!r} must not contain backslashes or control characters"
            )
        if form.startswith("/") or re.match(r"^[A-Za-z]:", form):
            raise InvalidRequestError(f"store key {key!r} must be relative, not absolute")
        for segment in form.split("/"):
            if segment in ("", ".", ".."):
                raise InvalidRequestError(f"store key {key!r} has an empty, '.' or '..' segment")
    if any(seg.startswith(_TMP_PREFIX) for seg in key.split("/")):
        raise InvalidRequestError(f"store key {key!r} uses a reserved name")
    return key


class LocalStore:
    """Asset bytes in a directory tree: key ``a/b/c.tif`` is file ``<root>/a/b/c.tif``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create store directory {self.root}: {exc}") from exc
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # --- helpers ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # Belt and braces: symlinks inside the root could still point outside it.
        try:
            path.resolve().relative_to(self.root)
        except ValueError as exc:
            raise InvalidRequestError(f"store key {key!r} points outside the store") from exc
        return path

    def _write(self, key: str, chunks: Iterator[bytes]) -> StoredObject:
        """Write ``chunks`` to ``key`` atomically, hashing while writing."""
        target = self._path(key)
        digest = hashlib.sha256()
        size = 0
        tmp_name: str | None = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
            tmp_name = None
            self._fsync_dir(target.parent)
        except OSError as exc:
            raise storage_error(f"cannot write {key!r} to the store: {exc}", exc) from exc
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        return StoredObject(key=key, size=size, sha256=f"sha256:{digest.hexdigest()}")

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        # Makes the rename itself durable; not every platform lets a directory be opened.
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # --- the Store protocol ----------------------------------------------------------
    def put_file(self, key: str, source: Path) -> StoredObject:
        """Copy a local file in atomically; the sha256 is computed during the copy."""
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed below, generator reads it
        except FileNotFoundError as exc:
            raise NotFoundError(f"{source}: no such file") from exc
        except OSError as exc:
            raise StorageError(f"{source}: cannot read: {exc.strerror}") from exc
        with src:

            def chunks() -> Iterator[bytes]:
                while chunk := src.read(_CHUNK):
                    yield chunk

            return self._write(key, chunks())

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Write small bytes atomically (thumbnails, manifests)."""
        return self._write(key, iter([bytes(data)]))

    def stat(self, key: str) -> StoredObject:
        """Size of one object; the checksum is not kept, so it is None here."""
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {key!r} in the store") from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc
        if not path.is_file():
            raise NotFoundError(f"no object {key!r} in the store")
        return StoredObject(
            key=key,
            size=st.st_size,
            etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
            modified=st.st_mtime,
        )

    def sha256(self, key: str) -> str:
        """Hash an object's bytes now: ``sha256:<hex>``. Used by checks and tests."""
        digest = hashlib.sha256()
        with self.open(key) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        if path.is_dir():
            raise NotFoundError(f"no object {key!r} in the store")
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no object {key!r} in the store") from exc
        except OSError as exc:
            raise StorageError(f"cannot open {key!r}: {exc}") from exc

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of one object, read with ``pread`` in chunks; the file is
        opened before the first chunk is asked for, so a missing key fails early."""
        f = self.open(key)
        return read_file_range(f, key, start, end, chunk_size)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove an object (absent is fine) and the directories it leaves empty."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc
        # Tidy empty parents so that a rolled-back ingest leaves no empty folders.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every object key under ``prefix`` (a string prefix of keys), sorted."""
        try:
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                for name in sorted(filenames):
                    if name.startswith(_TMP_PREFIX):
                        continue
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if key.startswith(prefix):
                        yield key
        except OSError as exc:
            raise StorageError(f"cannot list the store: {exc}") from exc

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A local directory has no URL of its own: downloads stream it."""
        return None

    def gdal_path(self, key: str) -> tuple[str, dict[str, str]]:
        """The file path itself; GDAL needs no options for a local file."""
        return str(self._path(key)), {}


def read_file_range(
    f: BinaryIO, key: str, start: int, end: int | None, chunk_size: int = _CHUNK
) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of an open file, read with ``pread`` in chunks; closes the
    file when done (or when the generator is closed: a client that went away)."""
    fd = f.fileno()
    try:
        pos = start
        while end is None or pos < end:
            want = chunk_size if end is None else min(chunk_size, end - pos)
            try:
                chunk = os.pread(fd, want, pos)
            except OSError as exc:
                raise StorageError(f"cannot read {key!r}: {exc}") from exc
            if not chunk:
                break
            pos += len(chunk)
            yield chunk
    finally:
        f.close()
