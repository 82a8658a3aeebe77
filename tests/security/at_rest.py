"""Look for secrets in a node's SQLite files the way an attacker with a copy of the data
directory would: through SQLite (every table, every column, every row) after a
checkpoint has moved what the write-ahead log holds into the database, and in the raw
bytes of the ``-wal`` files (which keep rows until a checkpoint)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path


def wal_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + "-wal")
    return wal.read_bytes() if wal.is_file() else b""


def checkpoint(db: Path, *, attempts: int = 50) -> None:
    """``PRAGMA wal_checkpoint(TRUNCATE)``, retried while another connection (a live
    node) holds a read transaction; fails the caller when it never completes."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        for _ in range(attempts):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return
            time.sleep(0.1)
    finally:
        conn.close()
    raise AssertionError(f"could not checkpoint {db}: a reader kept it busy")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def rows_holding(db: Path, needles: Iterable[str]) -> list[str]:
    """``table.column`` of every value (read through SQLite) that contains a needle."""
    wanted = [n for n in needles if n]
    found: list[str] = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert tables, f"{db} has no tables"
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cur.description]
            for row in cur:
                for column, value in zip(columns, row, strict=True):
                    text = _text(value)
                    found += [f"{table}.{column}" for n in wanted if n in text]
    finally:
        conn.close()
    return found


def secrets_at_rest(data_dir: Path, needles: Iterable[str]) -> list[str]:
    """Where any needle lies in the SQLite files of ``data_dir`` (recursively): in a
    ``-wal`` file as it stands, and in any table after a checkpoint. Empty: nowhere."""
    wanted = [n for n in needles if n]
    dbs = sorted(p for p in data_dir.rglob("*.db") if p.is_file())
    assert dbs, f"no SQLite files under {data_dir}"
    found: list[str] = []
    for db in dbs:
        wal = wal_bytes(db)
        found += [f"{db.name}-wal" for n in wanted if n.encode() in wal]
        checkpoint(db)
        found += [f"{db.name}:{where}" for where in rows_holding(db, wanted)]
        raw = db.read_bytes()  # free pages too, after the checkpoint
        found += [f"{db.name} (file)" for n in wanted if n.encode() in raw]
    return found
