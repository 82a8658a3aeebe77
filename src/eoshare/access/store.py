"""The access database: members, users, token and session hashes, agreements, partner
lists, acceptances of terms, the change history and the audit of every grant of bytes.

It is its own SQLite file (``<data_dir>/access.db``), apart from the catalogue, or the
``access`` schema of ``EOSHARE_DATABASE`` on PostgreSQL (``eoshare.statedb``). Secrets
never reach it: API tokens and session ids are stored as SHA-256 hashes (they are long
random strings, so a fast hash is enough), passwords as scrypt hashes.

Every change to members, users or agreements bumps ``version``; the policy rebuilds its
cached view when it changes, whichever process (server or CLI) made the change.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from eoshare.access.agreements import (
    Agreement,
    Member,
    User,
    agreement_from_dict,
    check_code,
    check_roles,
)
from eoshare.errors import ConflictError, InvalidRequestError, NotAuthenticatedError, NotFoundError
from eoshare.statedb import Conn, Migration, StateDB

JSON = dict[str, Any]
TOKEN_PREFIX = "eos_"

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS members (
    code TEXT PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, member TEXT REFERENCES members(code),
    roles TEXT NOT NULL, password TEXT, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, username TEXT NOT NULL,
    label TEXT, created TEXT NOT NULL, expires TEXT NOT NULL, revoked TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agreements (collection TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acceptances (
    username TEXT NOT NULL, collection TEXT NOT NULL, accepted TEXT NOT NULL,
    terms_sha256 TEXT NOT NULL, PRIMARY KEY (username, collection));
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL, what TEXT NOT NULL,
    subject TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, day TEXT NOT NULL, username TEXT,
    member TEXT, country TEXT, collection TEXT, item TEXT, asset TEXT, action TEXT NOT NULL,
    decision TEXT NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS audit_day_user ON audit (day, username);
CREATE INDEX IF NOT EXISTS audit_day_member ON audit (day, member);
CREATE TABLE IF NOT EXISTS quota_use (
    day TEXT NOT NULL, subject TEXT NOT NULL, collection TEXT NOT NULL, unit TEXT NOT NULL,
    used INTEGER NOT NULL, PRIMARY KEY (day, subject, collection, unit));
""",
    )
]


@dataclass(frozen=True)
class QuotaClaim:
    """``amount`` more of ``unit`` ("bytes" or "tiles") for ``subject`` ("u:<user>" or
    "m:<member>") on ``collection`` today, allowed while the day's use stays <= ``limit``."""

    subject: str
    collection: str
    unit: str
    amount: int
    limit: int


def now_utc() -> datetime:
    return datetime.now(UTC)


def today() -> str:
    """The UTC day that quotas and the audit count in."""
    return now_utc().strftime("%Y-%m-%d")


