"""The peers registry: which nodes this node talks to, their keys, what each may say for
whom, their health, and harvest cursors. SQLite (``<data_dir>/federation.db``) or the
``federation`` schema of ``EOSHARE_DATABASE`` (``eoshare.statedb``), plain SQL in this
one module.

A peer is either ``eoshare`` (a node with an Ed25519 key, checked by its fingerprint when
added; requests to it are signed and may carry who is asking) or ``stac`` (any STAC API:
read-only, unsigned, anonymous).

``trusted_members`` is the per-peer trust setting: when *that peer acts as a hub* and
forwards a caller of member M, this node accepts the statement only if M is listed (or
``*`` is). Otherwise the forwarded caller is treated as anonymous.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from eoshare.errors import ConflictError, InvalidRequestError, NotFoundError
from eoshare.freshness import VersionCheck
from eoshare.statedb import Conn, Migration, StateDB

PeerKind = Literal["eoshare", "stac"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS peers (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    fingerprint TEXT,
    public_key TEXT,
    member TEXT,
    trusted_members TEXT NOT NULL DEFAULT '[]',
    collections TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    added TEXT NOT NULL,
    checked TEXT,
    status TEXT,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS harvest_cursors (
    peer TEXT NOT NULL,
    collection TEXT NOT NULL,
    cursor TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (peer, collection)
);
CREATE TABLE IF NOT EXISTS harvest_runs (
    peer TEXT PRIMARY KEY,
    started TEXT,
    finished TEXT,
    items INTEGER,
    deleted INTEGER,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
""",
    ),
    # harvest schedules; the replay cache shared by every process of the node
    Migration(
        2,
        """
ALTER TABLE peers ADD COLUMN harvest_every_s INTEGER;
ALTER TABLE peers ADD COLUMN harvest_window TEXT;
CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, until REAL NOT NULL);
""",
    ),
    # the spatial extents of the collections a peer shows (a search elsewhere skips it)
    Migration(3, "ALTER TABLE peers ADD COLUMN extents TEXT;"),
]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(
            f"peer name {name!r} is not valid: lower-case letters, digits, '-' and '_'"
        )
    return name


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    kind: PeerKind
    fingerprint: str | None = None
    public_key: str | None = None  # base64 of the raw Ed25519 key
    member: str | None = None
    trusted_members: frozenset[str] = field(default_factory=frozenset)
    # collections this peer holds, as last seen (None: unknown, always asked)
    collections: tuple[str, ...] | None = None
    enabled: bool = True
    added: str = ""
    checked: str | None = None
    status: str | None = None
    detail: str | None = None
    # the harvest schedule (federation.schedule): seconds between harvests (None: by
    # hand only) and an optional UTC window "HH:MM-HH:MM"
    harvest_every_s: int | None = None
    harvest_window: str | None = None
    # the bounding boxes of those collections, as last seen (None: unknown, always asked)
    extents: tuple[tuple[float, float, float, float], ...] | None = None

    def trusts(self, member: str | None) -> bool:
        """Whether this node accepts this peer's word that a caller belongs to ``member``."""
        return member is not None and (
            member in self.trusted_members or "*" in self.trusted_members
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "member": self.member,
            "trusted_members": sorted(self.trusted_members),
            "collections": list(self.collections) if self.collections is not None else None,
            "enabled": self.enabled,
            "added": self.added,
            "checked": self.checked,
            "status": self.status,
            "detail": self.detail,
            "harvest_every_s": self.harvest_every_s,
            "harvest_window": self.harvest_window,
            "extents": [list(b) for b in self.extents] if self.extents is not None else None,
        }


_COLUMNS = (
    "name, url, kind, fingerprint, public_key, member, trusted_members, collections, "
    "enabled, added, checked, status, detail, harvest_every_s, harvest_window, extents"
)


def _peer(row: tuple[Any, ...]) -> Peer:
    collections = json.loads(row[7]) if row[7] is not None else None
    return Peer(
        name=row[0],
        url=row[1],
        kind=row[2],
        fingerprint=row[3],
        public_key=row[4],
        member=row[5],
        trusted_members=frozenset(json.loads(row[6])),
        collections=tuple(collections) if collections is not None else None,
        enabled=bool(row[8]),
        added=row[9],
        checked=row[10],
        status=row[11],
        detail=row[12],
        harvest_every_s=row[13],
        harvest_window=row[14],
        extents=_boxes(row[15]),
    )


