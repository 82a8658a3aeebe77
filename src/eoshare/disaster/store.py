"""The disaster database: activations and their transitions, responders, standing
pre-approvals, the audit of bytes granted under each activation, orbital element sets,
alert subscriptions, deliveries and dead letters.

Its own SQLite file (``<data_dir>/disaster.db``), or the ``disaster`` schema of
``EOSHARE_DATABASE`` on PostgreSQL (``eoshare.statedb``). All SQL of ``eoshare.disaster``
lives here, plain and portable (no JSON functions, ``INSERT ... ON CONFLICT``).
Documents (areas, filters, contacts) are stored as JSON text.

Every change to activations or responders bumps ``version``; the activations service
rebuilds its cached grants when it changes, whichever process made the change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eoshare.errors import NotFoundError
from eoshare.statedb import Conn, Migration, StateDB

JSON = dict[str, Any]

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS activations (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, member TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, hazard TEXT NOT NULL,
    title TEXT NOT NULL, description TEXT NOT NULL, contacts TEXT NOT NULL,
    area TEXT NOT NULL, event_time TEXT NOT NULL, pre_days REAL NOT NULL,
    post_days REAL NOT NULL, approved_at TEXT, approved_by TEXT, expires TEXT,
    closed_at TEXT, reason TEXT, first_data_at TEXT, webhook TEXT, revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY, activation TEXT NOT NULL, at TEXT NOT NULL,
    who TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL, note TEXT);
CREATE TABLE IF NOT EXISTS responders (
    activation TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    added_at TEXT NOT NULL, added_by TEXT NOT NULL, PRIMARY KEY (activation, kind, name));
CREATE TABLE IF NOT EXISTS preapprovals (
    member TEXT PRIMARY KEY, granted_at TEXT NOT NULL, granted_by TEXT NOT NULL,
    note TEXT);
CREATE TABLE IF NOT EXISTS grant_audit (
    id INTEGER PRIMARY KEY, activation TEXT NOT NULL, at TEXT NOT NULL, username TEXT,
    member TEXT, collection TEXT, item TEXT, asset TEXT, action TEXT NOT NULL,
    bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS grant_audit_activation ON grant_audit (activation);
CREATE TABLE IF NOT EXISTS elements (
    norad INTEGER NOT NULL, epoch TEXT NOT NULL, name TEXT NOT NULL,
    line1 TEXT NOT NULL, line2 TEXT NOT NULL, source TEXT NOT NULL,
    loaded_at TEXT NOT NULL, PRIMARY KEY (norad, epoch));
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created TEXT NOT NULL, area TEXT,
    filter TEXT, collections TEXT NOT NULL, webhook TEXT, secret TEXT NOT NULL,
    activation TEXT, window_start TEXT, window_end TEXT, active INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL, collection TEXT NOT NULL, item TEXT NOT NULL,
    at TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    PRIMARY KEY (subscription, collection, item, channel));
CREATE TABLE IF NOT EXISTS item_events (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, collection TEXT NOT NULL, item TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, subscription TEXT NOT NULL, at TEXT NOT NULL, url TEXT NOT NULL,
    body TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL);
""",
    ),
    Migration(
        2,
        """
CREATE TABLE IF NOT EXISTS products (
  activation TEXT NOT NULL, item TEXT NOT NULL, collection TEXT NOT NULL,
  created TEXT NOT NULL, trigger TEXT NOT NULL, seconds REAL NOT NULL, stats TEXT NOT NULL,
  PRIMARY KEY (activation, item));
""",
    ),
]

_ACTIVATION_COLUMNS = (
    "id, state, member, requested_by, requested_at, hazard, title, description, contacts, "
    "area, event_time, pre_days, post_days, approved_at, approved_by, expires, closed_at, "
    "reason, first_data_at, webhook, revision"
)
_SUBSCRIPTION_COLUMNS = (
    "id, owner, created, area, filter, collections, webhook, secret, activation, "
    "window_start, window_end, active"
)


