"""The node's state databases, on SQLite or PostgreSQL, behind one small helper.

Every store of node state (access, login failures, orders, uploads, jobs, disaster,
peers) opens a :class:`StateDB` from one *location*:

* a path (``<data_dir>/access.db``, or ``:memory:``): a SQLite file as before, in WAL
  mode, a few connections reused by every thread, writes of this process serialized by a
  lock and those of other processes by SQLite's busy timeout;
* a ``postgresql://`` URL (``EOSHARE_DATABASE``): a schema per *area* (``access``,
  ``downloads``, ``processing``, ``disaster``, ``federation``) in that database, reached
  through a small connection pool whose sessions have ``search_path`` set to the area, so
  that the stores' SQL names its tables unqualified. A write transaction takes an advisory
  lock of its area first: writers of one area queue as they do on SQLite (``BEGIN
  IMMEDIATE``), so read-modify-write code stays correct in any number of processes.

The stores write one SQL for both engines: ``?`` placeholders, ``INSERT OR IGNORE``
(rewritten as ``ON CONFLICT DO NOTHING``), ``INSERT ... ON CONFLICT (...) DO UPDATE``,
``RETURNING``. Their schemas are versioned migrations (:class:`Migration`): each
component records the versions it applied in ``schema_migrations``; the DDL is written
for SQLite and translated for PostgreSQL (``INTEGER`` is ``BIGINT``, ``REAL`` is ``DOUBLE
PRECISION``, an ``INTEGER PRIMARY KEY`` an identity column).

Engine errors come out as eoshare's: a unique or foreign-key violation as
:class:`~eoshare.errors.ConflictError`, a full disk as
:class:`~eoshare.errors.InsufficientStorageError`, anything else as
:class:`~eoshare.errors.StorageError`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import queue
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from eoshare.errors import ConflictError, InsufficientStorageError, StorageError, database_error
from eoshare.sqlitewal import enable_wal

Params = Sequence[Any]
AREAS = ("access", "downloads", "processing", "disaster", "federation")
_PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(_PG_PREFIXES)


@dataclass(frozen=True)
class Migration:
    """Version ``version`` of a component's schema: SQL statements separated by ``;``
    (written for SQLite; translated for PostgreSQL), or per engine with ``postgres``."""

    version: int
    sql: str
    postgres: str | None = None


class Cursor(Protocol):
    """What ``execute`` gives back on either engine."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn:
    """The connection of one transaction: ``execute`` and ``executemany`` with ``?``
    placeholders on either engine."""

    def __init__(self, db: StateDB, raw: Any) -> None:
        self._db = db
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        if self._db.postgres:
            cur: Cursor = self.raw.execute(_pg_sql(sql), tuple(params))
            return cur
        return self.raw.execute(sql, tuple(params))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if self._db.postgres:
            with self.raw.cursor() as cur:
                cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])
        else:
            self.raw.executemany(sql, [tuple(r) for r in rows])


