"""Brute-force protection and request rate limits.

* :class:`LoginGuard` protects password sign-in (``POST /auth/login``). Wrong passwords are
  counted per account (in ``access.db``, so that every server process and the
  ``eoshare users unlock`` command see the same count) and per client address (in memory).
  After ``login_max_failures`` wrong passwords an account is locked for ``lockout_s``, or
  until an operator unlocks it; an address that fails ``login_max_failures_per_address``
  times in ``login_window_s`` is refused for the rest of the window. A refused sign-in is a
  429 with ``Retry-After`` and costs no password hash: the check comes first, so a locked
  account cannot be used to burn the node's CPU.
* :class:`RequestRateLimiter` is a token bucket per caller (its bearer token, its session
  cookie, else its address) for the whole API, off unless ``rate_limit_per_minute`` is set.

Unknown user names are counted like known ones: the answers never tell who exists.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

from eoshare.errors import RateLimitedError
from eoshare.statedb import Migration, StateDB

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_at REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0
);
""",
    )
]
# addresses remembered at once (the oldest are forgotten first)
_MAX_ADDRESSES = 100_000


class LoginGuard:
    """Counts failed sign-ins; built once with the access services."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        max_failures: int = 10,
        lockout_s: int = 900,
        max_failures_per_address: int = 50,
        window_s: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_per_address = max_failures_per_address
        self.window_s = window_s
        self.clock = clock
        self._db = StateDB(db_path, area="access", component="login_guard", migrations=_MIGRATIONS)
        self._lock = threading.Lock()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()

    def close(self) -> None:
        self._db.close()

    # --- the sign-in route ----------------------------------------------------------
    def check(self, username: str, address: str | None) -> None:
        """Raise RateLimitedError when this account is locked or this address has failed
        too often. Called before the password is hashed."""
        now = self.clock()
        row = self._db.one(
            "SELECT locked_until FROM login_failures WHERE username = ?", (username,)
        )
        with self._lock:
            if row is not None and row[0] > now:
                raise RateLimitedError(
                    "too many failed sign-ins for this account: it is locked; try again "
                    "later, or ask an operator to unlock it",
                    retry_after_s=math.ceil(row[0] - now),
                )
            if address is not None and self.max_per_address > 0:
                recent = self._recent(address, now)
                if len(recent) >= self.max_per_address:
                    raise RateLimitedError(
                        "too many failed sign-ins from this address; try again later",
                        retry_after_s=max(1, math.ceil(recent[0] + self.window_s - now)),
                    )

    def failed(self, username: str, address: str | None) -> None:
        """Count one wrong password (for the account and the address)."""
        now = self.clock()
        with self._lock:
            if address is not None:
                self._recent(address, now).append(now)
                self._addresses.move_to_end(address)
                while len(self._addresses) > _MAX_ADDRESSES:
                    self._addresses.popitem(last=False)
        with self._db.tx() as conn:
            # forget counts whose window has passed and locks that have ended
            conn.execute(
                "DELETE FROM login_failures WHERE locked_until <= ? AND first_at < ?",
                (now, now - self.window_s),
            )
            row = conn.execute(
                "SELECT failures FROM login_failures WHERE username = ?", (username,)
            ).fetchone()
            failures = (row[0] if row else 0) + 1
            locked_until = now + self.lockout_s if failures >= self.max_failures > 0 else 0
            if row is None:
                conn.execute(
                    "INSERT INTO login_failures VALUES (?, ?, ?, ?)",
                    (username, failures, now, locked_until),
                )
            else:
                conn.execute(
                    "UPDATE login_failures SET failures = ?, locked_until = ? WHERE username = ?",
                    (failures, locked_until, username),
                )

    def succeeded(self, username: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE username = ?", (username,))

    # --- operators --------------------------------------------------------------------
    def unlock(self, username: str) -> bool:
        """Lift a lockout (``eoshare users unlock``, ``POST /admin/users/{name}/unlock``);
        True when there was one."""
        with self._db.tx() as conn:
            row = conn.execute(
                "SELECT locked_until FROM login_failures WHERE username = ?", (username,)
            ).fetchone()
            # the failure count goes too: the user starts again with a clean slate
            conn.execute("DELETE FROM login_failures WHERE username = ?", (username,))
        return row is not None and row[0] > self.clock()

    def locked(self) -> list[tuple[str, float]]:
        """Locked accounts and when each lock ends (epoch seconds)."""
        rows = self._db.read(
            "SELECT username, locked_until FROM login_failures WHERE locked_until > ? "
            "ORDER BY username",
            (self.clock(),),
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._addresses.setdefault(address, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent


class RequestRateLimiter:
    """A token bucket per caller: ``per_minute`` requests a minute on average, up to
    ``burst`` at once. Callers are told apart by a hash of their credential (never kept
    in clear), else by their address."""

    def __init__(
        self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def caller_key(credential: str | None, address: str | None) -> str:
        if credential:
            return "c:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
        return "a:" + (address or "-")

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else 60.0
            self._buckets.move_to_end(key)
            while len(self._buckets) > _MAX_ADDRESSES:
                self._buckets.popitem(last=False)
        return wait
