"""A state database keeps a connection per thread; threads come and go (anyio retires a
worker thread after 10 s idle and starts new ones under load), so a connection must go
with its thread: 300+ SQLite descriptors were open after 5 minutes of 64 clients."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from eoshare.statedb import Migration, StateDB

SCHEMA = [Migration(1, "CREATE TABLE t (x INTEGER)")]


def _open_files(folder: Path) -> int:
    n = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            n += os.readlink(fd).startswith(str(folder))
    return n


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db", area="access", component="t", migrations=SCHEMA)
    try:
        for _ in range(40):
            t = threading.Thread(target=db.read, args=("SELECT count(*) FROM t",))
            t.start()
            t.join()
        # this thread's connection (database, -wal, -shm), not one per thread that ran
        # (before: three files for each of the 40 threads)
        assert _open_files(tmp_path) <= 6
    finally:
        db.close()
    assert _open_files(tmp_path) == 0


def test_an_in_memory_database_is_one_connection_for_every_thread() -> None:
    db = StateDB(":memory:", area="access", component="t", migrations=SCHEMA)
    try:
        with db.tx() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        seen: list[object] = []
        for _ in range(3):
            t = threading.Thread(target=lambda: seen.append(db.read("SELECT count(*) FROM t")))
            t.start()
            t.join()
        assert seen == [[(1,)]] * 3
    finally:
        db.close()