class StateDB:
    """One area's state on SQLite (``location`` a path) or PostgreSQL (a URL).

    ``component`` names the store whose ``migrations`` are applied (several stores may
    share an area: access and login failures, orders and uploads)."""

    def __init__(
        self,
        location: str | Path,
        *,
        area: str,
        component: str,
        migrations: Sequence[Migration],
        pool_size: int = 8,
    ) -> None:
        if area not in AREAS:
            raise ValueError(f"unknown state area {area!r}")
        self.area = area
        self.component = component
        self.postgres = is_postgres(location)
        self.location = str(location)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._conns: list[sqlite3.Connection] = []  # every SQLite connection opened
        self._conns_lock = threading.Lock()
        self._pool: Any = None
        self._memory = self.location == ":memory:"
        # SQLite: at most pool_size connections (one for an in-memory database), reused
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._max_conns = 1 if self._memory else max(1, pool_size)
        if self.postgres:
            self._open_pool(pool_size)
            self.name = f"{area} schema"
        else:
            self.path = Path(self.location)
            self.name = self.path.name
            if not self._memory:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(f"cannot create {self.path.parent}: {exc}") from exc
        self.migrate(migrations)

    # --- connections ------------------------------------------------------------------
    def _open_pool(self, size: int) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        area = self.area

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.adapters.register_loader("numeric", _numeric_loader())

        try:
            with psycopg.connect(self.location, autocommit=True, connect_timeout=30) as conn:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {area}")
            self._pool = ConnectionPool(
                self.location,
                min_size=1,
                max_size=max(1, size),
                kwargs={"autocommit": True, "options": f"-c search_path={area}"},
                configure=configure,
                open=True,
                name=f"eoshare-{area}",
            )
            self._pool.wait(timeout=30)
        except Exception as exc:  # psycopg's errors and the pool's timeout
            if self._pool is not None:
                self._pool.close()
            raise StorageError(
                f"cannot reach the state database ({_redact(self.location)}): {_line(exc)}"
            ) from exc

    @contextlib.contextmanager
    def _sqlite(self) -> Iterator[sqlite3.Connection]:
        """A connection of this thread's transaction, else one of the small pool."""
        active: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if active is not None:
            yield active
            return
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def _checkout(self) -> sqlite3.Connection:
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        with self._conns_lock:
            opening = len(self._conns) < self._max_conns
            if opening:
                try:
                    conn = sqlite3.connect(
                        self.location, timeout=30, isolation_level=None, check_same_thread=False
                    )
                    conn.execute("PRAGMA busy_timeout = 30000")
                    if not self._memory:
                        enable_wal(conn)  # several processes at once (eoshare.sqlitewal)
                        conn.execute("PRAGMA synchronous = NORMAL")
                    conn.execute("PRAGMA foreign_keys = ON")
                except sqlite3.Error as exc:
                    raise database_error(f"cannot open {self.location}", exc) from exc
                self._conns.append(conn)
                return conn
        try:
            return self._idle.get(timeout=60)
        except queue.Empty as exc:
            raise StorageError(f"{self.name}: every connection stayed busy for 60 s") from exc

    @contextlib.contextmanager
    def _pg(self) -> Iterator[Any]:
        active = getattr(self._local, "pg", None)
        if active is not None:  # inside this thread's transaction: see its writes
            yield active
            return
        try:
            with self._pool.connection(timeout=30) as conn:
                yield conn
        except Exception as exc:
            raise _translate(f"cannot use the {self.name}", exc) from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._idle = queue.LifoQueue()
        self._local = threading.local()

    # --- statements -------------------------------------------------------------------
    def read(self, sql: str, params: Params = ()) -> list[Any]:
        """The rows (tuples) of one query."""
        if self.postgres:
            with self._pg() as conn:
                try:
                    return list(conn.execute(_pg_sql(sql), tuple(params)).fetchall())
                except Exception as exc:
                    raise _translate(f"cannot read the {self.name}", exc) from exc
        with self._sqlite() as conn:
            try:
                return conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise _translate(f"cannot read {self.name}", exc) from exc

    def one(self, sql: str, params: Params = ()) -> Any:
        """The first row of a query, or None."""
        rows = self.read(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Params = (), *, queue: bool = True) -> int:
        """One statement in a transaction of its own; the rows it changed. ``queue=False``
        lets an insert that reads nothing (an audit row) skip the area's queue of writers
        on PostgreSQL: one round trip instead of four."""
        if self.postgres and not queue:
            with self._pg() as conn:
                try:
                    return int(conn.execute(_pg_sql(sql), tuple(params)).rowcount)
                except Exception as exc:
                    raise _translate(f"cannot write the {self.name}", exc) from exc
        with self.tx() as tx:
            return tx.execute(sql, params).rowcount

    @contextlib.contextmanager
    def tx(self) -> Iterator[Conn]:
        """A write transaction: committed at the end, rolled back on any exception.
        Writers of one area go one at a time (in this process and in any other)."""
        if self.postgres:
            with self._pg_tx() as pg_conn:
                yield pg_conn
            return
        with self._write_lock, self._sqlite() as conn:
            outer = getattr(self._local, "conn", None)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(f"cannot write {self.name}", exc) from exc
            self._local.conn = conn  # this thread's reads see its own writes
            try:
                yield Conn(self, conn)
            except BaseException as exc:
                # SQLite may have rolled back already (a full disk): nothing to undo then
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(f"cannot write {self.name}", exc) from exc
                raise
            finally:
                self._local.conn = outer
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise _translate(f"cannot write {self.name}", exc) from exc

    @contextlib.contextmanager
    def _pg_tx(self) -> Iterator[Conn]:
        import psycopg

        if getattr(self._local, "pg", None) is not None:
            raise RuntimeError("nested state transactions")
        try:
            with self._pool.connection(timeout=30) as raw:
                try:
                    with raw.transaction():
                        raw.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                        self._local.pg = raw
                        try:
                            yield Conn(self, raw)
                        finally:
                            self._local.pg = None
                except psycopg.Error as exc:
                    raise _translate(f"cannot write the {self.name}", exc) from exc
        except psycopg.Error as exc:  # the pool could not connect
            raise _translate(f"cannot use the {self.name}", exc) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg_pool"):
                raise StorageError(f"cannot use the {self.name}: {_line(exc)}") from exc
            raise

    @functools.cached_property
    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"eoshare-state:{self.area}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # --- migrations -------------------------------------------------------------------
    def migrate(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply this component's migrations not applied yet, each in one transaction;
        the versions applied now."""
        create = (
            "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
            "version INTEGER NOT NULL, applied TEXT NOT NULL, PRIMARY KEY (component, version))"
        )
        applied: list[int] = []
        with self.tx() as conn:
            if self.postgres:
                conn.execute(create.replace("INTEGER", "BIGINT"))
            else:
                conn.raw.execute(create)
        done = {
            int(r[0])
            for r in self.read(
                "SELECT version FROM schema_migrations WHERE component = ?", (self.component,)
            )
        }
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in done:
                continue
            sql = m.postgres if (self.postgres and m.postgres) else m.sql
            with self.tx() as conn:
                if conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                    (self.component, m.version),
                ).fetchone():
                    continue  # another process applied it meanwhile
                for statement in _statements(sql):
                    if self.postgres:
                        conn.raw.execute(pg_ddl(statement))
                    else:
                        conn.raw.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (self.component, m.version, datetime.now(UTC).isoformat()),
                )
            applied.append(m.version)
        return applied


# --- SQL translation ------------------------------------------------------------------
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """A statement written for SQLite, as psycopg takes it."""
    out = sql.replace("%", "%%").replace("?", "%s")
    if _OR_IGNORE.match(out):
        out = _OR_IGNORE.sub("INSERT INTO", out, count=1).rstrip().rstrip(";")
        out += " ON CONFLICT DO NOTHING"
    return out


_IDENTITY = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
_DDL = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.I), _IDENTITY),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
]  # fmt: skip


def pg_ddl(statement: str) -> str:
    """A SQLite DDL statement in PostgreSQL's words."""
    if _OR_IGNORE.match(statement):
        return _pg_sql(statement).replace("%%", "%")
    out = statement
    first, rest = _DDL[0], _DDL[1:]
    out = first[0].sub("\0IDENTITY\0", out)
    for pattern, repl in rest:
        out = pattern.sub(repl, out)
    return out.replace("\0IDENTITY\0", first[1])


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# --- errors ---------------------------------------------------------------------------
def _translate(detail: str, exc: BaseException) -> Exception:
    """eoshare's error for an engine's."""
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(f"{detail}: {exc}")
    if isinstance(exc, sqlite3.Error):
        return database_error(detail, exc)
    if isinstance(exc, StorageError | ConflictError):
        return exc
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return StorageError(f"{detail}: {exc}")
    if isinstance(exc, psycopg.errors.IntegrityError):
        return ConflictError(f"{detail}: {_line(exc)}")
    if isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.OutOfMemory):
        return InsufficientStorageError(f"{detail}: no space left for the database")
    return StorageError(f"{detail}: {_line(exc)}")


def _line(exc: BaseException) -> str:
    """An engine's message on one line (PostgreSQL's have a caret line and hints)."""
    return " ".join(str(exc).split())


def _redact(url: str) -> str:
    """A URL without its password."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


@functools.cache
def _numeric_loader() -> type:
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        """``numeric`` (what ``sum()`` of integers gives) as int when whole, else float,
        as SQLite hands them back."""

        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            if text.lstrip("-").isdigit():
                return int(text)
            return float(text)

    return NumericLoader