def iso(dt: datetime) -> str:
    """UTC, to the microsecond: grant edges are compared exactly."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class ActivationRow:
    """An activation as stored (the service turns it into documents and grants)."""

    id: str
    state: str
    member: str
    requested_by: str
    requested_at: datetime
    hazard: str
    title: str
    description: str
    contacts: list[Any]
    area: JSON
    event_time: datetime
    pre_days: float
    post_days: float
    approved_at: datetime | None
    approved_by: str | None
    expires: datetime | None
    closed_at: datetime | None
    reason: str | None
    first_data_at: datetime | None
    webhook: str | None
    revision: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ActivationRow:
        (aid, state, member, by, at, hazard, title, desc, contacts, area, event, pre, post,
         approved_at, approved_by, expires, closed_at, reason, first, webhook,
         rev) = row  # fmt: skip

        def opt(text: str | None) -> datetime | None:
            return parse_iso(text) if text else None

        return cls(
            aid, state, member, by, parse_iso(at), hazard, title, desc, orjson.loads(contacts),
            orjson.loads(area), parse_iso(event), float(pre), float(post), opt(approved_at),
            approved_by, opt(expires), opt(closed_at), reason, opt(first), webhook, int(rev),
        )  # fmt: skip


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    owner: str
    created: datetime
    area: JSON | None
    filter: JSON | None
    collections: list[str]
    webhook: str | None
    secret: str
    activation: str | None
    window_start: datetime | None
    window_end: datetime | None
    active: bool

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> SubscriptionRow:
        sid, owner, created, area, flt, cols, webhook, secret, act, ws, we, active = row
        return cls(
            sid, owner, parse_iso(created), orjson.loads(area) if area else None,
            orjson.loads(flt) if flt else None, orjson.loads(cols), webhook, secret, act,
            parse_iso(ws) if ws else None, parse_iso(we) if we else None, bool(active),
        )  # fmt: skip


class DisasterStore:
    """The SQL of activations, orbits and alerts (writes one at a time: ``StateDB.tx``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = StateDB(path, area="disaster", component="disaster", migrations=_MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params)

    def version(self) -> int:
        return int(self._read("SELECT value FROM meta WHERE key = 'version'")[0][0])

    @staticmethod
    def _bump(conn: Conn) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")

    # --- activations ------------------------------------------------------------------
    def insert_activation(self, a: ActivationRow, *, who: str, note: str | None) -> None:
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO activations ({_ACTIVATION_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.id, a.state, a.member, a.requested_by, iso(a.requested_at), a.hazard,
                    a.title, a.description, _dumps(a.contacts), _dumps(a.area),
                    iso(a.event_time), a.pre_days, a.post_days, None, None, None, None, None,
                    None, a.webhook, a.revision,
                ),
            )  # fmt: skip
            self._transition(conn, a.id, iso(a.requested_at), who, None, a.state, note)
            self._bump(conn)

    @staticmethod
    def _transition(
        conn: Conn,
        aid: str,
        at: str,
        who: str,
        before: str | None,
        after: str,
        note: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO transitions (activation, at, who, from_state, to_state, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (aid, at, who, before, after, note),
        )

    def transition(
        self,
        aid: str,
        *,
        expect: tuple[str, ...],
        to: str,
        at: datetime,
        who: str,
        note: str | None = None,
        fields: JSON | None = None,
    ) -> bool:
        """Move ``aid`` from one of ``expect`` to ``to`` (and set ``fields``) in one
        transaction; False when its state was not one of ``expect``."""
        sets = {"state": to, **(fields or {})}
        assignments = ", ".join(f"{k} = ?" for k in sets)
        values = [iso(v) if isinstance(v, datetime) else v for v in sets.values()]
        marks = ", ".join("?" for _ in expect)
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM activations WHERE id = ?", (aid,)).fetchone()
            if row is None:
                raise NotFoundError(f"activation {aid!r} does not exist")
            cur = conn.execute(
                f"UPDATE activations SET {assignments}, revision = revision + 1 "
                f"WHERE id = ? AND state IN ({marks})",
                (*values, aid, *expect),
            )
            if cur.rowcount != 1:
                return False
            self._transition(conn, aid, iso(at), who, row[0], to, note)
            self._bump(conn)
        return True

    def set_first_data(self, aid: str, at: datetime) -> bool:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE activations SET first_data_at = ? WHERE id = ? AND first_data_at IS NULL",
                (iso(at), aid),
            )
            return cur.rowcount == 1

    def get_activation(self, aid: str) -> ActivationRow:
        rows = self._read(f"SELECT {_ACTIVATION_COLUMNS} FROM activations WHERE id = ?", (aid,))
        if not rows:
            raise NotFoundError(f"activation {aid!r} does not exist")
        return ActivationRow.from_row(rows[0])

    def list_activations(self, *, state: str | None = None) -> list[ActivationRow]:
        sql = f"SELECT {_ACTIVATION_COLUMNS} FROM activations"
        params: tuple[Any, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            params = (state,)
        return [
            ActivationRow.from_row(r) for r in self._read(sql + " ORDER BY requested_at", params)
        ]

    def transitions(self, aid: str) -> list[JSON]:
        rows = self._read(
            "SELECT at, who, from_state, to_state, note FROM transitions "
            "WHERE activation = ? ORDER BY id",
            (aid,),
        )
        return [{"at": at, "who": who, "from": f, "to": t, "note": n} for at, who, f, t, n in rows]

    # --- responders and pre-approvals -------------------------------------------------
    def add_responder(self, aid: str, kind: str, name: str, *, at: datetime, who: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO responders VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (activation, kind, name) DO NOTHING",
                (aid, kind, name, iso(at), who),
            )
            conn.execute("UPDATE activations SET revision = revision + 1 WHERE id = ?", (aid,))
            self._transition(conn, aid, iso(at), who, None, "responder", f"{kind} {name}")
            self._bump(conn)

    def responders(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for aid, kind, name in self._read("SELECT activation, kind, name FROM responders"):
            out.setdefault(aid, []).append((kind, name))
        return out

    def set_preapproval(self, member: str, *, on: bool, at: datetime, who: str) -> None:
        with self._tx() as conn:
            if on:
                conn.execute(
                    "INSERT INTO preapprovals VALUES (?, ?, ?, NULL) ON CONFLICT (member) "
                    "DO UPDATE SET granted_at = excluded.granted_at, "
                    "granted_by = excluded.granted_by",
                    (member, iso(at), who),
                )
            else:
                conn.execute("DELETE FROM preapprovals WHERE member = ?", (member,))

    def preapproved(self, member: str) -> bool:
        return bool(self._read("SELECT 1 FROM preapprovals WHERE member = ?", (member,)))

    def list_preapprovals(self) -> list[JSON]:
        rows = self._read("SELECT member, granted_at, granted_by FROM preapprovals ORDER BY member")
        return [{"member": m, "granted_at": at, "granted_by": by} for m, at, by in rows]

    # --- the audit of bytes granted under activations ---------------------------------
    def record_grant(
        self,
        aid: str,
        *,
        at: datetime,
        username: str | None,
        member: str | None,
        collection: str | None,
        item: str | None,
        asset: str | None,
        action: str,
        nbytes: int,
    ) -> None:
        self._db.execute(
            "INSERT INTO grant_audit (activation, at, username, member, collection, item, "
            "asset, action, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (aid, iso(at), username, member, collection, item, asset, action, int(nbytes)),
            queue=False,
        )

    def grant_summary(self, aid: str) -> JSON:
        by_member = self._read(
            "SELECT member, count(*), coalesce(sum(bytes), 0) FROM grant_audit "
            "WHERE activation = ? GROUP BY member ORDER BY member",
            (aid,),
        )
        scenes = self._read(
            "SELECT collection, item, username, member, coalesce(sum(bytes), 0) "
            "FROM grant_audit WHERE activation = ? GROUP BY collection, item, username, member "
            "ORDER BY collection, item, username",
            (aid,),
        )
        total = self._read(
            "SELECT count(*), coalesce(sum(bytes), 0), min(at) FROM grant_audit "
            "WHERE activation = ?",
            (aid,),
        )[0]
        return {
            "grants": total[0],
            "bytes": total[1],
            "first_grant_at": total[2],
            "bytes_by_member": [{"member": m, "grants": n, "bytes": b} for m, n, b in by_member],
            "scenes_delivered": [
                {"collection": c, "item": i, "user": u, "member": m, "bytes": b}
                for c, i, u, m, b in scenes
            ],
        }

    # --- orbital elements -------------------------------------------------------------
    def add_elements(self, rows: list[tuple[int, str, str, str, str, str]], *, at: datetime) -> int:
        """(norad, epoch, name, line1, line2, source) rows; returns how many were new."""
        added = 0
        with self._tx() as conn:
            for norad, epoch, name, l1, l2, source in rows:
                cur = conn.execute(
                    "INSERT INTO elements VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (norad, epoch) DO NOTHING",
                    (norad, epoch, name, l1, l2, source, iso(at)),
                )
                added += cur.rowcount
        return added

    def newest_elements(self) -> list[tuple[int, str, str, str, str]]:
        """(norad, epoch, name, line1, line2): the newest set of every satellite."""
        return [
            (int(n), e, name, l1, l2)
            for n, e, name, l1, l2 in self._read(
                "SELECT e.norad, e.epoch, e.name, e.line1, e.line2 FROM elements e "
                "JOIN (SELECT norad, max(epoch) AS epoch FROM elements GROUP BY norad) m "
                "ON e.norad = m.norad AND e.epoch = m.epoch ORDER BY e.norad"
            )
        ]

    def element_history(self, norad: int) -> list[JSON]:
        rows = self._read(
            "SELECT epoch, name, source, loaded_at FROM elements WHERE norad = ? ORDER BY epoch",
            (norad,),
        )
        return [{"epoch": e, "name": n, "source": s, "loaded_at": at} for e, n, s, at in rows]

    # --- alert subscriptions ----------------------------------------------------------
    def insert_subscription(self, s: SubscriptionRow) -> None:
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO subscriptions ({_SUBSCRIPTION_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s.id, s.owner, iso(s.created), _dumps(s.area) if s.area else None,
                    _dumps(s.filter) if s.filter else None, _dumps(s.collections), s.webhook,
                    s.secret, s.activation, iso(s.window_start) if s.window_start else None,
                    iso(s.window_end) if s.window_end else None, int(s.active),
                ),
            )  # fmt: skip
            self._bump(conn)

    def list_subscriptions(
        self, *, owner: str | None = None, active_only: bool = False
    ) -> list[SubscriptionRow]:
        where, params = ["1 = 1"], []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if active_only:
            where.append("active = 1")
        rows = self._read(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE {' AND '.join(where)} "
            "ORDER BY created, id",
            params,
        )
        return [SubscriptionRow.from_row(r) for r in rows]

    def get_subscription(self, sid: str) -> SubscriptionRow:
        rows = self._read(f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?", (sid,))
        if not rows:
            raise NotFoundError(f"subscription {sid!r} does not exist")
        return SubscriptionRow.from_row(rows[0])

    def deactivate_subscriptions(
        self, *, sid: str | None = None, activation: str | None = None
    ) -> None:
        with self._tx() as conn:
            if sid is not None:
                conn.execute("UPDATE subscriptions SET active = 0 WHERE id = ?", (sid,))
            if activation is not None:
                conn.execute(
                    "UPDATE subscriptions SET active = 0 WHERE activation = ?", (activation,)
                )
            self._bump(conn)

    def set_secret(self, sid: str, secret: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE subscriptions SET secret = ? WHERE id = ?", (secret, sid))

    def claim_delivery(
        self, sid: str, collection: str, item: str, channel: str, at: datetime
    ) -> bool:
        """True the first time (subscription, item, channel) is delivered: one alert per
        item, however often it is re-ingested."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, 'pending', 0) "
                "ON CONFLICT (subscription, collection, item, channel) DO NOTHING",
                (sid, collection, item, iso(at), channel),
            )
            return cur.rowcount == 1

    def finish_delivery(
        self, sid: str, collection: str, item: str, channel: str, *, status: str, attempts: int
    ) -> None:
        self._db.execute(
            "UPDATE deliveries SET status = ?, attempts = ? WHERE subscription = ? AND "
            "collection = ? AND item = ? AND channel = ?",
            (status, attempts, sid, collection, item, channel),
        )

    def dead_letter(
        self, sid: str, *, at: datetime, url: str, body: str, attempts: int, error: str
    ) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (subscription, at, url, body, attempts, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sid, iso(at), url, body, attempts, error[:500]),
            queue=False,
        )

    def dead_letters(self, *, owner: str | None = None) -> list[JSON]:
        sql = (
            "SELECT d.subscription, d.at, d.url, d.attempts, d.error FROM dead_letters d "
            "JOIN subscriptions s ON s.id = d.subscription"
        )
        params: tuple[Any, ...] = ()
        if owner is not None:
            sql += " WHERE s.owner = ?"
            params = (owner,)
        return [
            {"subscription": s, "at": at, "url": u, "attempts": n, "error": e}
            for s, at, u, n, e in self._read(sql + " ORDER BY d.id", params)
        ]

    # --- items written (by any process: the server, `eoshare ingest`, `eoshare load`) ---
    def add_item_events(self, refs: list[tuple[str, str]], *, at: datetime) -> None:
        when = iso(at)
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO item_events (at, collection, item) VALUES (?, ?, ?)",
                [(when, c, i) for c, i in refs],
            )

    def item_events_after(self, cursor: int, limit: int) -> list[tuple[int, str, str]]:
        return [
            (int(n), c, i)
            for n, c, i in self._read(
                "SELECT id, collection, item FROM item_events WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            )
        ]

    def item_event_before(self, at: datetime) -> int:
        """The last event written before ``at`` (0: none)."""
        return int(
            self._read("SELECT coalesce(max(id), 0) FROM item_events WHERE at < ?", (iso(at),))[0][
                0
            ]
        )

    def last_item_event(self) -> int:
        return int(self._read("SELECT coalesce(max(id), 0) FROM item_events")[0][0])

    def prune_item_events(self, before: int) -> None:
        self._db.execute("DELETE FROM item_events WHERE id < ?", (before,))

    # --- value-added products (eoshare.disaster.products) -----------------------------
    def record_product(self, row: tuple[str, str, str, str, str, float, str]) -> None:
        """(activation, item, collection, created, trigger, seconds, stats JSON)."""
        self._db.execute(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (activation, item) "
            "DO UPDATE SET collection = excluded.collection, created = excluded.created, "
            "trigger = excluded.trigger, seconds = excluded.seconds, stats = excluded.stats",
            row,
        )

    def products(self, aid: str) -> list[tuple[Any, ...]]:
        """(item, collection, created, trigger, seconds, stats JSON) of an activation."""
        return self._read(
            "SELECT item, collection, created, trigger, seconds, stats FROM products "
            "WHERE activation = ? ORDER BY created",
            (aid,),
        )
