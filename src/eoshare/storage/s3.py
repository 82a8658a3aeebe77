"""An S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph...) through obstore.

Built by ``eoshare.storage.open_store`` for URLs like::

    s3://bucket/optional/prefix?endpoint=http://127.0.0.1:8333&region=us-east-1

Credentials come from the keyword arguments (the ``EOSHARE_S3__*`` settings) or else from
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``). Keys are the
same relative '/'-separated paths as in the local store and pass the same checks.

Failures are translated at this boundary (:func:`_translate`): an absent object is a
``NotFoundError``; anything else (connection refused, timeouts, 5xx, bad credentials) is a
``StorageError``, which the API answers with 503. The HTTP client has short timeouts and
few retries, so a stopped server is reported in seconds, and obstore opens fresh
connections afterwards, so service resumes without a restart when the server returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, quote, urlparse

import obstore
import obstore.exceptions
from obstore.store import S3Store as _ObS3Store

from eoshare.errors import EoshareError, InvalidRequestError, NotFoundError, StorageError
from eoshare.storage.base import StoredObject
from eoshare.storage.local import check_key
from eoshare.storage.s3raw import RawBody, get_body

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

_CHUNK = 1024 * 1024
# Multipart parts for large uploads; S3 needs at least 5 MiB per part but the last.
_PART = 8 * 1024 * 1024
SHA256_ATTRIBUTE = "eoshare-sha256"


@contextlib.contextmanager
def _translate(what: str, key: str | None = None) -> Iterator[None]:
    """obstore's errors -> eoshare's: absent is NotFoundError, the rest StorageError."""
    try:
        yield
    except EoshareError:
        raise
    except (obstore.exceptions.NotFoundError, FileNotFoundError) as exc:
        raise NotFoundError(f"no object {key!r} in the store") from exc
    except (obstore.exceptions.BaseError, OSError, RuntimeError, ValueError) as exc:
        # obstore's messages are long multi-line chains; the first line says enough.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"the object store failed to {what}: {first[:300]}") from exc


async def _empty() -> AsyncIterator[memoryview]:
    return
    yield  # an async generator that yields nothing


class _RangeReader(io.RawIOBase):
    """A seekable raw reader over one object, each read a ranged GET (for ``open``)."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or len(view) == 0:
            return 0
        end = min(self._size, self._pos + len(view))
        data = self._store.read_range(self._key, self._pos, end)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n


