"""Daily quotas of agreements, reserved before anything leaves the node.

An agreement may limit, per UTC day and per collection, the bytes each user or each member
downloads (``quota_user_bytes_per_day``, ``quota_member_bytes_per_day``) and the pictures
(map tiles, previews, point values, statistics) each user or member gets
(``quota_user_tiles_per_day``, ``quota_member_tiles_per_day``). The provider's own users
and operators are not limited; anonymous callers have no user or member to count against.

``AssetGate`` reserves the size of a request *before* sending (the length of the range
for a download, 1 for a picture) with one atomic ``UPDATE ... WHERE used + n <= limit``
per counter (``AccessStore.reserve``): a request that does not fit is refused with a
``QuotaExceededError`` that says how much remains, and concurrent requests (threads or
worker processes) cannot pass the limit together. When a download ends, what was reserved
but not sent (a client gone away) is given back, so the counter is the bytes actually
served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from eoshare.access.agreements import Agreement
from eoshare.access.base import Principal
from eoshare.access.policy import AgreementPolicy, is_operator
from eoshare.access.store import AccessStore, QuotaClaim, today
from eoshare.errors import QuotaExceededError

Unit = Literal["bytes", "tiles"]


@dataclass
class Reservation:
    """Amounts reserved for one request; ``settle`` gives back what was not used."""

    store: AccessStore | None
    day: str
    claims: list[QuotaClaim]
    amount: int
    _settled: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def settle(self, used: int) -> None:
        """``used`` of the reserved amount was actually served; the rest goes back.
        Safe to call more than once (only the first counts)."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        unused = self.amount - max(0, min(used, self.amount))
        if self.store is not None and unused > 0 and self.claims:
            back = [QuotaClaim(c.subject, c.collection, c.unit, unused, c.limit)
                    for c in self.claims]  # fmt: skip
            self.store.release(back, self.day)


NO_RESERVATION = Reservation(None, "", [], 0)


def _limits(a: Agreement, unit: Unit) -> tuple[int | None, int | None]:
    if unit == "bytes":
        return a.quota_user_bytes_per_day, a.quota_member_bytes_per_day
    return a.quota_user_tiles_per_day, a.quota_member_tiles_per_day


class Quotas:
    """Reserves against the quotas of the agreements in an ``AccessStore``. Built once in
    ``create_app`` (``open_access``); called by ``AssetGate`` only."""

    def __init__(self, store: AccessStore, policy: AgreementPolicy) -> None:
        self.store = store
        self.policy = policy

    def claims(
        self, principal: Principal, collection: str, unit: Unit, amount: int
    ) -> list[QuotaClaim]:
        """The counters a request of ``amount`` counts against (none when unlimited)."""
        a = self.policy.agreement(collection)
        if a is None or is_operator(principal) or principal.member == a.provider:
            return []
        per_user, per_member = _limits(a, unit)
        out: list[QuotaClaim] = []
        if per_user is not None and principal.user is not None:
            out.append(QuotaClaim(f"u:{principal.user}", collection, unit, amount, per_user))
        if per_member is not None and principal.member is not None:
            out.append(QuotaClaim(f"m:{principal.member}", collection, unit, amount, per_member))
        return out

    def remaining(self, principal: Principal, collection: str, unit: Unit) -> int | None:
        """What is left today for ``principal`` (the tighter of its counters), or None."""
        left: int | None = None
        for c in self.claims(principal, collection, unit, 0):
            room = max(0, c.limit - self.store.quota_used(c.subject, collection, unit))
            left = room if left is None else min(left, room)
        return left

    def reserve(
        self, principal: Principal, collection: str, unit: Unit, amount: int
    ) -> Reservation:
        """Reserve ``amount`` or raise ``QuotaExceededError`` saying how much remains."""
        claims = self.claims(principal, collection, unit, amount)
        if not claims:
            return NO_RESERVATION
        day = today()
        full = self.store.reserve(claims, day)
        if full is None:
            return Reservation(self.store, day, claims, amount)
        claim, used = full
        left = max(0, claim.limit - used)
        who = "user" if claim.subject.startswith("u:") else "member"
        a = self.policy.agreement(collection)
        name = a.name if a is not None else f"collection {collection!r}"
        if unit == "bytes":
            detail = (
                f"the daily quota per {who} of the {name} is {claim.limit} bytes and "
                f"{left} remain today (UTC); this request needs {amount}. Ask for a range "
                f"of at most {left} bytes (Range: bytes=<start>-<start+{left}-1>) or try "
                "again tomorrow"
            )
        else:
            detail = (
                f"the daily quota per {who} of the {name} is {claim.limit} pictures (map "
                f"tiles, previews, point values, statistics) and {left} remain today "
                "(UTC); try again tomorrow"
            )
        if left == 0 and unit == "bytes":
            detail = (
                f"the daily quota per {who} of the {name} ({claim.limit} bytes) is used up; "
                "0 bytes remain today; try again tomorrow (UTC)"
            )
        raise QuotaExceededError(detail, remaining=left, unit=unit)
