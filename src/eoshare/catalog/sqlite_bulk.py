"""Checkpoints of the catalogue's WAL in a thread of their own while ``eoshare load`` writes.

SQLite in WAL mode writes every page twice: once into the WAL at each commit, once into
the database file when the WAL is checkpointed. By default the committing connection
runs the checkpoint itself as soon as the WAL holds 1,000 pages, so each batch of a bulk
load (a dozen megabytes of item documents) waited for a copy of itself and two fsyncs.
During a bulk load (``SqliteCatalog.bulk_load``) the writer's transactions run with
``wal_autocheckpoint`` off (and a larger page cache, ``BULK_CACHE_KIB``) and a
``WalCheckpointer`` thread, on its own connection,
checkpoints (``PASSIVE``: never blocking the writer nor any reader) after each commit,
while the writer goes on with the next batch.

The WAL only starts over from its beginning when a write transaction begins after a
complete checkpoint, so the writer waits for the checkpoint in flight whenever the WAL
has grown past ``limit_bytes`` (and whenever the checkpoints fall more than one commit
behind): the file stays bounded. Crash safety is SQLite's own:
each batch is one transaction, and a checkpoint may be interrupted at any point.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("eoshare.catalog")

# the WAL may grow to this many bytes before the writer waits for a checkpoint
WAL_LIMIT_BYTES = 128 * 1024 * 1024
# the writer's page cache during a bulk load: the indexes' pages that random inserts
# touch (ids, times, the R*Tree) stay in it instead of being read again and again (at
# 100k items: a tenth less CPU per item; more at 1M). A bound, whatever the load's size.
BULK_CACHE_KIB = 256 * 1024


class WalCheckpointer:
    """A thread that checkpoints after each commit it is told of (``committed``)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        limit_bytes: int = WAL_LIMIT_BYTES,
        cache_kib: int = BULK_CACHE_KIB,
    ) -> None:
        self.cache_kib = cache_kib
        self._conn = connect()
        (self._page,) = self._conn.execute("PRAGMA page_size").fetchone()
        self.limit_frames = max(limit_bytes // max(self._page, 512), 1)
        self._cond = threading.Condition()
        self._asked = 0  # commits told of
        self._done = 0  # ...of which a checkpoint has run after
        self._frames = 0  # frames in the WAL at the last checkpoint
        self._stop = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="eoshare-wal-checkpoint")
        self._thread.daemon = True
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._done >= self._asked and not self._stop:
                    self._cond.wait()
                if self._done >= self._asked:  # stopped, nothing left to do
                    return
                target = self._asked
            frames = self._frames
            try:
                row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                frames = int(row[1])
            except sqlite3.Error as exc:  # a full disk...: the writer's next commit says so
                log.warning("background checkpoint failed: %s", exc)
            except BaseException as exc:  # pragma: no cover - never expected
                self._error = exc
            with self._cond:
                self._done = target
                self._frames = frames
                self._cond.notify_all()

    def before_write(self, conn: sqlite3.Connection) -> None:
        """Called before a write transaction begins: wait for the checkpoint in flight
        when the WAL is over its limit (so that this transaction starts it over), and
        leave the checkpoints of this transaction's commit to the thread."""
        with self._cond:
            # The checkpoints keep at most one commit behind; and while the last one
            # found the WAL over its limit, the next transaction waits for all of them
            # (it then starts the WAL over).
            while self._thread.is_alive() and (
                self._asked - self._done > 1
                or (self._frames >= self.limit_frames and self._done < self._asked)
            ):
                self._cond.wait()
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA cache_size=-{int(self.cache_kib)}")

    def committed(self, conn: sqlite3.Connection) -> None:
        """Called after a write transaction committed (or failed)."""
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_autocheckpoint=1000")  # SQLite's default again
        with self._cond:
            self._asked += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Wait for the last checkpoint; then try to empty the WAL file (not waiting
        for readers: a server reading meanwhile keeps it as it is)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA busy_timeout=0")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        self._conn.close()
