"""The body of an S3 object on a plain socket, for a zero-copy download.

``S3Store.raw_body`` asks the S3 server for an object (or a range of it) with one
HTTP/1.1 GET of a presigned URL (obstore signs it with SigV4; an anonymous bucket needs
no signature) on a socket of its own, reads the response's status line and headers, and
hands back the connected socket, positioned at the first byte of the body. The download
route gives that socket to the server's zero-copy extension (``eoshare.api.zerocopy``),
which splices the body from it to the client's socket: the bytes never pass through
Python (obstore's client reads them into its buffers, joins them into parts and
Python writes each part to the client: three copies per byte, and as much CPU per
byte as the S3 server's own).

Only for an ``http://`` endpoint (TLS needs the bytes in user space): for ``https://``,
and for any answer that is not exactly what was asked (no ``Content-Length``, a chunked
body, a range ignored, a redirect), ``None`` is returned and the caller takes obstore's
path. A missing object is ``NotFoundError``; a refusal or server error is
``StorageError``, as on obstore's path.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from eoshare.errors import NotFoundError, StorageError

# an S3 server's response headers fit in this
_MAX_HEAD = 64 * 1024


@dataclass
class RawBody:
    """A connected socket whose next ``length - len(head)`` bytes are the body; ``head``
    holds the body's first bytes, read together with the headers. Close it when done."""

    sock: socket.socket
    head: bytes
    length: int
    closed: bool = field(default=False, repr=False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def _request_target(url: str) -> tuple[str, int, str, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return host, port, parts.netloc, target


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the status line and headers, the body's first bytes read with them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(_MAX_HEAD)
        if not chunk:
            raise StorageError("the object store closed the connection before answering")
        data += chunk
        if len(data) > _MAX_HEAD and b"\r\n\r\n" not in data:
            raise StorageError("the object store sent an overlong response head")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def get_body(
    url: str,
    *,
    start: int,
    end: int,
    whole: bool,
    key: str,
    connect_timeout_s: float,
    timeout_s: float,
) -> RawBody | None:
    """GET ``url`` (``http://`` only), the bytes ``[start, end)`` of the object (all of
    them when ``whole``); the socket with the body ahead, or None when the answer is
    not one this path can pass on unchanged (the caller then reads through obstore)."""
    if not url.startswith("http://"):
        return None
    host, port, netloc, target = _request_target(url)
    lines = [f"GET {target} HTTP/1.1", f"Host: {netloc}", "Accept-Encoding: identity"]
    if not whole:
        lines.append(f"Range: bytes={start}-{end - 1}")
    lines += ["Connection: close", "", ""]
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except OSError as exc:
        raise StorageError(f"the object store failed to read {key!r}: {exc}") from exc
    ok = False
    try:
        sock.settimeout(timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        head, rest = _read_head(sock)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 404:
            raise NotFoundError(f"no object {key!r} in the store")
        if status in (401, 403) or status >= 500:
            raise StorageError(f"the object store failed to read {key!r}: HTTP {status}")
        length = end - start
        if status != (200 if whole else 206):
            return None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return None
        if headers.get("content-length", "") != str(length):
            return None
        if not whole and not headers.get("content-range", "").startswith(
            f"bytes {start}-{end - 1}/"
        ):
            return None
        if len(rest) > length:
            return None
        sock.setblocking(False)
        ok = True
        return RawBody(sock, rest, length)
    except OSError as exc:
        raise StorageError(f"the object store failed to read {key!r}: {exc}") from exc
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                sock.close()
