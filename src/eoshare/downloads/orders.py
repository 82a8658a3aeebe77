"""Bulk orders: a search or a list of ids turned into a durable list of assets to fetch.

Kept in ``<data_dir>/orders.db``. An order belongs to the caller who made it (its
``owner`` is the signed-link ``sub`` of that caller) and expires ``order_ttl_s`` after it
was made; its manifests carry links signed until then. Built once in ``create_app``;
called by the /orders routes.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eoshare.errors import NotFoundError
from eoshare.statedb import Migration, StateDB

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_owner ON orders (owner, expires);
""",
    )
]


@dataclass(frozen=True)
class OrderAsset:
    """One file of an order."""

    collection: str
    item: str
    asset: str
    key: str
    size: int | None
    # sha256 hex from the item's file:checksum, when it has one
    sha256: str | None
    type: str | None = None


@dataclass
class Order:
    id: str
    owner: str
    created: float
    expires: float
    assets: list[OrderAsset]
    items: list[tuple[str, str]]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires

    @property
    def total_bytes(self) -> int:
        return sum(a.size or 0 for a in self.assets)

    def to_doc(self) -> dict[str, Any]:
        return {
            "assets": [asdict(a) for a in self.assets],
            "items": [list(i) for i in self.items],
            "skipped": self.skipped,
        }


class OrderBook:
    """Orders in the state database (a SQLite file or a PostgreSQL URL)."""

    def __init__(self, path: str | Path) -> None:
        self.db = StateDB(path, area="downloads", component="orders", migrations=_MIGRATIONS)

    def create(
        self,
        owner: str,
        assets: list[OrderAsset],
        items: list[tuple[str, str]],
        skipped: list[dict[str, str]],
        ttl_s: int,
    ) -> Order:
        now = time.time()
        order = Order(secrets.token_urlsafe(16), owner, now, now + ttl_s, assets, items, skipped)
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO orders (id, owner, created, expires, doc) VALUES (?, ?, ?, ?, ?)",
                (order.id, owner, order.created, order.expires, json.dumps(order.to_doc())),
            )
        return order

    def get(self, order_id: str) -> Order:
        row = self.db.one(
            "SELECT id, owner, created, expires, doc FROM orders WHERE id = ?", (order_id,)
        )
        if row is None:
            raise NotFoundError(f"no order {order_id!r}")
        oid, owner, created, expires, text = row
        doc = json.loads(text)
        return Order(
            id=oid,
            owner=owner,
            created=created,
            expires=expires,
            assets=[OrderAsset(**a) for a in doc["assets"]],
            items=[(c, i) for c, i in doc["items"]],
            skipped=doc.get("skipped", []),
        )

    def open_count(self, owner: str) -> int:
        row = self.db.one(
            "SELECT count(*) FROM orders WHERE owner = ? AND expires > ?", (owner, time.time())
        )
        return int(row[0])

    def purge(self, older_than_s: float = 30 * 24 * 3600, *, dry_run: bool = False) -> list[str]:
        """Forget orders that expired more than ``older_than_s`` ago; their ids. (Orders
        stage no files: their bytes stream from the store.)"""
        cutoff = time.time() - older_than_s
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT id FROM orders WHERE expires < ? ORDER BY expires", (cutoff,)
            ).fetchall()
            if not dry_run:
                conn.execute("DELETE FROM orders WHERE expires < ?", (cutoff,))
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()
