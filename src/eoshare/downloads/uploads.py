"""Resumable uploads by providers: a file sent in numbered, checksummed chunks, checked
whole, then ingested. Nothing is visible in the catalogue or the store before
``complete`` has verified every byte; an interrupted upload resumes by sending the
chunks that ``status`` lists as missing.

State: ``<data_dir>/uploads.db``, or the ``downloads`` schema of ``EOSHARE_DATABASE``
(one row per upload, one per received chunk), and the
staged bytes in ``<data_dir>/uploads/<id>/<file name>`` (one sparse file written at each
chunk's offset). Built once in ``create_app``; called by the /uploads routes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoshare.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
    storage_error,
)
from eoshare.statedb import Migration, StateDB

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_chunks (
    upload TEXT NOT NULL,
    idx INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (upload, idx)
);
""",
    )
]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")


@dataclass
class Upload:
    id: str
    owner: str
    created: float
    expires: float
    # receiving -> complete (ingested) | failed (checksum) ; aborted rows are deleted
    state: str
    collection: str
    filename: str
    size: int
    sha256: str
    chunk_bytes: int
    item_id: str | None = None
    received: dict[int, int] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.size // self.chunk_bytes))

    def chunk_size(self, index: int) -> int:
        if index == self.chunk_count - 1:
            return self.size - index * self.chunk_bytes
        return self.chunk_bytes

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.chunk_count) if i not in self.received]

    @property
    def received_bytes(self) -> int:
        return sum(self.received.values())


