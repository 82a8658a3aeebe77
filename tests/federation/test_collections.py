"""/collections and collection/item pages on a hub: the peers' collections are listed
as ``<peer>.<id>`` with where they come from, and their pages are answered through the
peer on behalf of the caller, never showing more than the origin shows that caller."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from federation.conftest import Federation

JSON = dict[str, Any]


def _collections(url: str, headers: dict[str, str] | None = None) -> JSON:
    r = httpx.get(url + "/collections", headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    doc: JSON = r.json()
    return doc


@pytest.mark.parametrize("user", [None, "vn_user", "bd_user", "ke_user"])
def test_hub_lists_what_each_origin_shows_the_caller(
    federation: Federation, user: str | None
) -> None:
    alpha = federation.alpha
    doc = _collections(alpha.url, alpha.headers(user))
    assert doc["federation:missing"] == []
    ids = {c["id"] for c in doc["collections"]}
    assert "a-open" in ids
    for peer in (federation.beta, federation.gamma):
        # (beta and gamma list alpha's collections too, as hubs with alpha as their peer;
        # to alpha's signed requests they answer with their own only)
        direct = {
            c["id"]
            for c in _collections(peer.url, peer.headers(user))["collections"]
            if not c["id"].startswith("alpha.")
        }
        # alpha's registry narrows gamma to what it showed alpha (g-open) only for searches
        at_hub = {i.split(".", 1)[1] for i in ids if i.startswith(peer.name + ".")}
        if peer is federation.beta and user in (None, "vn_user"):
            # beta believes alpha only for vn-vnsc users (others are the public there)
            assert at_hub == direct, (user, at_hub, direct)
        assert at_hub <= direct | {c["id"] for c in _collections(peer.url)["collections"]}, (
            user,
            at_hub,
            direct,
        )
    assert doc["numberMatched"] == len(doc["collections"]) == doc["numberReturned"]


def test_peer_collection_carries_its_origin(federation: Federation) -> None:
    alpha, beta = federation.alpha, federation.beta
    listed = {c["id"]: c for c in _collections(alpha.url)["collections"]}
    coll = listed["beta.b-open"]
    assert coll["federation:origin"] == "beta"
    assert coll["federation:origin_collection"] == "b-open"
    assert coll["federation:agreement"]["access"] == "open"
    rels = {x["rel"]: x["href"] for x in coll["links"]}
    assert rels["self"] == f"{alpha.url}/collections/beta.b-open"
    assert rels["canonical"].startswith(beta.url)
    assert "beta.b-members" not in listed  # hidden from the public at beta
    one = httpx.get(rels["self"])
    assert one.status_code == 200, one.text
    assert one.json()["id"] == "beta.b-open"
    hidden = httpx.get(f"{alpha.url}/collections/beta.b-members")
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")
    vn = alpha.headers("vn_user")
    assert httpx.get(f"{alpha.url}/collections/beta.b-partners", headers=vn).status_code == 200


def test_peer_items_pages_through_the_hub(federation: Federation) -> None:
    alpha, beta = federation.alpha, federation.beta
    url = f"{alpha.url}/collections/beta.b-open/items"
    seen: list[str] = []
    next_url: str | None = url + "?limit=7"
    pages = 0
    while next_url is not None:
        r = httpx.get(next_url, timeout=30)
        assert r.status_code == 200, r.text
        doc = r.json()
        pages += 1
        for f in doc["features"]:
            assert f["properties"]["federation:origin"] == "beta"
            links = {x["rel"]: x["href"] for x in f["links"]}
            assert links["collection"] == f"{alpha.url}/collections/beta.b-open"
            assert links["canonical"].startswith(beta.url)
        seen += [f["id"] for f in doc["features"]]
        next_url = next((x["href"] for x in doc["links"] if x["rel"] == "next"), None)
        if next_url is not None:
            assert next_url.startswith(url + "?")
    assert pages > 1
    assert sorted(seen) == sorted(beta.items["b-open"])  # all, once
    one = httpx.get(f"{url}/b-open-3")
    assert one.status_code == 200 and one.json()["id"] == "b-open-3"
    # an item the public cannot get at beta is not there for the public at the hub
    assert httpx.get(f"{alpha.url}/collections/beta.b-partners/items/b-partners-0").status_code == (
        404
    )
    vn = alpha.headers("vn_user")
    r = httpx.get(f"{alpha.url}/collections/beta.b-partners/items/b-partners-0", headers=vn)
    assert r.status_code == 200, r.text


def test_search_by_a_peer_collection_id(federation: Federation) -> None:
    r = httpx.get(
        federation.alpha.url + "/search", params={"collections": "beta.b-open", "limit": 50}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert {f["id"] for f in doc["features"]} == set(federation.beta.items["b-open"])
    assert doc["federation:peers"]["gamma"]["status"] == "skipped"