class S3Store:
    """Asset bytes in an S3 bucket, under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 3.0,
        max_retries: int = 2,
        stream_timeout_s: float = 24 * 3600.0,
    ) -> None:
        if not bucket:
            raise InvalidRequestError("an s3:// storage URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.region = region or os.environ.get("AWS_REGION") or "us-east-1"
        self._access_key_id = access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
        self._secret_access_key = secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
        self._session_token = session_token or os.environ.get("AWS_SESSION_TOKEN")
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        config: S3Config = {"region": self.region}
        if self.endpoint:
            config["endpoint"] = self.endpoint
            config["virtual_hosted_style_request"] = False
        if self._access_key_id and self._secret_access_key:
            config["access_key_id"] = self._access_key_id
            config["secret_access_key"] = self._secret_access_key
            if self._session_token:
                config["session_token"] = self._session_token
        else:
            config["skip_signature"] = True
        client: ClientConfig = {
            "allow_http": bool(self.endpoint and self.endpoint.startswith("http://")),
            "connect_timeout": timedelta(seconds=connect_timeout_s),
            "timeout": timedelta(seconds=timeout_s),
        }
        retry: RetryConfig = {
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=max(5.0, connect_timeout_s * 2)),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=1),
                "base": 2.0,
            },
        }
        # obstore's timeout bounds a whole request, body included: bodies streamed to a
        # client (a large file at 15 MB/s takes minutes) get a client of their own whose
        # bound is long; the object's stat, made just before, still fails in seconds
        streaming: ClientConfig = {**client, "timeout": timedelta(seconds=stream_timeout_s)}
        with _translate("configure the client"):
            self._s3 = _ObS3Store(
                bucket,
                prefix=self.prefix or None,
                config=config,
                client_options=client,
                retry_config=retry,
            )
            self._s3_bodies = _ObS3Store(
                bucket,
                prefix=self.prefix or None,
                config=config,
                client_options=streaming,
                retry_config=retry,
            )
        query = f"?endpoint={quote(self.endpoint, safe=':/')}" if self.endpoint else ""
        if region:
            query += ("&" if query else "?") + f"region={quote(self.region)}"
        self.url = f"s3://{bucket}/{self.prefix}{query}" if self.prefix else f"s3://{bucket}{query}"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Store:
        """``s3://bucket/prefix?endpoint=...&region=...``; ``options`` add credentials."""
        parsed = urlparse(url)
        params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(params) - {"endpoint", "region"}
        if unknown:
            raise InvalidRequestError(
                f"unknown parameter(s) {', '.join(sorted(unknown))} in storage URL {url!r}; "
                "use endpoint= and region="
            )
        endpoint = params.get("endpoint")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise InvalidRequestError(f"endpoint {endpoint!r} must be an http(s):// URL")
        clean = {k: v for k, v in options.items() if v is not None}
        return cls(
            parsed.netloc,
            prefix=parsed.path,
            endpoint=endpoint,
            region=params.get("region") or clean.pop("region", None),
            **clean,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    # --- helpers ---------------------------------------------------------------------
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, in one request."""
        with _translate(f"read {key!r}", key):
            return bytes(obstore.get_range(self._s3, check_key(key), start=start, end=end))

    # --- the Store protocol ----------------------------------------------------------
    def put_file(self, key: str, source: Path) -> StoredObject:
        """Upload a local file (multipart when large); S3 makes it visible only whole.
        The sha256 is computed while the file is read and kept as object metadata."""
        check_key(key)
        try:
            src = open(source, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise NotFoundError(f"{source}: no such file") from exc
        except OSError as exc:
            raise StorageError(f"{source}: cannot read: {exc.strerror}") from exc
        digest = hashlib.sha256()
        size = 0
        with src:
            # One pass to hash (the hash goes into the metadata, which S3 needs up front),
            # then the upload itself reads the file again in parts.
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            src.seek(0)
            sha = f"sha256:{digest.hexdigest()}"
            with _translate(f"write {key!r}", key):
                obstore.put(
                    self._s3,
                    key,
                    src,
                    attributes={SHA256_ATTRIBUTE: sha},
                    chunk_size=_PART,
                    max_concurrency=4,
                )
        return StoredObject(key=key, size=size, sha256=sha)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        check_key(key)
        sha = f"sha256:{hashlib.sha256(data).hexdigest()}"
        with _translate(f"write {key!r}", key):
            obstore.put(
                self._s3, key, bytes(data), attributes={SHA256_ATTRIBUTE: sha}, use_multipart=False
            )
        return StoredObject(key=key, size=len(data), sha256=sha)

    def stat(self, key: str) -> StoredObject:
        check_key(key)
        with _translate(f"stat {key!r}", key):
            meta = obstore.head(self._s3, key)
        return StoredObject(
            key=key,
            size=int(meta["size"]),
            etag=(meta.get("e_tag") or "").strip('"') or None,
            modified=meta["last_modified"].timestamp(),
        )

    def sha256(self, key: str) -> str:
        """Hash an object's bytes now: ``sha256:<hex>``."""
        digest = hashlib.sha256()
        for chunk in self.iter_bytes(key):
            digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"

    def open(self, key: str) -> BinaryIO:
        """A seekable reader; each buffered read is one ranged GET."""
        size = self.stat(key).size
        return io.BufferedReader(_RangeReader(self, key, size), buffer_size=_CHUNK)

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> Iterator[bytes]:
        """One GET (ranged when asked) streamed in chunks. The request is made here, so a
        missing key or a stopped server fails before the first byte is promised."""
        check_key(key)
        options: Any = {}
        if end is not None:
            if end <= start:
                return iter(())
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        with _translate(f"read {key!r}", key):
            result = obstore.get(self._s3_bodies, key, options=options)
            stream = result.stream(min_chunk_size=chunk_size)
        return self._chunks(stream, key, chunk_size)

    def stream_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> AsyncIterator[memoryview]:
        """``iter_bytes`` for an event loop: the request is made here (a missing key or a
        stopped server fails before the first byte is promised), the body is read by
        obstore's own runtime and handed over without a thread hop or a copy per chunk.
        Called by downloads."""
        check_key(key)
        options: Any = {}
        if end is not None:
            if end <= start:
                return _empty()
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        with _translate(f"read {key!r}", key):
            result = obstore.get(self._s3_bodies, key, options=options)
            stream = result.stream(min_chunk_size=chunk_size)
        return self._achunks(stream, key)

    def raw_body(self, key: str, start: int, end: int, *, whole: bool) -> RawBody | None:
        """The bytes ``[start, end)`` (``whole``: the object, ``end`` its size) on a socket
        of their own, for the server to splice to a client (``eoshare.storage.s3raw``);
        None over TLS (an ``https://`` endpoint) or when the server's answer is not one
        to pass on unchanged: then read with ``stream_bytes``. Called by downloads."""
        check_key(key)
        if not (self.endpoint and self.endpoint.startswith("http://")) or end <= start:
            return None
        if self._access_key_id and self._secret_access_key:
            url = self.presigned_url(key, 300)
            if url is None:
                return None
        else:
            full = f"{self.prefix}/{key}" if self.prefix else key
            url = f"{self.endpoint}/{quote(self.bucket)}/{quote(full)}"
        return get_body(
            url,
            start=start,
            end=end,
            whole=whole,
            key=key,
            connect_timeout_s=self._connect_timeout_s,
            timeout_s=self._timeout_s,
        )

    @staticmethod
    async def _achunks(stream: Any, key: str) -> AsyncIterator[memoryview]:
        with _translate(f"read {key!r}", key):
            async for chunk in stream:
                yield memoryview(chunk)

    @staticmethod
    def _chunks(stream: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        with _translate(f"read {key!r}", key):
            for chunk in stream:
                # min_chunk_size is a minimum; keep each piece under the asked size.
                # One copy per piece (out of obstore's buffer), not two.
                view = memoryview(chunk)
                for i in range(0, len(view), chunk_size):
                    yield bytes(view[i : i + chunk_size])

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        with contextlib.suppress(NotFoundError), _translate(f"delete {key!r}", key):
            obstore.delete(self._s3, key)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix`` (a string prefix of keys), in key order, streamed."""
        # obstore's prefix matches whole path segments; narrow by the folder part of
        # ``prefix`` on the server, then by the rest here.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        with _translate("list the store"):
            for batch in obstore.list(self._s3, prefix=folder, chunk_size=1000):
                for meta in batch:
                    if meta["path"].startswith(prefix):
                        yield meta["path"]

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A presigned GET of the object on the S3 server (None for an anonymous bucket:
        there is nothing to sign with)."""
        if not (self._access_key_id and self._secret_access_key):
            return None
        with _translate(f"sign a URL for {key!r}", key):
            url: str = obstore.sign(self._s3, "GET", key, timedelta(seconds=expires_s))
        return url

    def gdal_path(self, key: str) -> tuple[str, dict[str, str]]:
        """``/vsis3/bucket/prefix/key`` and the options GDAL needs to reach the server."""
        check_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        options: dict[str, str] = {"AWS_REGION": self.region}
        if self.endpoint:
            parsed = urlparse(self.endpoint)
            options["AWS_S3_ENDPOINT"] = parsed.netloc
            options["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if self._access_key_id and self._secret_access_key:
            options["AWS_ACCESS_KEY_ID"] = self._access_key_id
            options["AWS_SECRET_ACCESS_KEY"] = self._secret_access_key
            if self._session_token:
                options["AWS_SESSION_TOKEN"] = self._session_token
        else:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        return f"/vsis3/{self.bucket}/{full}", options
