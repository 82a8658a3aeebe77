"""Disaster activations: ``requested -> approved | rejected``, ``approved -> active`` (the
first post-event scene over the area arrived), ``approved | active -> closed``.

* An emergency focal point of a member (or an operator, on a member's behalf) requests
  one: hazard, area, event time, description, contacts.
* An operator approves it (optionally with an expiry and other pre/post days) or rejects
  it with a reason. A member may hold a standing pre-approval: its focal points' requests
  are approved on arrival.
* From approval until close (or expiry) the activation is a grant that the access policy
  honours (``eoshare.access.grants``): the requesting member's users and the responders
  get full access to the released collections' items over the area and period.
* Every transition is written with who and when; every byte granted under it is audited
  against its id; at close a summary is kept.

``ActivationService`` is built once (``eoshare.disaster.service.open_disaster``) and is the
policy's ``GrantSource``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eoshare.access.agreements import EMERGENCY_FOCAL_POINT, check_code
from eoshare.access.base import Principal
from eoshare.access.grants import DisasterGrant
from eoshare.access.policy import is_operator
from eoshare.access.store import AccessStore
from eoshare.disaster.areas import parse_area
from eoshare.disaster.store import ActivationRow, DisasterStore, iso, parse_iso
from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)
from eoshare.freshness import VersionCheck

JSON = dict[str, Any]
log = logging.getLogger("eoshare.disaster")

# the International Charter's hazard types
HAZARDS = (
    "flood", "fire", "earthquake", "cyclone", "storm", "landslide", "volcano", "tsunami",
    "oil-spill", "other",
)  # fmt: skip
STATES = ("requested", "approved", "rejected", "active", "closed")
LIVE = ("approved", "active")
DEFAULT_PRE_DAYS = 30.0
DEFAULT_POST_DAYS = 30.0
MAX_DAYS = 366.0

Clock = Callable[[], datetime]
ActivationHook = Callable[[ActivationRow], None]
PostEventHook = Callable[[ActivationRow, JSON], None]


def _days(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DAYS:
        raise InvalidRequestError(f"{name} must be a number of days from 0 to {MAX_DAYS:g}")
    return float(value)


def parse_time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be an RFC 3339 date-time such as 2024-10-05T06:00Z")
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequestError(
            f"{name} must be an RFC 3339 date-time such as 2024-10-05T06:00Z, got {value[:40]!r}"
        ) from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def who_of(principal: Principal) -> str:
    if principal.user is None:
        raise NotAuthenticatedError("sign in first: activations need a user")
    return principal.user


class ActivationService:
    """Activations, their grants and their audit. Thread-safe."""

    def __init__(
        self, store: DisasterStore, access_store: AccessStore, *, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.access_store = access_store
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._grants: tuple[int, list[DisasterGrant]] | None = None
        # the version is read once per request (eoshare.freshness)
        self._fresh = VersionCheck()
        # called after approval (alerts arm a subscription) and when a post-event item
        # over a live activation's area arrives (value-added products plug in here)
        self.on_approved: list[ActivationHook] = []
        self.on_closed: list[ActivationHook] = []
        self.on_post_event: list[PostEventHook] = []
        # the activation's value-added products (eoshare.disaster.products sets it)
        self.products_of: Callable[[str], list[JSON]] | None = None

    # --- reading ----------------------------------------------------------------------
    def _row(self, aid: str) -> ActivationRow:
        return self.store.get_activation(aid)

    def may_see(self, principal: Principal, a: ActivationRow) -> bool:
        if is_operator(principal):
            return True
        if principal.member is not None and principal.member == a.member:
            return True
        for kind, name in self.store.responders().get(a.id, []):
            if (kind == "member" and name == principal.member) or (
                kind == "user" and name == principal.user
            ):
                return True
        return False

    def get(self, principal: Principal, aid: str) -> ActivationRow:
        """The activation, or NotFoundError when absent or not the caller's to see."""
        who_of(principal)
        a = self._row(aid)
        if not self.may_see(principal, a):
            raise NotFoundError(f"activation {aid!r} does not exist")
        return a

    def visible_to(self, principal: Principal, *, state: str | None = None) -> list[ActivationRow]:
        who_of(principal)
        if state is not None and state not in STATES:
            raise InvalidRequestError(f"state is one of {', '.join(STATES)}")
        return [a for a in self.store.list_activations(state=state) if self.may_see(principal, a)]

    def window(self, a: ActivationRow) -> tuple[datetime, datetime]:
        return (
            a.event_time - timedelta(days=a.pre_days),
            a.event_time + timedelta(days=a.post_days),
        )

    def grant_ends(self, a: ActivationRow) -> datetime | None:
        ends = [t for t in (a.closed_at, a.expires) if t is not None]
        return min(ends) if ends else None

    def to_doc(self, a: ActivationRow, base: str = "") -> JSON:
        start, end = self.window(a)
        responders = self.store.responders().get(a.id, [])
        now = self.clock()
        live = a.approved_at is not None and a.approved_at <= now
        ends = self.grant_ends(a)
        live = live and (ends is None or now < ends)
        first = a.first_data_at
        href = f"{base}/activations/{a.id}"
        return {
            "id": a.id,
            "state": a.state,
            "hazard": a.hazard,
            "title": a.title,
            "description": a.description,
            "member": a.member,
            "requested_by": a.requested_by,
            "requested_at": iso(a.requested_at),
            "event_time": iso(a.event_time),
            "pre_days": a.pre_days,
            "post_days": a.post_days,
            "window": {"start": iso(start), "end": iso(end)},
            "area": a.area,
            "contacts": a.contacts,
            "approved_at": iso(a.approved_at) if a.approved_at else None,
            "approved_by": a.approved_by,
            "expires": iso(a.expires) if a.expires else None,
            "closed_at": iso(a.closed_at) if a.closed_at else None,
            "reason": a.reason,
            "first_data_at": iso(first) if first else None,
            "responders": [{"kind": k, "name": n} for k, n in sorted(responders)],
            "grant": {
                "live": live,
                "starts": iso(a.approved_at) if a.approved_at else None,
                "ends": iso(ends) if ends else None,
            },
            "transitions": self.store.transitions(a.id),
            "links": [
                {"rel": "self", "href": href, "type": "application/json"},
                {"rel": "archive", "href": f"{href}/archive", "type": "application/geo+json"},
                {"rel": "passes", "href": f"{href}/passes", "type": "application/json"},
                {"rel": "summary", "href": f"{href}/summary", "type": "application/json"},
            ],
        }

    # --- the workflow -----------------------------------------------------------------
    def request(self, principal: Principal, doc: JSON) -> ActivationRow:
        """A new activation from a focal point (or an operator naming ``member``)."""
        who = who_of(principal)
        if not isinstance(doc, dict):
            raise InvalidRequestError("an activation request is a JSON object")
        unknown = sorted(
            set(doc)
            - {"hazard", "title", "description", "contacts", "area", "event_time", "pre_days",
               "post_days", "member", "webhook"}
        )  # fmt: skip
        if unknown:
            raise InvalidRequestError(f"unknown field(s): {', '.join(unknown)}")
        if is_operator(principal):
            member = doc.get("member") or principal.member
            if member is None:
                raise InvalidRequestError("an operator requesting an activation names 'member'")
        else:
            if EMERGENCY_FOCAL_POINT not in principal.roles or principal.member is None:
                raise AccessDeniedError(
                    "requesting an activation needs the emergency-focal-point role of a member "
                    "(or an operator)"
                )
            member = principal.member
            if doc.get("member") not in (None, member):
                raise AccessDeniedError("a focal point requests activations for its own member")
        member = check_code(member, "member")
        self.access_store.get_member(member)
        hazard = doc.get("hazard")
        if hazard not in HAZARDS:
            raise InvalidRequestError(f"hazard is one of {', '.join(HAZARDS)}")
        if "area" not in doc:
            raise InvalidRequestError("an activation needs an 'area' (GeoJSON polygons)")
        area = parse_area(doc["area"])
        event = parse_time(doc.get("event_time"), "event_time")
        contacts = doc.get("contacts") or []
        if not isinstance(contacts, list) or len(contacts) > 20:
            raise InvalidRequestError("contacts is a list (at most 20) of names, e-mails, phones")
        title = str(doc.get("title") or f"{hazard} ({member})")[:200]
        webhook = doc.get("webhook")
        if webhook is not None and not isinstance(webhook, str):
            raise InvalidRequestError("webhook is a URL")
        now = self.clock()
        row = ActivationRow(
            id=f"act-{now.strftime('%Y%m%d')}-{secrets.token_hex(3)}",
            state="requested",
            member=member,
            requested_by=who,
            requested_at=now,
            hazard=str(hazard),
            title=title,
            description=str(doc.get("description") or "")[:5000],
            contacts=[str(c)[:200] for c in contacts],
            area=area,
            event_time=event,
            pre_days=_days(doc.get("pre_days"), "pre_days", DEFAULT_PRE_DAYS),
            post_days=_days(doc.get("post_days"), "post_days", DEFAULT_POST_DAYS),
            approved_at=None,
            approved_by=None,
            expires=None,
            closed_at=None,
            reason=None,
            first_data_at=None,
            webhook=webhook,
            revision=0,
        )
        self.store.insert_activation(row, who=who, note=None)
        log.info("activation requested", extra={"activation": row.id, "member": member})
        if self.store.preapproved(member):
            return self._approve(row.id, who=f"pre-approval:{member}", expires=None, note=None)
        return row

    def _operator(self, principal: Principal) -> str:
        who = who_of(principal)
        if not is_operator(principal):
            raise AccessDeniedError("only operators approve, reject and close activations")
        return who

    def approve(
        self,
        principal: Principal,
        aid: str,
        *,
        expires: datetime | None = None,
        note: str | None = None,
    ) -> ActivationRow:
        return self._approve(aid, who=self._operator(principal), expires=expires, note=note)

    def _approve(
        self, aid: str, *, who: str, expires: datetime | None, note: str | None
    ) -> ActivationRow:
        now = self.clock()
        if expires is not None and expires <= now:
            raise InvalidRequestError("the expiry must be in the future")
        ok = self.store.transition(
            aid,
            expect=("requested",),
            to="approved",
            at=now,
            who=who,
            note=note,
            fields={"approved_at": now, "approved_by": who, "expires": expires},
        )
        if not ok:
            raise ConflictError(f"activation {aid!r} is not waiting for approval")
        self.invalidate()
        row = self._row(aid)
        for hook in self.on_approved:
            try:
                hook(row)
            except Exception:  # a hook's failure must not undo an approval
                log.exception("activation hook failed", extra={"activation": aid})
        return row

    def reject(self, principal: Principal, aid: str, *, reason: str) -> ActivationRow:
        who = self._operator(principal)
        if not reason or not reason.strip():
            raise InvalidRequestError("a rejection needs a reason")
        ok = self.store.transition(
            aid, expect=("requested",), to="rejected", at=self.clock(), who=who,
            note=reason, fields={"reason": reason.strip()[:2000]},
        )  # fmt: skip
        if not ok:
            raise ConflictError(f"activation {aid!r} is not waiting for approval")
        return self._row(aid)

    def close(self, principal: Principal, aid: str, *, note: str | None = None) -> ActivationRow:
        who = self._operator(principal)
        now = self.clock()
        ok = self.store.transition(
            aid, expect=LIVE, to="closed", at=now, who=who, note=note,
            fields={"closed_at": now},
        )  # fmt: skip
        if not ok:
            raise ConflictError(f"activation {aid!r} is not approved or active")
        self.invalidate()
        row = self._row(aid)
        for hook in self.on_closed:
            try:
                hook(row)
            except Exception:
                log.exception("activation hook failed", extra={"activation": aid})
        return row

    def add_responder(
        self, principal: Principal, aid: str, *, member: str | None = None, user: str | None = None
    ) -> ActivationRow:
        who = self._operator(principal)
        a = self._row(aid)
        if a.state in ("rejected", "closed"):
            raise ConflictError(f"activation {aid!r} is {a.state}")
        if (member is None) == (user is None):
            raise InvalidRequestError("name one responder: a member or a user")
        if member is not None:
            self.access_store.get_member(check_code(member, "member"))
            self.store.add_responder(aid, "member", member, at=self.clock(), who=who)
        elif user is not None:
            self.access_store.get_user(check_code(user, "user"))
            self.store.add_responder(aid, "user", user, at=self.clock(), who=who)
        self.invalidate()
        return self._row(aid)

    def set_preapproval(self, principal: Principal, member: str, *, on: bool) -> JSON:
        who = self._operator(principal)
        self.access_store.get_member(check_code(member, "member"))
        self.store.set_preapproval(member, on=on, at=self.clock(), who=who)
        return {"member": member, "preapproved": on}

    # --- GrantSource ------------------------------------------------------------------
    def invalidate(self) -> None:
        self._fresh.reset()

    def grants(self) -> Sequence[DisasterGrant]:
        cached = self._grants
        if cached is not None and not self._fresh.due():
            return cached[1]
        version = self.store.version()
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._lock:
            responders = self.store.responders()
            out: list[DisasterGrant] = []
            for a in self.store.list_activations():
                if a.approved_at is None:
                    continue
                start, end = self.window(a)
                extra = responders.get(a.id, [])
                out.append(
                    DisasterGrant(
                        id=a.id,
                        area=a.area,
                        window_start=start,
                        window_end=end,
                        starts=a.approved_at,
                        ends=self.grant_ends(a),
                        members=frozenset([a.member, *(n for k, n in extra if k == "member")]),
                        users=frozenset(n for k, n in extra if k == "user"),
                        revision=a.revision,
                    )
                )
            self._grants = (version, out)
        return out

    def record_grant(
        self,
        grant_id: str,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: str,
        nbytes: int,
    ) -> None:
        self.store.record_grant(
            grant_id,
            at=self.clock(),
            username=principal.user,
            member=principal.member,
            collection=item.get("collection"),
            item=item.get("id"),
            asset=asset_key,
            action=action,
            nbytes=nbytes,
        )

    # --- new data ---------------------------------------------------------------------
    def items_created(self, items: Sequence[JSON], released: Callable[[str], bool]) -> None:
        """Called after the catalogue wrote ``items``: a post-event scene over a live
        activation's area marks its first data (``approved -> active``) and runs the
        post-event hooks. ``released`` says whether a collection allows disaster release."""
        now = self.clock()
        live = [g for g in self.grants() if g.live_at(now)]
        if not live:
            return
        from eoshare.access.policy import item_acquired

        for item in items:
            if not released(str(item.get("collection", ""))):
                continue
            acquired = item_acquired(item)
            for g in live:
                a = self._row(g.id)
                if acquired is None or acquired < a.event_time or not g.covers_item(item, acquired):
                    continue
                if self.store.set_first_data(a.id, now):
                    self.store.transition(
                        a.id, expect=("approved",), to="active", at=now, who="system",
                        note=f"first post-event scene {item.get('collection')}/{item.get('id')}",
                    )  # fmt: skip
                    self.invalidate()
                for hook in self.on_post_event:
                    try:
                        hook(a, item)
                    except Exception:
                        log.exception("post-event hook failed", extra={"activation": a.id})

    # --- close summary ----------------------------------------------------------------
    def summary(self, principal: Principal, aid: str) -> JSON:
        a = self.get(principal, aid)
        audit = self.store.grant_summary(aid)
        first_data = a.first_data_at
        first_grant = parse_iso(audit["first_grant_at"]) if audit["first_grant_at"] else None
        products = self.products_of(aid) if self.products_of else []
        return {
            "activation": aid,
            "state": a.state,
            "approved_at": iso(a.approved_at) if a.approved_at else None,
            "closed_at": iso(a.closed_at) if a.closed_at else None,
            "seconds_approval_to_first_data": (
                (first_data - a.approved_at).total_seconds()
                if first_data and a.approved_at
                else None
            ),
            "seconds_approval_to_first_delivery": (
                (first_grant - a.approved_at).total_seconds()
                if first_grant and a.approved_at
                else None
            ),
            "products": products,
            "seconds_approval_to_first_product": (
                min(p["seconds_from_approval"] for p in products) if products else None
            ),
            **audit,
        }
