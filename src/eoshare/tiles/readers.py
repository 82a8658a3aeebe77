"""Open datasets kept between requests: ``ReaderPool``.

Opening a COG for every tile (what rio-tiler's examples and titiler do) reads its header
and directories again and drops GDAL's cached blocks of it each time. The pool keeps
open ``rio_tiler.io.Reader``\\ s, least recently used out first, bounded in number; a
reader is lent to one request at a time (GDAL datasets are not safe to share between
threads), given back when the request is done, and closed instead when the request
failed. Keys name the stored file *and its version* (the store key's path, the asset's
checksum and, for a local file, its modification time and size), so a file replaced in
the store is opened afresh.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from rio_tiler.errors import RioTilerError


class ReaderPool:
    """Idle open readers by key; at most ``size`` of them (0 keeps none)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: OrderedDict[Hashable, list[Any]] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()
        self.opened = 0
        self.reused = 0

    def _take(self, key: Hashable) -> Any | None:
        with self._lock:
            idle = self._idle.get(key)
            if not idle:
                return None
            reader = idle.pop()
            if not idle:
                del self._idle[key]
            self._count -= 1
            self.reused += 1
            return reader

    def _give(self, key: Hashable, reader: Any) -> None:
        dropped: list[Any] = []
        with self._lock:
            self._idle.setdefault(key, []).append(reader)
            self._idle.move_to_end(key)
            self._count += 1
            while self._count > self.size and self._idle:
                old_key, old = next(iter(self._idle.items()))
                dropped.append(old.pop(0))
                self._count -= 1
                if not old:
                    del self._idle[old_key]
        for r in dropped:
            _close(r)

    @contextlib.contextmanager
    def borrow(self, key: Hashable, make: Callable[[], Any]) -> Iterator[Any]:
        """An open reader for ``key`` (``make()`` opens one when none is idle), lent to
        the caller alone until the block ends."""
        if self.size <= 0:
            reader = make()
            try:
                yield reader
            finally:
                _close(reader)
            return
        reader = self._take(key)
        if reader is None:
            reader = make()
            with self._lock:
                self.opened += 1
        try:
            yield reader
        except RioTilerError:  # outside the data, a band that does not exist: it is fine
            self._give(key, reader)
            raise
        except BaseException:
            _close(reader)  # a failed read may leave it in any state
            raise
        self._give(key, reader)

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        with self._lock:
            readers = [r for idle in self._idle.values() for r in idle]
            self._idle.clear()
            self._count = 0
        for r in readers:
            _close(r)


def _close(reader: Any) -> None:
    with contextlib.suppress(Exception):
        reader.close()
