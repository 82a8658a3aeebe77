"""Leases: background work that must run once per node, not once per process.

Several processes serve one node (``serve --workers N``, or several ``eoshare serve`` on
one data directory or one PostgreSQL database). Periodic work (housekeeping, and any
scheduled chore) is done by whichever process holds the chore's lease: a row
``(name, holder, expires_at)`` taken or renewed with one atomic statement:

    INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE holder = me OR expires_at < now
    RETURNING holder

so that two processes asking at the same instant cannot both win. The holder renews its
lease each time it works; a holder that dies (kill -9) simply stops renewing, and another
process takes the lease over once it has expired. Times are the processes' wall clocks
(Unix seconds): processes on several machines need synchronised clocks (NTP), and a
lease's ``ttl_s`` should be well above their skew.

The table is small and lives in the node's shared state: ``<data_dir>/node.db`` on an
embedded node, schema ``eoshare_node`` of the PostgreSQL database when the node's state
(or catalogue) is there."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoshare.errors import StorageError
from eoshare.sqlitewal import enable_wal, retry_locked

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    acquired_at REAL NOT NULL
);
"""
_PG_SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS eoshare_node",
    "CREATE TABLE IF NOT EXISTS eoshare_node.leases (name TEXT PRIMARY KEY, "
    "holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, "
    "acquired_at DOUBLE PRECISION NOT NULL)",
)
# taken when free, expired or already ours; acquired_at changes only when the holder does
_ACQUIRE = (
    "INSERT INTO {table} (name, holder, expires_at, acquired_at) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
    "expires_at = excluded.expires_at, acquired_at = CASE WHEN {table}.holder = "
    "excluded.holder THEN {table}.acquired_at ELSE excluded.acquired_at END "
    "WHERE {table}.holder = excluded.holder OR {table}.expires_at < {p} "
    "RETURNING holder"
)


def new_holder() -> str:
    """This process's name as a lease holder: host, pid and a random part (a pid is
    reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: float
    acquired_at: float


class Leases:
    """The lease table of a node. ``location`` is a SQLite path or a ``postgresql://``
    URL. Thread-safe; every call is one short statement."""

    def __init__(self, location: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.location = str(location)
        self.clock = clock
        self.postgres = self.location.startswith(("postgresql://", "postgres://"))
        self._lock = threading.Lock()
        self._db: Any = None
        self._pg: Any = None
        self._ready = False
        if self.postgres:
            self._table, self._p = "eoshare_node.leases", "%s"
        else:
            self._table, self._p = "leases", "?"

    def _open(self) -> None:
        """Connect and create the table, at the first use (an app that is built but
        never started opens nothing)."""
        try:
            if self.postgres:
                # one connection (no pool: a pool's threads would outlive an unclosed
                # app), opened again when it breaks
                self._pg = self._pg_connect()
                for attempt in (1, 2):
                    try:
                        for statement in _PG_SCHEMA:
                            self._pg.execute(statement)
                        break
                    except Exception:
                        # "IF NOT EXISTS" is not atomic in PostgreSQL: two processes
                        # creating the table at once, one fails; it exists then
                        if attempt == 2:
                            raise
                        time.sleep(0.2)
            else:
                Path(self.location).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.location, timeout=30, isolation_level=None, check_same_thread=False
                )
                db = self._db
                # two processes creating the file at once: tried again (eoshare.sqlitewal)
                enable_wal(db)
                retry_locked(lambda: db.executescript(_SQLITE_SCHEMA))
        except Exception as exc:  # sqlite3/psycopg errors, an unwritable folder
            self._close()
            raise StorageError(f"cannot open the lease table: {exc}") from exc
        self._ready = True

    def _pg_connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.location, autocommit=True, connect_timeout=30)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        sql = sql.format(table=self._table, p=self._p)
        try:
            with self._lock:
                if not self._ready:
                    self._open()
                if self._pg is None:
                    return list(self._db.execute(sql, params).fetchall())
                if self._pg.closed or self._pg.broken:
                    self._pg = self._pg_connect()
                return list(self._pg.execute(sql, params).fetchall())
        except Exception as exc:
            raise StorageError(f"cannot use the lease table: {exc}") from exc

    def acquire(self, name: str, holder: str, ttl_s: float, *, now: float | None = None) -> bool:
        """Take or renew lease ``name`` for ``ttl_s`` seconds; False when another holder
        has it and it has not expired."""
        now = self.clock() if now is None else now
        rows = self._execute(_ACQUIRE, (name, holder, now + ttl_s, now, now))
        return bool(rows) and rows[0][0] == holder

    def release(self, name: str, holder: str) -> None:
        """Give the lease up now (on a clean shutdown), so another process need not wait
        for it to expire."""
        self._execute(
            "DELETE FROM {table} WHERE name = {p} AND holder = {p} RETURNING name", (name, holder)
        )

    def get(self, name: str) -> Lease | None:
        rows = self._execute(
            "SELECT name, holder, expires_at, acquired_at FROM {table} WHERE name = {p}", (name,)
        )
        return Lease(*rows[0]) if rows else None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._pg = self._db = None
        self._ready = False


def lease_location(settings: Any) -> str:
    """Where a node's leases live: its PostgreSQL state database when it has one
    (``EOSHARE_DATABASE``), else its PostgreSQL catalogue, else ``<data_dir>/node.db``."""
    database = str(getattr(settings, "database", "") or "")
    if database.startswith(("postgresql://", "postgres://")):
        return database
    catalog = str(getattr(settings, "catalog", "") or "")
    if catalog.startswith(("postgresql://", "postgres://")):
        return catalog
    return str(Path(settings.data_dir) / "node.db")
