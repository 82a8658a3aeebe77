"""A zip archive written while it is sent: entries are stored (COGs are compressed
already), sizes and CRCs go in data descriptors, ZIP64 where needed, and nothing is
held in memory beyond one chunk."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+=,-]+")


def safe_segment(text: str) -> str:
    """One folder or file name that stays where it is put on any disk: letters, digits
    and ``_.@+=,-`` only (others become ``_``), no leading dot, never ``..``, never empty."""
    out = _UNSAFE.sub("_", text).replace("..", "_").lstrip(".")[:200]
    return out or "_"


def entry_name(*segments: str) -> str:
    """A relative archive path (zip entry, Metalink file name) made of safe segments:
    it can never be absolute nor climb out of the folder it is unpacked in."""
    return "/".join(safe_segment(s) for s in segments)


def check_entry_name(name: str) -> str:
    """Refuse a name that is absolute, has a drive, a backslash or a ``..`` segment."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(f"unsafe archive entry name {name!r}")
    return name


class _Sink(io.RawIOBase):
    """An unseekable writable that hands out what was written since the last drain."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        b = bytes(data)
        self._parts.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def stream_zip(
    entries: Iterable[tuple[str, Callable[[], Iterator[bytes]]]],
    on_entry: Callable[[str, int], None] | None = None,
) -> Iterator[bytes]:
    """Zip bytes for ``(name, open_chunks)`` pairs; ``on_entry(name, nbytes)`` after
    each entry is written whole (the audit record)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, open_chunks in entries:
            check_entry_name(name)
            written = 0
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            with zf.open(info, "w", force_zip64=True) as dest:
                chunks = open_chunks()
                try:
                    for chunk in chunks:
                        dest.write(chunk)
                        written += len(chunk)
                        if out := sink.drain():
                            yield out
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
            if on_entry is not None:
                on_entry(name, written)
            if out := sink.drain():
                yield out
    if out := sink.drain():
        yield out
