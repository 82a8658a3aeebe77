"""``eoshare.sqlitewal``: WAL switched on although another process holds the new file for
a moment (as two ``serve --workers`` processes starting on a fresh data directory do:
SQLite then says "database is locked" at once, whatever the busy timeout)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from eoshare.sqlitewal import enable_wal


def test_wal_is_switched_on_once_the_other_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE t (x)")
    # no busy handler at all: every wait is the helper's own
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        conn.execute("PRAGMA journal_mode=WAL")
    threading.Timer(0.3, holder.execute, args=("COMMIT",)).start()
    enable_wal(conn)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    holder.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        enable_wal(conn)
