"""``AgreementPolicy``: the ``AccessPolicy`` that enforces members' sharing agreements.

Who has *full rights* on a collection: operators; users of the provider (the owning
member); anyone for ``open``; any member user for ``members``; users of a listed partner
for ``partners``. An embargo gives full rights on each item N days after its acquisition
(to everyone, or to member users only). Without full rights, a collection with
``reduced_resolution_m`` still shows its items' metadata, thumbnails and tiles no finer
than that; otherwise its items are hidden (404, as if absent).

Visibility is a CQL2 JSON expression over ``collection`` and ``datetime`` only, so that
the SQLite catalogue, pgstac and a remote STAC API can all apply it. It is built once per
(member, operator?, agreements version, minute) and cached: the minute is there because
an embargo's cut-off moves with the clock.

Disaster grants (``eoshare.access.grants``) add to what agreements give: the key of the
cached filter also holds the grants live for the caller at that very instant, so that a
grant begins and ends exactly at its edges, not at the next minute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from eoshare.access.agreements import (
    OPERATOR,
    PROVIDER_ADMIN,
    Agreement,
    Member,
    User,
    agreement_from_dict,
)
from eoshare.access.base import Action, Decision, Principal, log_grant
from eoshare.access.grants import DisasterGrant, GrantSource
from eoshare.access.store import AccessStore, iso
from eoshare.errors import AccessDeniedError, InvalidRequestError, NotFoundError
from eoshare.freshness import VersionCheck

JSON = dict[str, Any]
CollectionView = Literal["full", "partial", "hidden"]

# "false" in CQL2 JSON that every backend understands
NOTHING: JSON = {"op": "=", "args": [1, 0]}
BYTE_ACTIONS = (Action.DOWNLOAD, Action.PROCESS)


def is_operator(principal: Principal) -> bool:
    return OPERATOR in principal.roles


def principal_for(user: User, member: Member | None) -> Principal:
    return Principal(
        user=user.username,
        member=user.member,
        country=member.country if member else None,
        roles=user.roles,
    )


def item_acquired(item: JSON) -> datetime | None:
    """When the scene was acquired: ``datetime``, else ``start_datetime``."""
    props = item.get("properties") or {}
    text = props.get("datetime") or props.get("start_datetime")
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass
class _Snapshot:
    version: int
    agreements: dict[str, Agreement]
    members: dict[str, Member]
    filters: dict[tuple[Any, ...], JSON | None] = field(default_factory=dict)


class AgreementPolicy:
    """Decides from the agreements in an ``AccessStore``. Built once in ``create_app``."""

    def __init__(self, store: AccessStore, *, unlisted: str = "open") -> None:
        self.store = store
        self.unlisted_open = unlisted == "open"
        self._lock = threading.Lock()
        self._snap: _Snapshot | None = None
        # when to read the version again: once per request (eoshare.freshness)
        self._fresh = VersionCheck()
        # the disaster grants (set by create_app when the disaster service exists) and the
        # clock every time-dependent rule reads (tests inject one)
        self.grant_source: GrantSource | None = None
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    # --- the cached view of agreements ------------------------------------------------
    def snapshot(self) -> _Snapshot:
        # The version is one indexed read, done once per request (and every 50 ms
        # outside requests): a change made by any process of the node (another worker,
        # the CLI) decides every request that starts after it (eoshare.freshness).
        snap = self._snap
        if snap is not None and not self._fresh.due():
            return snap
        version = self.store.version()
        if snap is not None and snap.version == version:
            return snap
        with self._lock:
            snap = _Snapshot(
                version,
                {a.collection: a for a in self.store.list_agreements()},
                {m.code: m for m in self.store.list_members()},
            )
            self._snap = snap
        return snap

    def invalidate(self) -> None:
        self._fresh.reset()

    def agreement(self, collection: str) -> Agreement | None:
        return self.snapshot().agreements.get(collection)

    def member(self, code: str | None) -> Member | None:
        return self.snapshot().members.get(code) if code else None

    # --- rights -----------------------------------------------------------------------
    @staticmethod
    def full_rights(principal: Principal, a: Agreement) -> bool:
        """Full rights on every item of the collection, embargo aside."""
        if is_operator(principal) or a.access == "open":
            return True
        m = principal.member
        if m is None:
            return False
        if m == a.provider or a.access == "members":
            return True
        return a.access == "partners" and m in a.partners

    @staticmethod
    def embargo_applies(principal: Principal, a: Agreement) -> bool:
        """Whether an embargo, once over, opens items to this principal."""
        return a.embargo_days is not None and (
            a.embargo_opens_to == "public" or principal.member is not None
        )

    def _embargo_over(self, principal: Principal, a: Agreement, item: JSON) -> bool:
        if not self.embargo_applies(principal, a) or a.embargo_days is None:
            return False
        acquired = item_acquired(item)
        return acquired is not None and acquired <= self.clock() - timedelta(days=a.embargo_days)

    def collection_view(self, principal: Principal, collection: str) -> CollectionView:
        """What the caller sees of a collection: all its items' metadata ("full"), some
        of them ("partial", an embargo), or none ("hidden": it answers 404)."""
        a = self.agreement(collection)
        if a is None:
            return "full" if self.unlisted_open or is_operator(principal) else "hidden"
        if self.full_rights(principal, a) or a.reduced_resolution_m is not None:
            return "full"
        if self.embargo_applies(principal, a):
            return "partial"
        if a.disaster_release and self.live_grants(principal, self.clock()):
            return "partial"  # the items a live disaster grant releases
        return "hidden"

    def can_view(self, principal: Principal, item: JSON) -> bool:
        """The item-level truth the CQL2 filter expresses (used by tests and checks)."""
        cid = str(item.get("collection", ""))
        view = self.collection_view(principal, cid)
        if view == "full":
            return True
        a = self.agreement(cid)
        if a is None:
            return False
        if view == "partial" and self._embargo_over(principal, a, item):
            return True
        return self._granted(principal, a, item) is not None

    # --- disaster grants --------------------------------------------------------------
    def live_grants(self, principal: Principal, instant: datetime) -> list[DisasterGrant]:
        """The grants that benefit ``principal`` at ``instant``."""
        source = self.grant_source
        if source is None or (principal.user is None and principal.member is None):
            return []
        return [g for g in source.grants() if g.live_at(instant) and g.benefits(principal)]

    def _granted(self, principal: Principal, a: Agreement, item: JSON) -> DisasterGrant | None:
        if not a.disaster_release:
            return None
        grants = self.live_grants(principal, self.clock())
        if not grants:
            return None
        acquired = item_acquired(item)
        for g in grants:
            if g.covers_item(item, acquired):
                return g
        return None

    # --- publishing rights ------------------------------------------------------------
    def check_publish(
        self,
        principal: Principal,
        collection: str | None,
        *,
        exists: bool,
        creating: bool,
        new_access: str = "provider",
    ) -> None:
        """Raise unless ``principal`` may create/change/delete ``collection`` and its items.
        Called by the transaction routes (``api.deps.require_admin``)."""
        if is_operator(principal):
            return
        if PROVIDER_ADMIN not in principal.roles or principal.member is None:
            raise AccessDeniedError(
                "publishing needs the provider-admin role of the collection's member "
                "(or an operator)"
            )
        if not collection:
            raise InvalidRequestError("the collection needs an 'id'")
        if exists and self.collection_view(principal, collection) == "hidden":
            # as if absent, so that writes do not reveal hidden collections
            if creating:
                raise AccessDeniedError(f"the collection id {collection!r} is not available")
            raise NotFoundError(f"collection {collection!r} does not exist")
        if not exists and not creating:
            # changing what is not there: the answer a hidden collection gives
            raise NotFoundError(f"collection {collection!r} does not exist")
        a = self.agreement(collection)
        if a is None:
            if exists:
                raise AccessDeniedError(
                    f"collection {collection!r} has no provider on record: only operators "
                    "may change it"
                )
            # a new collection: the creator's member becomes its provider, under the
            # node's default terms until the provider sets its agreement
            self.store.put_agreement(
                agreement_from_dict(
                    {"collection": collection, "provider": principal.member, "access": new_access}
                ),
                who=principal.user or "?",
            )
            self.invalidate()
            return
        if a.provider != principal.member:
            raise AccessDeniedError(
                f"collection {collection!r} is provided by member {a.provider!r}: only its "
                "provider-admins and operators may change it"
            )

    # --- AccessPolicy -----------------------------------------------------------------
    def visible_filter(self, principal: Principal) -> JSON | None:
        if is_operator(principal):
            return None
        snap = self.snapshot()
        instant = self.clock()
        now = instant.replace(second=0, microsecond=0)
        grants = tuple(sorted((g.id, g.revision) for g in self.live_grants(principal, instant)))
        key = (principal.member, principal.member is None, now, grants)
        try:
            return snap.filters[key]
        except KeyError:
            pass
        result = self._build_filter(principal, snap, now, self.live_grants(principal, instant))
        if len(snap.filters) > 10_000:  # new minute, many members: start again
            snap.filters.clear()
        snap.filters[key] = result
        return result

    def _build_filter(
        self,
        principal: Principal,
        snap: _Snapshot,
        now: datetime,
        grants: list[DisasterGrant] | None = None,
    ) -> JSON | None:
        shown: list[str] = []
        hidden: list[str] = []
        embargoed: dict[int, list[str]] = {}
        for cid, a in sorted(snap.agreements.items()):
            if self.full_rights(principal, a) or a.reduced_resolution_m is not None:
                shown.append(cid)
                continue
            hidden.append(cid)
            if self.embargo_applies(principal, a) and a.embargo_days is not None:
                embargoed.setdefault(a.embargo_days, []).append(cid)
        clauses: list[JSON] = []
        for days, cids in sorted(embargoed.items()):
            cutoff = iso(now - timedelta(days=days))
            clauses.append(
                {
                    "op": "and",
                    "args": [
                        _in(cids),
                        {"op": "<=", "args": [{"property": "datetime"}, {"timestamp": cutoff}]},
                    ],
                }
            )
        released = [cid for cid in hidden if snap.agreements[cid].disaster_release]
        for g in sorted(grants or [], key=lambda g: g.id):
            if released:
                clauses.append(_grant_clause(released, g))
        if self.unlisted_open:
            if not hidden:
                return None
            clauses.insert(0, {"op": "not", "args": [_in(hidden)]})
        elif shown:
            clauses.insert(0, _in(shown))
        if not clauses:
            return NOTHING
        return clauses[0] if len(clauses) == 1 else {"op": "or", "args": clauses}

    def decide(
        self, principal: Principal, item: JSON, asset_key: str | None, action: Action
    ) -> Decision:
        cid = str(item.get("collection", ""))
        a = self.agreement(cid)
        if a is None:
            if self.unlisted_open or is_operator(principal):
                return Decision.full()
            return Decision.denied(f"collection {cid!r} is not shared", agreement=None)
        full = self.full_rights(principal, a) or self._embargo_over(principal, a, item)
        if full:
            if action in BYTE_ACTIONS:
                refused = self._byte_checks(principal, a)
                if refused is not None:
                    return refused
            return Decision.full(agreement=a.collection)
        grant = self._granted(principal, a, item)
        if grant is not None:
            # released by the provider for disasters: no terms to accept first (daily
            # quotas, if the agreement sets them, still apply: the byte gate reserves them)
            return Decision.full(agreement=a.collection, grant=grant.id)
        if a.reduced_resolution_m is not None:
            if action in BYTE_ACTIONS:
                return Decision.denied(
                    f"the full-resolution files of collection {cid!r} are restricted by the "
                    f"{a.name}: {self._who(a)}. Callers without full rights may use metadata, "
                    f"thumbnails and map tiles no finer than {a.reduced_resolution_m:g} m. "
                    f"{self._how(a)}",
                    agreement=a.collection,
                )
            return Decision.reduced(a.reduced_resolution_m, agreement=a.collection)
        # Not visible at all: callers should have answered 404 before asking.
        return Decision.denied("not found", agreement=None)

    def _byte_checks(self, principal: Principal, a: Agreement) -> Decision | None:
        if is_operator(principal) or principal.member == a.provider:
            return None
        if a.terms:
            if principal.user is None:
                return Decision.denied(
                    f"the {a.name} has terms that must be accepted before the first "
                    "download: sign in, then POST "
                    f"/collections/{a.collection}/accept-terms",
                    agreement=a.collection,
                )
            if not self.store.has_accepted(principal.user, a.collection, a.terms):
                return Decision.denied(
                    f"the terms of the {a.name} have not been accepted yet: read them in the "
                    "collection's eoshare:agreement, then POST "
                    f"/collections/{a.collection}/accept-terms",
                    agreement=a.collection,
                )
        # A quota that is used up denies here (orders leave the asset out); a request
        # larger than what remains is refused when ``AssetGate`` reserves its size.
        for limit, subject, who in (
            (a.quota_user_bytes_per_day, principal.user and f"u:{principal.user}", "user"),
            (a.quota_member_bytes_per_day, principal.member and f"m:{principal.member}",
             "member"),
        ):  # fmt: skip
            if limit is None or not subject:
                continue
            if self.store.quota_used(subject, a.collection, "bytes") >= limit:
                return Decision.denied(
                    f"the daily quota per {who} of the {a.name} ({limit} bytes) is used "
                    "up: 0 bytes remain today; try again tomorrow (UTC)",
                    agreement=a.collection,
                )
        return None

    @staticmethod
    def _who(a: Agreement) -> str:
        return {
            "open": "open to everyone",
            "members": "full data for users of member agencies",
            "partners": "full data for users of the provider and its partners",
            "provider": "full data for the provider's own users",
        }[a.access]

    def _how(self, a: Agreement) -> str:
        provider = self.member(a.provider)
        name = f"{provider.name} ({provider.code})" if provider else a.provider
        if a.access == "members":
            return "To obtain access, sign in as a user of a member agency."
        if a.access == "partners":
            return f"To obtain access, sign in as a user of a partner agency, or ask {name}."
        return f"To obtain access, ask the provider, {name}."

    def record(
        self,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: Action,
        decision: Decision,
        nbytes: int,
    ) -> None:
        self.store.record(
            username=principal.user,
            member=principal.member,
            country=principal.country,
            collection=item.get("collection"),
            item=item.get("id"),
            asset=asset_key,
            action=str(action),
            decision=decision.kind,
            nbytes=nbytes,
        )
        log_grant(principal, item, asset_key, action, decision, nbytes)
        if decision.grant is not None and self.grant_source is not None:
            self.grant_source.record_grant(
                decision.grant, principal, item, asset_key, str(action), nbytes
            )


def _grant_clause(cids: list[str], g: DisasterGrant) -> JSON:
    """Items of ``cids`` over the grant's area, acquired within its window."""
    return {
        "op": "and",
        "args": [
            _in(cids),
            {"op": "s_intersects", "args": [{"property": "geometry"}, g.area]},
            {"op": ">=", "args": [{"property": "datetime"}, {"timestamp": iso(g.window_start)}]},
            {"op": "<=", "args": [{"property": "datetime"}, {"timestamp": iso(g.window_end)}]},
        ],
    }


def _in(cids: list[str]) -> JSON:
    if len(cids) == 1:
        return {"op": "=", "args": [{"property": "collection"}, cids[0]]}
    return {"op": "in", "args": [{"property": "collection"}, cids]}