class _NoRoom(Exception):
    def __init__(self, claim: QuotaClaim, used: int) -> None:
        super().__init__(claim.subject)
        self.claim = claim
        self.used = used


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """scrypt with a random salt: slow on purpose."""
    if len(password) < 8:
        raise InvalidRequestError("a password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class TokenInfo:
    """A token's record; never its secret."""

    id: str
    username: str
    label: str | None
    created: str
    expires: str
    revoked: str | None

    def to_dict(self) -> JSON:
        return {
            "id": self.id,
            "username": self.username,
            "label": self.label,
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
        }


class AccessStore:
    """Members, users, tokens, agreements, acceptances, history and audit in the state
    database (``path``: a SQLite file, ``:memory:``, or a PostgreSQL URL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # writes are transactions of the access area: one at a time, in any process, so
        # that no read-modify-write interleaves
        self._db = StateDB(path, area="access", component="access", migrations=_MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params)

    @staticmethod
    def _log(conn: Conn, who: str, what: str, subject: str, detail: Any) -> None:
        conn.execute(
            "INSERT INTO history (at, who, what, subject, detail) VALUES (?, ?, ?, ?, ?)",
            (iso(now_utc()), who, what, subject, orjson.dumps(detail).decode()),
        )

    @staticmethod
    def _bump(conn: Conn) -> None:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")

    def version(self) -> int:
        """Changes whenever members, users or agreements change (in any process)."""
        return int(self._read("SELECT value FROM meta WHERE key = 'version'")[0][0])

    # --- members ----------------------------------------------------------------------
    def put_member(self, member: Member, *, who: str) -> Member:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO members VALUES (?, ?, ?) ON CONFLICT(code) DO UPDATE SET "
                "name = excluded.name, country = excluded.country",
                (member.code, member.name, member.country),
            )
            self._log(conn, who, "member.put", member.code, member.to_dict())
            self._bump(conn)
        return member

    def get_member(self, code: str) -> Member:
        rows = self._read("SELECT code, name, country FROM members WHERE code = ?", (code,))
        if not rows:
            raise NotFoundError(f"member {code!r} does not exist")
        return Member(*rows[0])

    def list_members(self) -> list[Member]:
        return [
            Member(*r) for r in self._read("SELECT code, name, country FROM members ORDER BY code")
        ]

    def delete_member(self, code: str, *, who: str) -> None:
        self.get_member(code)
        with self._tx() as conn:
            used = conn.execute("SELECT count(*) FROM users WHERE member = ?", (code,)).fetchone()[
                0
            ]
            if used:
                raise ConflictError(f"member {code!r} still has {used} user(s)")
            conn.execute("DELETE FROM members WHERE code = ?", (code,))
            self._log(conn, who, "member.delete", code, {})
            self._bump(conn)

    # --- users ------------------------------------------------------------------------
    def put_user(
        self,
        username: str,
        *,
        member: str | None,
        roles: Any,
        password: str | None = None,
        disabled: bool = False,
        who: str,
    ) -> User:
        check_code(username, "user name")
        role_set = check_roles(roles)
        if member is not None:
            self.get_member(member)
        elif role_set & {"provider-admin"}:
            raise InvalidRequestError("a provider-admin must belong to a member")
        pw = hash_password(password) if password is not None else None
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO users (username, member, roles, password, disabled) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(username) DO UPDATE SET "
                "member = excluded.member, roles = excluded.roles, "
                "password = coalesce(excluded.password, users.password), "
                "disabled = excluded.disabled",
                (username, member, ",".join(sorted(role_set)), pw, int(disabled)),
            )
            self._log(
                conn,
                who,
                "user.put",
                username,
                {
                    "member": member,
                    "roles": sorted(role_set),
                    "disabled": disabled,
                    "password_changed": pw is not None,
                },
            )
            self._bump(conn)
        return User(username, member, role_set, disabled)

    @staticmethod
    def _user(row: tuple[Any, ...]) -> User:
        username, member, roles, disabled = row
        return User(username, member, frozenset(r for r in roles.split(",") if r), bool(disabled))

    def get_user(self, username: str) -> User:
        rows = self._read(
            "SELECT username, member, roles, disabled FROM users WHERE username = ?", (username,)
        )
        if not rows:
            raise NotFoundError(f"user {username!r} does not exist")
        return self._user(rows[0])

    def list_users(self, member: str | None = None) -> list[User]:
        sql = "SELECT username, member, roles, disabled FROM users"
        params: tuple[Any, ...] = ()
        if member is not None:
            sql += " WHERE member = ?"
            params = (member,)
        return [self._user(r) for r in self._read(sql + " ORDER BY username", params)]

    def delete_user(self, username: str, *, who: str) -> None:
        self.get_user(username)
        with self._tx() as conn:
            conn.execute("DELETE FROM users WHERE username = ?", (username,))
            conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
            conn.execute(
                "UPDATE tokens SET revoked = ? WHERE username = ? AND revoked IS NULL",
                (iso(now_utc()), username),
            )
            self._log(conn, who, "user.delete", username, {})
            self._bump(conn)

    def verify_password(self, username: str, password: str) -> User:
        """The user, or NotAuthenticatedError (same message whether the name or the
        password is wrong)."""
        rows = self._read(
            "SELECT username, member, roles, disabled, password FROM users WHERE username = ?",
            (username,),
        )
        stored = rows[0][4] if rows else None
        # check a dummy hash for unknown users so timing does not tell who exists
        ok = check_password(password, stored or _DUMMY_HASH)
        if not rows or stored is None or not ok or rows[0][3]:
            raise NotAuthenticatedError("the user name or the password is wrong")
        return self._user(rows[0][:4])

    # --- API tokens -------------------------------------------------------------------
    def create_token(
        self, username: str, *, days: float = 90, label: str | None = None, who: str
    ) -> tuple[TokenInfo, str]:
        """A new token; its secret is returned once and stored only as a hash."""
        self.get_user(username)
        if days <= 0 or days > 3650:
            raise InvalidRequestError("a token lives between 0 and 3650 days")
        token_id = secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        created = now_utc()
        info = TokenInfo(
            token_id, username, label, iso(created), iso(created + timedelta(days=days)), None
        )
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (token_id, sha256(secret), username, label, info.created, info.expires),
            )
            self._log(
                conn,
                who,
                "token.create",
                token_id,
                {"username": username, "expires": info.expires, "label": label},
            )
        return info, secret

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        sql = "SELECT id, username, label, created, expires, revoked FROM tokens"
        params: tuple[Any, ...] = ()
        if username is not None:
            sql += " WHERE username = ?"
            params = (username,)
        return [TokenInfo(*r) for r in self._read(sql + " ORDER BY created, id", params)]

    def get_token(self, token_id: str) -> TokenInfo:
        rows = self._read(
            "SELECT id, username, label, created, expires, revoked FROM tokens WHERE id = ?",
            (token_id,),
        )
        if not rows:
            raise NotFoundError(f"token {token_id!r} does not exist")
        return TokenInfo(*rows[0])

    def revoke_token(self, token_id: str, *, who: str) -> None:
        self.get_token(token_id)
        with self._tx() as conn:
            conn.execute(
                "UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ?",
                (iso(now_utc()), token_id),
            )
            self._log(conn, who, "token.revoke", token_id, {})
            # cached answers about signed links made with it are dropped (access.auth)
            self._bump(conn)

    def user_for_token(self, secret: str) -> User:
        """The token's user, or NotAuthenticatedError saying why (never echoing it)."""
        return self.user_and_token(secret)[0]

    def check_token(self, token_id: str) -> None:
        """NotAuthenticatedError unless the token exists, is not revoked nor expired
        (signed links made with it check this at use)."""
        rows = self._read("SELECT expires, revoked FROM tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotAuthenticatedError("the token it was made with no longer exists")
        expires, revoked = rows[0]
        if revoked:
            raise NotAuthenticatedError("the token it was made with has been revoked")
        if _parse(expires) <= now_utc():
            raise NotAuthenticatedError("the token it was made with has expired")

    def user_and_token(self, secret: str) -> tuple[User, str]:
        """The token's user and the token's id, or NotAuthenticatedError saying why."""
        rows = self._read(
            "SELECT username, expires, revoked, id FROM tokens WHERE hash = ?", (sha256(secret),)
        )
        if not rows:
            raise NotAuthenticatedError("the bearer token is not valid")
        username, expires, revoked, token_id = rows[0]
        if revoked:
            raise NotAuthenticatedError("the bearer token has been revoked")
        if _parse(expires) <= now_utc():
            raise NotAuthenticatedError("the bearer token has expired")
        try:
            user = self.get_user(username)
        except NotFoundError as exc:
            raise NotAuthenticatedError("the bearer token is not valid") from exc
        if user.disabled:
            raise NotAuthenticatedError("the account of this token is disabled")
        return user, str(token_id)

    # --- browser sessions -------------------------------------------------------------
    def create_session(self, username: str, *, ttl_s: int) -> str:
        secret = secrets.token_urlsafe(32)
        expires = iso(now_utc() + timedelta(seconds=ttl_s))
        with self._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (iso(now_utc()),))
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)", (sha256(secret), username, expires)
            )
        return secret

    def user_for_session(self, secret: str) -> User:
        rows = self._read(
            "SELECT username, expires FROM sessions WHERE hash = ?", (sha256(secret),)
        )
        if not rows or _parse(rows[0][1]) <= now_utc():
            raise NotAuthenticatedError("the session has expired; sign in again")
        try:
            user = self.get_user(rows[0][0])
        except NotFoundError as exc:
            raise NotAuthenticatedError("the session has expired; sign in again") from exc
        if user.disabled:
            raise NotAuthenticatedError("this account is disabled")
        return user

    def delete_session(self, secret: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM sessions WHERE hash = ?", (sha256(secret),))

    # --- agreements -------------------------------------------------------------------
    def put_agreement(self, agreement: Agreement, *, who: str) -> Agreement:
        self.get_member(agreement.provider)
        for partner in agreement.partners:
            self.get_member(partner)
        before = self.find_agreement(agreement.collection)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO agreements VALUES (?, ?) ON CONFLICT(collection) DO UPDATE SET "
                "doc = excluded.doc",
                (agreement.collection, orjson.dumps(agreement.to_dict()).decode()),
            )
            self._log(
                conn,
                who,
                "agreement.put",
                agreement.collection,
                {"before": before.to_dict() if before else None, "after": agreement.to_dict()},
            )
            self._bump(conn)
        return agreement

    def find_agreement(self, collection: str) -> Agreement | None:
        rows = self._read("SELECT doc FROM agreements WHERE collection = ?", (collection,))
        return agreement_from_dict(orjson.loads(rows[0][0])) if rows else None

    def get_agreement(self, collection: str) -> Agreement:
        found = self.find_agreement(collection)
        if found is None:
            raise NotFoundError(f"collection {collection!r} has no agreement")
        return found

    def list_agreements(self) -> list[Agreement]:
        return [
            agreement_from_dict(orjson.loads(r[0]))
            for r in self._read("SELECT doc FROM agreements ORDER BY collection")
        ]

    def delete_agreement(self, collection: str, *, who: str) -> None:
        before = self.get_agreement(collection)
        with self._tx() as conn:
            conn.execute("DELETE FROM agreements WHERE collection = ?", (collection,))
            self._log(conn, who, "agreement.delete", collection, {"before": before.to_dict()})
            self._bump(conn)

    # --- acceptance of terms ----------------------------------------------------------
    def accept_terms(self, username: str, collection: str) -> JSON:
        agreement = self.get_agreement(collection)
        if not agreement.terms:
            raise InvalidRequestError(f"collection {collection!r} has no terms to accept")
        at = iso(now_utc())
        digest = sha256(agreement.terms)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO acceptances VALUES (?, ?, ?, ?) ON CONFLICT(username, collection) "
                "DO UPDATE SET accepted = excluded.accepted, terms_sha256 = excluded.terms_sha256",
                (username, collection, at, digest),
            )
            self._log(conn, username, "terms.accept", collection, {"terms_sha256": digest})
        return {"username": username, "collection": collection, "accepted": at}

    def has_accepted(self, username: str, collection: str, terms: str) -> bool:
        """True when the user accepted these very terms (changed terms need a new yes)."""
        rows = self._read(
            "SELECT terms_sha256 FROM acceptances WHERE username = ? AND collection = ?",
            (username, collection),
        )
        return bool(rows) and rows[0][0] == sha256(terms)

    def list_acceptances(self, username: str | None = None) -> list[JSON]:
        sql = "SELECT username, collection, accepted FROM acceptances"
        params: tuple[Any, ...] = ()
        if username is not None:
            sql += " WHERE username = ?"
            params = (username,)
        return [
            {"username": u, "collection": c, "accepted": a}
            for u, c, a in self._read(sql + " ORDER BY accepted", params)
        ]

    # --- history ----------------------------------------------------------------------
    def history(self, *, subject: str | None = None, limit: int = 100) -> list[JSON]:
        sql = "SELECT at, who, what, subject, detail FROM history"
        params: list[Any] = []
        if subject is not None:
            sql += " WHERE subject = ?"
            params.append(subject)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [
            {"at": at, "who": who, "what": what, "subject": s, "detail": orjson.loads(d)}
            for at, who, what, s, d in self._read(sql, params)
        ]

    # --- audit and usage --------------------------------------------------------------
    def record(
        self,
        *,
        username: str | None,
        member: str | None,
        country: str | None,
        collection: str | None,
        item: str | None,
        asset: str | None,
        action: str,
        decision: str,
        nbytes: int,
        at: datetime | None = None,
    ) -> None:
        when = at or now_utc()
        self._db.execute(
            "INSERT INTO audit (at, day, username, member, country, collection, item, "
            "asset, action, decision, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                iso(when),
                when.strftime("%Y-%m-%d"),
                username,
                member,
                country,
                collection,
                item,
                asset,
                action,
                decision,
                int(nbytes),
            ),
            queue=False,
        )

    def reserve(self, claims: list[QuotaClaim], day: str) -> tuple[QuotaClaim, int] | None:
        """Reserve every claim or none, atomically (one write transaction, each claim
        one ``UPDATE ... WHERE used + amount <= limit``, so that concurrent requests in
        any process cannot pass a limit together). None when reserved; else the first
        claim that does not fit and what its subject has used on ``day``."""
        try:
            with self._tx() as conn:
                for c in claims:
                    conn.execute(
                        "INSERT OR IGNORE INTO quota_use VALUES (?, ?, ?, ?, 0)",
                        (day, c.subject, c.collection, c.unit),
                    )
                    cur = conn.execute(
                        "UPDATE quota_use SET used = used + ? WHERE day = ? AND subject = ? "
                        "AND collection = ? AND unit = ? AND used + ? <= ?",
                        (c.amount, day, c.subject, c.collection, c.unit, c.amount, c.limit),
                    )
                    if cur.rowcount != 1:
                        row = conn.execute(
                            "SELECT used FROM quota_use WHERE day = ? AND subject = ? AND "
                            "collection = ? AND unit = ?",
                            (day, c.subject, c.collection, c.unit),
                        ).fetchone()
                        raise _NoRoom(c, int(row[0]))
        except _NoRoom as full:
            return full.claim, full.used
        return None

    def release(self, claims: list[QuotaClaim], day: str) -> None:
        """Give back reserved amounts that were not used (a download cut short)."""
        with self._tx() as conn:
            for c in claims:
                if c.amount > 0:
                    conn.execute(
                        "UPDATE quota_use SET used = CASE WHEN used > ? THEN used - ? ELSE 0 END "
                        "WHERE day = ? AND "
                        "subject = ? AND collection = ? AND unit = ?",
                        (c.amount, c.amount, day, c.subject, c.collection, c.unit),
                    )

    def quota_used(self, subject: str, collection: str, unit: str) -> int:
        """What ``subject`` has used (or reserved) of ``unit`` on ``collection`` today."""
        day = today()
        rows = self._read(
            "SELECT used FROM quota_use WHERE day = ? AND subject = ? AND collection = ? AND "
            "unit = ?",
            (day, subject, collection, unit),
        )
        return int(rows[0][0]) if rows else 0

    def bytes_today(self, *, username: str | None = None, member: str | None = None) -> int:
        day = now_utc().strftime("%Y-%m-%d")
        if username is not None:
            rows = self._read(
                "SELECT coalesce(sum(bytes), 0) FROM audit WHERE day = ? AND username = ?",
                (day, username),
            )
        else:
            rows = self._read(
                "SELECT coalesce(sum(bytes), 0) FROM audit WHERE day = ? AND member = ?",
                (day, member),
            )
        return int(rows[0][0])

    def usage(
        self, *, member: str | None = None, since: str | None = None, until: str | None = None
    ) -> JSON:
        """Grants of bytes, summed by member, country, collection and day. ``member``
        limits it to grants to that member's users."""
        where = ["1 = 1"]
        params: list[Any] = []
        if member is not None:
            where.append("member = ?")
            params.append(member)
        if since:
            where.append("day >= ?")
            params.append(since)
        if until:
            where.append("day <= ?")
            params.append(until)
        cond = " AND ".join(where)

        def by(column: str, order: str = "bytes DESC, key") -> list[JSON]:
            rows = self._read(
                f"SELECT {column} AS key, count(*), coalesce(sum(bytes), 0) AS bytes "
                f"FROM audit WHERE {cond} GROUP BY key ORDER BY {order}",
                params,
            )
            return [{"key": k, "grants": n, "bytes": b} for k, n, b in rows]

        total = self._read(
            f"SELECT count(*), coalesce(sum(bytes), 0), count(DISTINCT country) "
            f"FROM audit WHERE {cond}",
            params,
        )[0]
        collections = by("collection")
        return {
            "grants": total[0],
            "bytes": total[1],
            "countries_reached": total[2],
            "by_member": by("member"),
            "by_country": by("country"),
            "by_collection": collections,
            "by_day": by("day", "key"),
            "top_collections": collections[:5],
        }

    def reach(self, *, since: str) -> JSON:
        """Grants from day ``since`` on, by country and by day, with the bytes, the grants,
        the distinct scenes and the distinct users each reached (the operators' dashboard).
        Denied requests are left out."""
        cond = "day >= ? AND decision != 'denied'"
        figures = (
            "count(*), coalesce(sum(bytes), 0) AS bytes, "
            "count(DISTINCT coalesce(collection, '') || '/' || coalesce(item, '')), "
            "count(DISTINCT username)"
        )

        def by(column: str, order: str) -> list[JSON]:
            rows = self._read(
                f"SELECT {column} AS key, {figures} FROM audit WHERE {cond} "
                f"GROUP BY key ORDER BY {order}",
                (since,),
            )
            return [
                {"key": k, "grants": n, "bytes": b, "scenes": s, "users": u}
                for k, n, b, s, u in rows
            ]

        total = self._read(f"SELECT {figures} FROM audit WHERE {cond}", (since,))[0]
        return {
            "since": since,
            "grants": total[0],
            "bytes": total[1],
            "scenes": total[2],
            "users": total[3],
            "by_country": by("country", "bytes DESC, key"),
            "by_day": by("day", "key"),
            "top_collections": by("collection", "bytes DESC, key")[:10],
        }


_DUMMY_HASH = (
    "scrypt$16384$8$1$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000"
)
