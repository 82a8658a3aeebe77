"""Property-based tests over random agreement combinations: the CQL2 visibility filter,
run by the real SQLite catalogue, selects exactly the items the plain rules allow, and
every decision agrees with them."""

from __future__ import annotations

import functools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.base import Action, Principal
from eoshare.access.policy import AgreementPolicy
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.catalog.base import Catalog, SearchQuery

from . import oracle

MEMBERS = ("aa", "bb", "cc", "dd")
COLLECTIONS = ("p0", "p1", "p2", "p3", "p4")
# ages in days, kept half a day away from any whole-day embargo boundary
AGES = (0.5, 3.5, 9.5, 30.5, 89.5, 400.5)
JSON = dict[str, Any]


@functools.cache
def catalog() -> tuple[Catalog, dict[str, float]]:
    """Built once: a few items per collection at known ages."""
    path = Path(tempfile.mkdtemp(prefix="eoshare-prop-")) / "catalog.db"
    cat = open_catalog(f"sqlite:///{path}")
    now = datetime.now(UTC)
    ages: dict[str, float] = {}
    for cid in COLLECTIONS:
        cat.create_collection(
            {
                "type": "Collection",
                "stac_version": "1.1.0",
                "id": cid,
                "description": cid,
                "license": "other",
                "extent": {
                    "spatial": {"bbox": [[-1, -1, 1, 1]]},
                    "temporal": {"interval": [[None, None]]},
                },
                "links": [],
            }
        )
        items = []
        for n, age in enumerate(AGES):
            iid = f"{cid}-{n}"
            ages[iid] = age
            when = (now - timedelta(days=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
            items.append(
                {
                    "type": "Feature",
                    "stac_version": "1.1.0",
                    "id": iid,
                    "collection": cid,
                    "geometry": {"type": "Point", "coordinates": [0.1 * n, 0.1]},
                    "bbox": [0.1 * n, 0.1, 0.1 * n, 0.1],
                    "properties": {"datetime": when},
                    "assets": {"data": {"href": "x"}},
                    "links": [],
                }
            )
        cat.upsert_items(items)
    return cat, ages


agreements_st = st.fixed_dictionaries(
    {
        "provider": st.sampled_from(MEMBERS),
        "access": st.sampled_from(["open", "members", "partners", "provider"]),
        "partners": st.lists(st.sampled_from(MEMBERS), max_size=3, unique=True),
        "embargo_days": st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
        "embargo_opens_to": st.sampled_from(["public", "members"]),
        "reduced_resolution_m": st.one_of(st.none(), st.sampled_from([30.0, 100.0, 500.0])),
        "terms": st.one_of(st.none(), st.just("Peaceful use only.")),
    }
)
principal_st = st.fixed_dictionaries(
    {
        "user": st.one_of(st.none(), st.sampled_from(["u1", "u2"])),
        "member": st.one_of(st.none(), st.sampled_from(MEMBERS)),
        "operator": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    agreements=st.dictionaries(st.sampled_from(COLLECTIONS), agreements_st, max_size=5),
    who=principal_st,
    unlisted=st.sampled_from(["open", "operators"]),
)
def test_filter_and_decisions_follow_the_rules(
    agreements: dict[str, JSON], who: JSON, unlisted: str
) -> None:
    cat, ages = catalog()
    store = AccessStore(":memory:")
    try:
        for code in MEMBERS:
            store.put_member(Member(code, code.upper(), code.upper()[:2]), who="t")
        for cid, terms in agreements.items():
            store.put_agreement(agreement_from_dict({"collection": cid, **terms}), who="t")
        policy = AgreementPolicy(store, unlisted=unlisted)
        user = who["user"] if who["user"] or not who["member"] else "u-member"
        if who["operator"] and user is None:
            user = "op"
        principal = Principal(
            user=user,
            member=who["member"] if user else None,
            roles=frozenset({"operator"}) if who["operator"] and user else frozenset(),
        )
        operator = "operator" in principal.roles

        def rule_visible(cid: str, iid: str) -> bool:
            a = agreements.get(cid)
            if a is None:
                return unlisted == "open" or operator
            return oracle.visible(
                member=principal.member,
                operator=operator,
                provider=a["provider"],
                a=a,
                age_days=ages[iid],
            )

        want = {iid for iid in ages if rule_visible(iid.split("-")[0], iid)}
        page = cat.search(
            SearchQuery(limit=1000, visible=policy.visible_filter(principal), count=True)
        )
        got = {i["id"] for i in page.items}
        assert got == want
        assert page.number_matched == len(want)

        for iid in ages:
            cid = iid.split("-")[0]
            item = {
                "id": iid,
                "collection": cid,
                "properties": {
                    "datetime": (datetime.now(UTC) - timedelta(days=ages[iid])).isoformat()
                },
            }
            assert policy.can_view(principal, item) == (iid in want)
            if iid not in want:
                continue
            a = agreements.get(cid)
            decision = policy.decide(principal, item, "data", Action.DOWNLOAD)
            if a is None:
                assert decision.kind == "full"
                continue
            expected = oracle.download(
                user=principal.user,
                member=principal.member,
                operator=operator,
                provider=a["provider"],
                a=a,
                age_days=ages[iid],
                accepted=False,
            )
            # a download is never "reduced": the hint maps a denial with a reduced
            # resolution to "reduced"
            got_kind = decision.kind
            if got_kind == "denied" and a.get("reduced_resolution_m") is not None:
                tile = policy.decide(principal, item, "data", Action.TILE)
                if tile.kind == "reduced":
                    got_kind = "reduced"
                    assert tile.max_resolution_m == a["reduced_resolution_m"]
            assert got_kind == expected, (cid, iid, a, principal)
            if decision.kind == "denied":
                assert decision.agreement == cid and decision.reason
    finally:
        store.close()


@settings(max_examples=30, deadline=None)
@given(agreements=st.dictionaries(st.sampled_from(COLLECTIONS), agreements_st, max_size=5))
def test_more_rights_never_see_less(agreements: dict[str, JSON]) -> None:
    """Monotonic: a member user sees at least what the public sees; an operator all."""
    cat, ages = catalog()
    store = AccessStore(":memory:")
    try:
        for code in MEMBERS:
            store.put_member(Member(code, code, "XX"), who="t")
        for cid, terms in agreements.items():
            store.put_agreement(agreement_from_dict({"collection": cid, **terms}), who="t")
        policy = AgreementPolicy(store)

        def seen(p: Principal) -> set[str]:
            q = SearchQuery(limit=1000, visible=policy.visible_filter(p))
            return {i["id"] for i in cat.search(q).items}

        public = seen(Principal())
        member = seen(Principal(user="m", member="aa"))
        operator = seen(Principal(user="o", roles=frozenset({"operator"})))
        assert public <= member <= operator
        assert operator == set(ages)
    finally:
        store.close()