def _boxes(text: str | None) -> tuple[tuple[float, float, float, float], ...] | None:
    if text is None:
        return None
    try:
        return tuple((float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in json.loads(text))
    except (ValueError, TypeError, IndexError):
        return None  # unreadable: unknown, the peer is always asked


class PeerRegistry:
    """Built once in ``create_app`` (and by the CLI). Thread-safe: one connection per
    thread, writes in short transactions."""

    def __init__(self, path: str | Path) -> None:
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self._cache: tuple[float, int, list[Peer]] | None = None
        self._nonces_written = 0
        self._db = StateDB(path, area="federation", component="peers", migrations=_MIGRATIONS)
        self._fresh = VersionCheck(max_age_s=float("inf"))

    @contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _bump(self, conn: Conn) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")

    def close(self) -> None:
        self._db.close()

    # --- peers ------------------------------------------------------------------------
    def add(self, peer: Peer) -> Peer:
        check_name(peer.name)
        try:
            with self._tx() as conn:
                conn.execute(
                    f"INSERT INTO peers ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        peer.name,
                        peer.url.rstrip("/"),
                        peer.kind,
                        peer.fingerprint,
                        peer.public_key,
                        peer.member,
                        json.dumps(sorted(peer.trusted_members)),
                        None if peer.collections is None else json.dumps(list(peer.collections)),
                        int(peer.enabled),
                        peer.added or now_iso(),
                        peer.checked,
                        peer.status,
                        peer.detail,
                        peer.harvest_every_s,
                        peer.harvest_window,
                        None
                        if peer.extents is None
                        else json.dumps([list(b) for b in peer.extents]),
                    ),
                )
                self._bump(conn)
        except ConflictError as exc:
            raise ConflictError(f"a peer named {peer.name!r} or at {peer.url} exists") from exc
        return self.get(peer.name)

    def get(self, name: str) -> Peer:
        row = self._db.one(f"SELECT {_COLUMNS} FROM peers WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(f"no peer named {name!r}")
        return _peer(row)

    def all(self) -> list[Peer]:
        rows = self._db.read(f"SELECT {_COLUMNS} FROM peers ORDER BY name")
        return [_peer(r) for r in rows]

    def version(self) -> int:
        row = self._db.one("SELECT value FROM meta WHERE key = 'version'")
        return int(row[0])

    def cached(self, max_age_s: float = 2.0) -> list[Peer]:
        """The peers, re-read at most every ``max_age_s`` (the CLI may change them while
        the server runs). Called on every search: an empty list costs one clock read."""
        now = time.monotonic()
        # in a request, the version is read at its first question (eoshare.freshness);
        # a peer added or disabled by another process counts from the next request
        if self._cache is not None and now - self._cache[0] < max_age_s and not self._fresh.due():
            return self._cache[2]
        version = self.version()
        if self._cache is not None and self._cache[1] == version:
            self._cache = (now, version, self._cache[2])
        else:
            self._cache = (now, version, self.all())
        return self._cache[2]

    def by_fingerprint(self, fingerprint: str) -> Peer | None:
        for fresh in (False, True):
            # an unknown key: look again at once if the registry changed (a peer just added)
            for peer in self.cached(0.0 if fresh else 2.0):
                if peer.fingerprint == fingerprint and peer.enabled:
                    return peer
        return None

    def remove(self, name: str) -> None:
        with self._tx() as conn:
            if conn.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"no peer named {name!r}")
            conn.execute("DELETE FROM harvest_cursors WHERE peer = ?", (name,))
            self._bump(conn)

    def update(self, name: str, **changes: Any) -> Peer:
        allowed = {
            "trusted_members", "collections", "enabled", "checked", "status", "detail",
            "harvest_every_s", "harvest_window", "extents",
        }  # fmt: skip
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidRequestError(f"cannot change {', '.join(sorted(unknown))} of a peer")
        sets, params = [], []
        for key, value in changes.items():
            if key == "trusted_members":
                value = json.dumps(sorted(value))
            elif key in ("collections", "extents"):
                value = (
                    json.dumps([list(v) if isinstance(v, tuple) else v for v in value])
                    if value is not None
                    else None
                )
            elif key == "enabled":
                value = int(value)
            sets.append(f"{key} = ?")
            params.append(value)
        if not sets:
            return self.get(name)
        with self._tx() as conn:
            sql = f"UPDATE peers SET {', '.join(sets)} WHERE name = ?"
            cur = conn.execute(sql, (*params, name))
            if cur.rowcount == 0:
                raise NotFoundError(f"no peer named {name!r}")
            self._bump(conn)
        return self.get(name)

    # --- the replay cache ---------------------------------------------------------------
    def first_time(self, key: str, until: float, now: float) -> bool:
        """Record a signature's nonce until ``until``; False when it was seen and has not
        expired (a replay). In the database, so every process of this node shares it."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO nonces (key, until) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET until = excluded.until WHERE nonces.until < ?",
                (key, until, now),
            )
            fresh = cur.rowcount == 1
            self._nonces_written += 1
            if self._nonces_written % 500 == 0:
                conn.execute("DELETE FROM nonces WHERE until < ?", (now,))
        return fresh

    # --- harvest cursors --------------------------------------------------------------
    def cursor(self, peer: str, collection: str) -> dict[str, Any] | None:
        row = self._db.one(
            "SELECT cursor FROM harvest_cursors WHERE peer = ? AND collection = ?",
            (peer, collection),
        )
        return json.loads(row[0]) if row else None

    def set_cursor(self, peer: str, collection: str, cursor: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO harvest_cursors (peer, collection, cursor, updated) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (peer, collection) "
                "DO UPDATE SET cursor = excluded.cursor, updated = excluded.updated",
                (peer, collection, json.dumps(cursor), now_iso()),
            )

    def harvest_cursors(self, peer: str) -> list[dict[str, Any]]:
        """Each collection's harvest cursor of a peer and when it last moved."""
        rows = self._db.read(
            "SELECT collection, cursor, updated FROM harvest_cursors WHERE peer = ? "
            "ORDER BY collection",
            (peer,),
        )
        return [{"collection": c, "cursor": json.loads(cur), "updated": u} for c, cur, u in rows]

    def record_harvest(
        self, peer: str, *, started: str, items: int, deleted: int, detail: str
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO harvest_runs (peer, started, finished, items, deleted, detail) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (peer) DO UPDATE SET "
                "started = excluded.started, finished = excluded.finished, "
                "items = excluded.items, deleted = excluded.deleted, detail = excluded.detail",
                (peer, started, now_iso(), items, deleted, detail),
            )

    def last_harvest(self, peer: str) -> dict[str, Any] | None:
        row = self._db.one(
            "SELECT started, finished, items, deleted, detail FROM harvest_runs WHERE peer = ?",
            (peer,),
        )
        if row is None:
            return None
        keys = ("started", "finished", "items", "deleted", "detail")
        return dict(zip(keys, row, strict=True))
