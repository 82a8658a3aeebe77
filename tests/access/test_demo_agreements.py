"""The demo node's agreements: several members, one collection under each kind of
agreement, and demo users who each see something different."""

from __future__ import annotations

from pathlib import Path

from eoshare.access.agreements import agreement_from_dict
from eoshare.access.base import Action
from eoshare.access.demo import DEMO_PASSWORD, apply_demo_agreements, demo_declarations
from eoshare.access.policy import AgreementPolicy, principal_for
from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.catalog.base import SearchQuery
from eoshare.demo.build import build_demo


def test_demo_declarations_cover_every_kind() -> None:
    doc = demo_declarations()
    agreements = [agreement_from_dict(a) for a in doc["agreements"]]
    kinds = {a.access for a in agreements}
    assert kinds == {"open", "members", "partners", "provider"}
    assert any(a.embargo_days is not None and a.embargo_opens_to == "public" for a in agreements)
    assert any(a.embargo_days is not None and a.embargo_opens_to == "members" for a in agreements)
    assert any(a.reduced_resolution_m for a in agreements)
    assert any(a.terms for a in agreements)
    assert len({m["country"] for m in doc["members"]}) >= 5


def test_demo_users_see_different_things(tmp_path: Path) -> None:
    build_demo(tmp_path, progress=False, scale="small")
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        apply_demo_agreements(tmp_path, catalog)
        apply_demo_agreements(tmp_path, catalog)  # idempotent
        store = AccessStore(tmp_path / "access.db")
        policy = AgreementPolicy(store)

        def seen(username: str | None) -> set[str]:
            if username is None:
                from eoshare.access.base import ANONYMOUS

                p = ANONYMOUS
            else:
                user = store.verify_password(username, DEMO_PASSWORD)
                p = principal_for(user, policy.member(user.member))
            page = catalog.search(SearchQuery(limit=1000, visible=policy.visible_filter(p)))
            return {f"{i['collection']}/{i['id']}" for i in page.items}

        everything = {f"{i['collection']}/{i['id']}" for i in catalog.iter_items()}
        views = {u: seen(u) for u in (None, "guest", "dilnoza", "binh", "amina", "rahim", "ops")}
        assert views["ops"] == everything
        assert views[None] == views["guest"] < views["dilnoza"] < everything

        # the embargoes split their collections: some scenes open, some not yet
        def part(view: set[str], cid: str) -> set[str]:
            return {x for x in view if x.startswith(cid + "/")}

        lotus, monsoon = part(everything, "lotus-oli-l2"), part(everything, "monsoon-sar-grd")
        assert set() < part(views[None], "lotus-oli-l2") < lotus  # opens to the public
        assert part(views[None], "monsoon-sar-grd") == set()  # opens to members only
        assert set() < part(views["dilnoza"], "monsoon-sar-grd") < monsoon
        assert views["rahim"] == everything  # the radar provider sees all its scenes
        assert len({frozenset(v) for v in views.values()}) == 3
        # members who see the same scenes still get different things from them
        scene = next(i for i in catalog.iter_items("kestrel-msi-l2a"))

        def download(username: str) -> str:
            user = store.get_user(username)
            p = principal_for(user, policy.member(user.member))
            return policy.decide(p, scene, "visual", Action.DOWNLOAD).kind

        def tile(username: str) -> str:
            user = store.get_user(username)
            p = principal_for(user, policy.member(user.member))
            return policy.decide(p, scene, "visual", Action.TILE).kind

        assert (download("amina"), tile("amina")) == ("full", "full")  # the provider
        assert (download("binh"), tile("binh")) == ("denied", "full")  # partner: terms first
        store.accept_terms("binh", "kestrel-msi-l2a")
        assert download("binh") == "full"
        assert (download("dilnoza"), tile("dilnoza")) == ("denied", "reduced")
        store.close()
    finally:
        catalog.close()
