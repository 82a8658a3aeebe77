"""The state-database helper on both engines: versioned migrations applied once per
component (and by whichever process comes first), one SQL for both (placeholders, a
literal ``%``, ``INSERT OR IGNORE``, upserts, ``RETURNING``), rollback on error, and the
engines' errors as eoshare's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from eoshare.errors import ConflictError, StorageError
from eoshare.statedb import Migration, StateDB

V1 = Migration(1, """
CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, owner TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL, score REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('hits', 0)
""")  # fmt: skip
V2 = Migration(2, "CREATE INDEX IF NOT EXISTS notes_score ON notes (score)")


def _open(location: Any, *migrations: Migration) -> StateDB:
    return StateDB(location, area="processing", component="notes", migrations=migrations)


def test_migrations_run_once_and_add_what_is_new(state_location: Any) -> None:
    where = state_location("notes.db")
    db = _open(where, V1)
    db.execute("UPDATE counters SET value = 5")
    db.close()
    again = _open(where, V1, V2)  # a newer eoshare: version 2 only
    assert [r[0] for r in again.read(
        "SELECT version FROM schema_migrations WHERE component = 'notes' ORDER BY version"
    )] == [1, 2]  # fmt: skip
    assert again.one("SELECT value FROM counters") == (5,)  # v1's insert did not run again
    assert again.migrate([V1, V2]) == []
    again.close()


def test_one_sql_for_both_engines(state_location: Any) -> None:
    db = _open(state_location("notes.db"), V1)
    try:
        with db.tx() as conn:
            new = conn.execute(
                "INSERT INTO notes (owner, text, score) VALUES (?, ?, ?) RETURNING id",
                ("ann", "100% sure", 2.5),
            ).fetchone()
            conn.executemany(
                "INSERT INTO notes (owner, text) VALUES (?, ?)", [("bob", "b"), ("cy", "c")]
            )
        assert new == (1,)
        assert db.read("SELECT owner FROM notes WHERE text LIKE '%sure' ORDER BY id") == [
            ("ann",)]  # fmt: skip
        assert (
            db.execute(
                "INSERT INTO notes (owner, text) VALUES (?, ?) ON CONFLICT (owner) "
                "DO UPDATE SET text = excluded.text",
                ("bob", "changed"),
            )
            == 1
        )
        assert db.execute("INSERT OR IGNORE INTO counters VALUES ('hits', 9)") == 0
        # sums of integers come back as integers, averages as floats
        assert db.one("SELECT sum(id), avg(score) FROM notes") == (6, pytest.approx(2.5 / 3))
        assert db.one("SELECT text FROM notes WHERE owner = ?", ("bob",)) == ("changed",)
    finally:
        db.close()


def test_errors_roll_back_and_come_out_as_eoshares(state_location: Any) -> None:
    db = _open(state_location("notes.db"), V1)
    try:
        db.execute("INSERT INTO notes (owner, text) VALUES ('ann', 'a')")
        with pytest.raises(ConflictError), db.tx() as conn:
            conn.execute("UPDATE counters SET value = 1")
            conn.execute("INSERT INTO notes (owner, text) VALUES ('ann', 'again')")
        with pytest.raises(KeyError), db.tx() as conn:
            conn.execute("UPDATE counters SET value = 2")
            raise KeyError("the caller's own error")
        assert db.one("SELECT value FROM counters") == (0,)  # both rolled back
        with pytest.raises(StorageError, match="no_such_table"):
            db.read("SELECT * FROM no_such_table")
    finally:
        db.close()


def test_writers_of_one_area_take_turns(state_location: Any) -> None:
    """Read-modify-write from many threads over four handles (as four processes have)
    loses no update: writers of an area go one at a time on both engines."""
    where = state_location("notes.db")
    dbs = [_open(where, V1) for _ in range(4)]

    def bump(n: int) -> None:
        with dbs[n % 4].tx() as conn:
            value = conn.execute("SELECT value FROM counters WHERE name = 'hits'").fetchone()[0]
            conn.execute("UPDATE counters SET value = ? WHERE name = 'hits'", (value + 1,))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(bump, range(80)))
        assert dbs[0].one("SELECT value FROM counters") == (80,)
    finally:
        for db in dbs:
            db.close()


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    from live import free_port

    url = f"postgresql://eoshare:s3cret-pw@127.0.0.1:{free_port()}/eoshare"
    with pytest.raises(StorageError) as caught:
        _open(url, V1)
    message = str(caught.value)
    assert message.startswith("cannot reach the state database (postgresql://eoshare:***@")
    assert "\n" not in message and "s3cret-pw" not in message
