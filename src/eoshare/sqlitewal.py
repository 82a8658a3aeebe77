"""Turning a SQLite connection to WAL when several processes open a new file at once.

``PRAGMA journal_mode=WAL`` needs the file to itself for a moment. When two processes
open a new database together (``eoshare serve --workers N`` starting on a fresh data
directory), each can hold a lock the other waits for; SQLite then answers "database is
locked" at once instead of calling the busy handler (waiting would never end), whatever
the busy timeout. Trying again shortly succeeds: by then the other process has finished.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

TRIES = 100
PAUSE_S = 0.05


def retry_locked(step: Callable[[], object]) -> None:
    """Run ``step`` (statements on a connection), again while SQLite says "locked"."""
    for attempt in range(TRIES):
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == TRIES - 1:
                raise
            time.sleep(PAUSE_S)


def enable_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another process holds the file."""
    retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
