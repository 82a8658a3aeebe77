"""No secret is kept at rest: token secrets, passwords, session cookies, the admin token
and the link-signing keys never reach a table of any SQLite file of the node.

The check reads every table and column through SQLite after ``PRAGMA
wal_checkpoint(TRUNCATE)``, and the raw ``-wal`` files before it: the databases run in
WAL mode, so a fresh row lives in ``access.db-wal`` and reading ``access.db``'s bytes
alone (as the first tests did) could never find it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eoshare.access.agreements import Member
from eoshare.access.store import AccessStore
from live import live_node

from .at_rest import checkpoint, rows_holding, secrets_at_rest, wal_bytes

ADMIN_TOKEN = "at-rest-admin-token-5f1e2d3c4b5a69788796"
PASSWORD = "a long and secret passphrase 42"


def test_the_scan_finds_a_secret_that_is_stored(tmp_path: Path) -> None:
    """The check can fail: a secret written on purpose is found in the WAL before the
    checkpoint and in its table after it, while the main file's bytes alone miss it."""
    store = AccessStore(tmp_path / "access.db")
    try:
        store.put_member(Member("ke", "Kenya", "KE"), who="t")
        store.put_user("k", member="ke", roles=["analyst"], password=PASSWORD, who="t")
        _, secret = store.create_token("k", days=1, who="t")
        assert secrets_at_rest(tmp_path, [secret, PASSWORD]) == []
        # a deliberate leak, as a careless change would write it
        with store._tx() as conn:
            conn.execute(
                "INSERT INTO history (at, who, what, subject, detail) VALUES (?, ?, ?, ?, ?)",
                ("2026-01-01T00:00:00Z", "t", "token.create", "x", json.dumps({"s": secret})),
            )
        db = tmp_path / "access.db"
        # where the old test looked: the row is not there yet, it is in the WAL
        assert secret.encode() not in db.read_bytes()
        assert secret.encode() in wal_bytes(db)
        found = secrets_at_rest(tmp_path, [secret])
        assert "access.db-wal" in found
        assert "access.db:history.detail" in found
        # after the checkpoint the WAL is empty and SQLite still finds the row
        assert wal_bytes(db) == b""
        assert rows_holding(db, [secret]) == ["history.detail"]
    finally:
        store.close()


def test_the_scan_covers_every_table(tmp_path: Path) -> None:
    """A secret in any column of any table is found, blobs included."""
    import sqlite3

    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE a (x INTEGER, y TEXT)")
    conn.execute("CREATE TABLE b (z BLOB)")
    conn.execute("INSERT INTO a VALUES (1, 'nothing here')")
    conn.execute("INSERT INTO b VALUES (?)", (b"\x00prefix-s3cr3t-value\x00",))
    conn.commit()
    checkpoint(db)
    assert rows_holding(db, ["s3cr3t"]) == ["b.z"]
    conn.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("eoshare-at-rest")
    env = {
        "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN,
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        "EOSHARE_LOG_LEVEL": "info",
    }
    with live_node(data_dir, env, ready_path="/conformance") as url:
        yield url, data_dir


def test_a_live_node_keeps_no_secret(node: tuple[str, Path]) -> None:
    """Members, a user with a password, API tokens (created by an operator and by the
    user), a browser session: none of their secrets, nor the admin token or the signing
    keys, is in any table or WAL of the node's SQLite files."""
    url, data_dir = node
    op = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.put("/admin/members/ke-kspa", json={"name": "KSPA", "country": "KE"}, headers=op)
        assert r.status_code == 200, r.text
        r = http.put(
            "/admin/users/wanjiru",
            json={"member": "ke-kspa", "roles": ["provider-admin"], "password": PASSWORD},
            headers=op,
        )
        assert r.status_code == 200, r.text
        r = http.post("/admin/users/wanjiru/tokens", json={"days": 1}, headers=op)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        own = http.post(
            "/admin/users/wanjiru/tokens",
            json={"days": 1, "label": "ci"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert own.status_code == 201, own.text
        r = http.post("/auth/login", json={"username": "wanjiru", "password": PASSWORD})
        assert r.status_code == 200, r.text
        session = r.cookies.get("eoshare_session")
        assert session
        assert http.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).is_success
    keys = json.loads((data_dir / "signing-keys.json").read_text())
    needles = [token, own.json()["token"], PASSWORD, session, ADMIN_TOKEN]
    needles += [k["secret"] for k in keys]
    # the node is still running: the WAL holds the fresh rows when the scan starts
    assert wal_bytes(data_dir / "access.db"), "the test meant to catch rows in the WAL"
    assert secrets_at_rest(data_dir, needles) == []
    # but what is stored is there: the scan reads the right rows
    assert rows_holding(data_dir / "access.db", ["wanjiru"])
