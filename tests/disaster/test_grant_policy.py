"""The grant inside the access policy, without a server: a reduced-resolution collection
becomes full under a grant (download included, without accepting terms first), an expiry set at
approval ends it exactly, responders by name, and the post-event hook (where value-added
products plug in) is called for a matching new scene only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.base import Action, Principal
from eoshare.access.policy import AgreementPolicy
from eoshare.access.store import AccessStore
from eoshare.disaster.activations import ActivationService
from eoshare.disaster.store import DisasterStore

EVENT = datetime(2024, 10, 5, 6, tzinfo=UTC)
AREA = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
OPS = Principal(user="ops", roles=frozenset({"operator"}))
FOCAL = Principal(user="focal", member="aa", roles=frozenset({"emergency-focal-point"}))
ANALYST = Principal(user="analyst", member="aa")
NAMED = Principal(user="named", member="cc")
OTHER = Principal(user="other", member="cc")


def item(iid: str, hours: float, cid: str = "reduced", x: float = 0.5) -> dict[str, Any]:
    when = (EVENT + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Feature", "id": iid, "collection": cid,
        "geometry": {"type": "Point", "coordinates": [x, 0.5]},
        "bbox": [x, 0.5, x, 0.5], "properties": {"datetime": when},
    }  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = EVENT + timedelta(hours=3)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(state_location: Any) -> tuple[AgreementPolicy, ActivationService, Clock]:
    access = AccessStore(state_location("access.db"))
    for code in ("aa", "bb", "cc"):
        access.put_member(Member(code, code, "KE"), who="t")
    for name, member in (("focal", "aa"), ("analyst", "aa"), ("named", "cc"), ("other", "cc")):
        access.put_user(name, member=member, roles=["viewer"], who="t")
    access.put_agreement(
        agreement_from_dict({"collection": "reduced", "provider": "bb", "access": "provider",
                             "reduced_resolution_m": 100, "terms": "Say yes first.",
                             "quota_user_bytes_per_day": 1, "disaster_release": True}),
        who="t",
    )  # fmt: skip
    policy = AgreementPolicy(access)
    clock = Clock()
    acts = ActivationService(DisasterStore(state_location("d.db")), access, clock=clock)
    policy.grant_source = acts
    policy.clock = clock
    return policy, acts, clock


def test_reduced_becomes_full_under_the_grant_and_ends_at_expiry(world: Any) -> None:
    policy, acts, clock = world
    scene = item("s", 5)
    assert policy.decide(ANALYST, scene, "B04", Action.DOWNLOAD).kind == "denied"
    assert policy.decide(ANALYST, scene, "B04", Action.TILE).kind == "reduced"
    a = acts.request(FOCAL, {"hazard": "flood", "area": AREA, "event_time": EVENT.isoformat()})
    expires = clock.now + timedelta(hours=6)
    acts.approve(OPS, a.id, expires=expires)
    d = policy.decide(ANALYST, scene, "B04", Action.DOWNLOAD)
    assert d.kind == "full" and d.grant == a.id  # no terms to accept first
    assert policy.decide(ANALYST, scene, "B04", Action.TILE).kind == "full"
    # outside the area or the window: as before
    assert policy.decide(ANALYST, item("far", 5, x=5.0), "B04", Action.TILE).kind == "reduced"
    assert policy.decide(ANALYST, item("old", -24 * 40), "B04", Action.TILE).kind == "reduced"
    assert policy.decide(OTHER, scene, "B04", Action.TILE).kind == "reduced"
    clock.now = expires - timedelta(microseconds=1)
    assert policy.decide(ANALYST, scene, "B04", Action.DOWNLOAD).grant == a.id
    clock.now = expires
    assert policy.decide(ANALYST, scene, "B04", Action.DOWNLOAD).kind == "denied"


def test_named_responder_only(world: Any) -> None:
    policy, acts, _ = world
    a = acts.request(FOCAL, {"hazard": "fire", "area": AREA, "event_time": EVENT.isoformat()})
    acts.approve(OPS, a.id)
    acts.add_responder(OPS, a.id, user="named")
    scene = item("s", 5)
    assert policy.decide(NAMED, scene, None, Action.DOWNLOAD).grant == a.id
    assert policy.decide(OTHER, scene, None, Action.DOWNLOAD).kind == "denied"


def test_post_event_hook_for_matching_scenes_only(world: Any) -> None:
    policy, acts, _ = world
    a = acts.request(FOCAL, {"hazard": "flood", "area": AREA, "event_time": EVENT.isoformat()})
    acts.approve(OPS, a.id)
    calls: list[tuple[str, str]] = []
    acts.on_post_event.append(lambda act, it: calls.append((act.id, it["id"])))

    def released(cid: str) -> bool:
        agreement = policy.agreement(cid)
        return agreement is not None and agreement.disaster_release

    acts.items_created([item("pre", -5), item("away", 5, x=9.0), item("post", 5)], released)
    acts.items_created([item("unreleased", 5, cid="elsewhere")], released)
    assert calls == [(a.id, "post")]
    assert acts.get(OPS, a.id).state == "active"