class UploadBook:
    """Uploads in the state database (``db_path``: a SQLite file or a PostgreSQL URL)
    plus their staged bytes under ``root``."""

    def __init__(self, db_path: str | Path, root: Path) -> None:
        self.db = StateDB(db_path, area="downloads", component="uploads", migrations=_MIGRATIONS)
        self.root = root

    def staged_path(self, upload: Upload) -> Path:
        return self.root / upload.id / upload.filename

    def create(
        self,
        owner: str,
        *,
        collection: str,
        filename: str,
        size: int,
        sha256: str,
        chunk_bytes: int,
        max_bytes: int,
        ttl_s: int,
        item_id: str | None = None,
    ) -> Upload:
        if not _FILENAME.match(filename) or filename in (".", ".."):
            raise InvalidRequestError(
                f"filename {filename!r} must be a plain file name (letters, digits, . _ + -)"
            )
        if size < 1:
            raise InvalidRequestError("size must be at least 1 byte")
        if size > max_bytes:
            raise InvalidRequestError(f"size {size} is over the upload limit of {max_bytes} bytes")
        sha = sha256.lower().removeprefix("sha256:")
        if not _HEX64.match(sha):
            raise InvalidRequestError("sha256 must be 64 hex digits (the whole file's sha256)")
        now = time.time()
        upload = Upload(
            id=secrets.token_urlsafe(16), owner=owner, created=now, expires=now + ttl_s,
            state="receiving", collection=collection, filename=filename, size=size,
            sha256=sha, chunk_bytes=chunk_bytes, item_id=item_id,
        )  # fmt: skip
        path = self.staged_path(upload)
        try:
            path.parent.mkdir(parents=True, exist_ok=False)
            with open(path, "wb") as f:
                f.truncate(size)  # sparse: the disk fills as chunks arrive
        except OSError as exc:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise storage_error(f"cannot stage the upload: {exc.strerror or exc}", exc) from exc
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO uploads (id, owner, created, expires, state, doc) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (upload.id, owner, now, upload.expires, upload.state, json.dumps(_doc(upload))),
            )
        return upload

    def get(self, upload_id: str) -> Upload:
        """The upload, or NotFoundError. An upload past its expiry time takes nothing
        more: it is purged (its staged bytes and its row) and answered as gone."""
        upload = self._load(upload_id)
        if upload.expires < time.time():
            self.delete(upload)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upload.expires))
            raise NotFoundError(f"upload {upload_id!r} expired at {when}; start a new upload")
        return upload

    def _load(self, upload_id: str) -> Upload:
        row = self.db.one(
            "SELECT id, owner, created, expires, state, doc FROM uploads WHERE id = ?",
            (upload_id,),
        )
        if row is None:
            raise NotFoundError(f"no upload {upload_id!r}")
        uid, owner, created, expires, state, text = row
        doc = json.loads(text)
        chunks = self.db.read("SELECT idx, size FROM upload_chunks WHERE upload = ?", (upload_id,))
        return Upload(
            id=uid, owner=owner, created=created, expires=expires,
            state=state, collection=doc["collection"], filename=doc["filename"],
            size=doc["size"], sha256=doc["sha256"], chunk_bytes=doc["chunk_bytes"],
            item_id=doc.get("item_id"), received={int(i): int(n) for i, n in chunks},
            result=doc.get("result", {}),
        )  # fmt: skip

    def write_chunk(self, upload: Upload, index: int, data: bytes, sha256: str | None) -> Upload:
        """Check one chunk (its length and, when given, its sha256) and write it at its
        offset; sending a chunk again replaces it (a retried request is harmless)."""
        if upload.state != "receiving":
            raise ConflictError(f"upload {upload.id!r} is {upload.state}; it takes no chunks")
        if not 0 <= index < upload.chunk_count:
            raise InvalidRequestError(
                f"chunk {index} is out of range: this upload has chunks 0..{upload.chunk_count - 1}"
            )
        expected = upload.chunk_size(index)
        if len(data) != expected:
            raise InvalidRequestError(
                f"chunk {index} must be {expected} bytes, got {len(data)}; send it again"
            )
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256.lower().removeprefix("sha256:"):
            raise InvalidRequestError(
                f"chunk {index} does not match its sha256 (corrupted in transit); send it again"
            )
        path = self.staged_path(upload)
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, index * upload.chunk_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except FileNotFoundError as exc:
            raise NotFoundError(f"upload {upload.id!r} has no staged file any more") from exc
        except OSError as exc:
            raise storage_error(
                f"cannot store chunk {index}: {exc.strerror or exc}; send it again later", exc
            ) from exc
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO upload_chunks (upload, idx, size, sha256) VALUES (?,?,?,?) "
                "ON CONFLICT (upload, idx) DO UPDATE SET size = excluded.size, "
                "sha256 = excluded.sha256",
                (upload.id, index, len(data), digest),
            )
        upload.received[index] = len(data)
        return upload

    def verify(self, upload: Upload) -> Path:
        """The staged file, once every chunk is in and the whole sha256 matches."""
        if upload.missing:
            shown = ", ".join(str(i) for i in upload.missing[:10])
            raise ConflictError(
                f"upload {upload.id!r} is missing {len(upload.missing)} chunk(s): {shown}"
            )
        path = self.staged_path(upload)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while block := f.read(1024 * 1024):
                    digest.update(block)
        except OSError as exc:
            raise StorageError(f"cannot read the staged upload: {exc.strerror or exc}") from exc
        if digest.hexdigest() != upload.sha256:
            self.set_state(upload, "failed", {"error": "the file's sha256 does not match"})
            raise InvalidRequestError(
                f"upload {upload.id!r}: the whole file's sha256 {digest.hexdigest()} does not "
                f"match the declared {upload.sha256}; start a new upload"
            )
        return path

    def set_state(self, upload: Upload, state: str, result: dict[str, Any] | None = None) -> None:
        upload.state = state
        if result is not None:
            upload.result = result
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE uploads SET state = ?, doc = ? WHERE id = ?",
                (state, json.dumps(_doc(upload)), upload.id),
            )

    def discard_bytes(self, upload: Upload) -> None:
        shutil.rmtree(self.root / upload.id, ignore_errors=True)
        with self.db.tx() as conn:
            conn.execute("DELETE FROM upload_chunks WHERE upload = ?", (upload.id,))

    def delete(self, upload: Upload) -> None:
        self.discard_bytes(upload)
        with self.db.tx() as conn:
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload.id,))

    def expired(self, now: float | None = None) -> list[Upload]:
        """Uploads past their expiry time, whatever their state (housekeeping)."""
        cutoff = now if now is not None else time.time()
        sql = "SELECT id FROM uploads WHERE expires < ? ORDER BY expires"
        rows = self.db.read(sql, (cutoff,))
        found = []
        for row in rows:
            try:
                found.append(self._load(row[0]))
            except NotFoundError:  # deleted meanwhile (another worker)
                continue
        return found

    def purge_expired(self, *, dry_run: bool = False) -> list[Upload]:
        """Delete expired uploads: staged bytes and rows. Safe to run from several
        processes at once (each step tolerates what another already removed)."""
        found = self.expired()
        if not dry_run:
            for upload in found:
                self.delete(upload)
        return found

    def stray_folders(self, older_than_s: float) -> list[Path]:
        """Staging folders without an upload row (a crash between the two), untouched
        for ``older_than_s`` seconds."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than_s
        stray = []
        for folder in self.root.iterdir():
            try:
                old = folder.is_dir() and folder.stat().st_mtime < cutoff
            except OSError:
                continue
            known = self.db.one("SELECT 1 FROM uploads WHERE id = ?", (folder.name,))
            if old and known is None:
                stray.append(folder)
        return stray

    def close(self) -> None:
        self.db.close()


def _doc(u: Upload) -> dict[str, Any]:
    return {
        "collection": u.collection, "filename": u.filename, "size": u.size,
        "sha256": u.sha256, "chunk_bytes": u.chunk_bytes, "item_id": u.item_id,
        "result": u.result,
    }  # fmt: skip
