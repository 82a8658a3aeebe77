"""The in-process cache of rendered pictures: least recently used out first, bounded in
bytes, safe to share between the server's worker threads."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rendered:
    """A finished picture: its bytes, media type and strong ETag (a hash of the bytes)."""

    content: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, content: bytes, media_type: str) -> Rendered:
        digest = hashlib.blake2b(content, digest_size=16).hexdigest()
        return cls(content, media_type, f'"{digest}"')


class RenderCache:
    """Rendered pictures by key. ``max_bytes`` of 0 stores nothing."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Rendered | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Hashable, value: Rendered) -> None:
        size = len(value.content)
        if size > self.max_bytes // 4:  # one huge picture must not flush everything
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old.content)
            self._entries[key] = value
            self._size += size
            while self._size > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped.content)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0
