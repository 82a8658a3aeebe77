"""Every route that shows items x every kind of caller x every kind of agreement.

The expected answers come from ``oracle.py`` (the rules written out plainly), never from
the policy under test. Besides the item sets, the tests look for leaks: ``numberMatched``,
paging links, ids in error messages, 403-versus-404, collection lists, extents and
summaries.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from . import oracle
from .conftest import (
    ADMIN_TOKEN,
    AGES,
    AGREEMENTS,
    DATA_BYTES,
    PROVIDER,
    THUMB_BYTES,
    Caller,
    Node,
)

JSON = dict[str, Any]
CALLERS = [
    "anonymous",
    "owner",
    "owner_admin",
    "partner",
    "partner_oidc",
    "other",
    "other_admin",
    "public_user",
    "operator",
    "expired",
    "revoked",
    "forged",
    "forged_jwt",
]
GOOD = [c for c in CALLERS if c not in ("expired", "revoked", "forged", "forged_jwt")]
BAD = [c for c in CALLERS if c not in GOOD]


def age_of(item_id: str) -> float:
    return AGES[int(item_id.rsplit("-", 1)[1])]


def sees(c: Caller, cid: str, item_id: str) -> bool:
    return oracle.visible(
        member=c.member,
        operator=c.operator,
        provider=PROVIDER,
        a=AGREEMENTS[cid],
        age_days=age_of(item_id),
    )


def expected(node: Node, c: Caller, cid: str | None = None) -> set[tuple[str, str]]:
    return {key for key in node.items if (cid is None or key[0] == cid) and sees(c, key[0], key[1])}


def view(c: Caller, cid: str) -> str:
    return oracle.collection_view(
        member=c.member, operator=c.operator, provider=PROVIDER, a=AGREEMENTS[cid]
    )


def keys(fc: JSON) -> set[tuple[str, str]]:
    return {(f["collection"], f["id"]) for f in fc["features"]}


def walk(http: httpx.Client, c: Caller, first: httpx.Response) -> tuple[set[Any], int]:
    """Follow next links to the end; every page's numberMatched must agree."""
    got: set[tuple[str, str]] = set()
    pages = 0
    r = first
    matched = None
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        page = keys(body)
        assert not page & got, "a page repeated items"
        got |= page
        if matched is None:
            matched = body.get("numberMatched")
        assert body.get("numberMatched") == matched
        nxt = [x for x in body["links"] if x["rel"] == "next"]
        if not nxt:
            break
        assert page, "an empty page still links to a next one"
        link = nxt[0]
        if link.get("method") == "POST":
            r = http.post(link["href"], json=link["body"], headers=c.headers)
        else:
            r = http.get(link["href"], headers=c.headers)
        assert pages < 100
    assert matched == len(got)
    return got, pages


@pytest.mark.parametrize("name", GOOD)
def test_search_get_post_and_paging(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    want = expected(node, c)
    cids = ",".join(AGREEMENTS)
    got, _ = walk(http, c, http.get(f"/search?collections={cids}&limit=7", headers=c.headers))
    assert got == want
    got, _ = walk(
        http,
        c,
        http.post("/search", json={"collections": list(AGREEMENTS), "limit": 5}, headers=c.headers),
    )
    assert got == want
    # one item per page: exactly as many pages as visible items, no hint beyond them
    got, pages = walk(http, c, http.get(f"/search?collections={cids}&limit=1", headers=c.headers))
    assert got == want
    assert pages == max(len(want), 1)


@pytest.mark.parametrize("name", GOOD)
def test_search_by_ids_and_filters(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    all_ids = [iid for _, iid in node.items]
    r = http.post("/search", json={"ids": all_ids, "limit": 100}, headers=c.headers)
    assert r.status_code == 200
    assert keys(r.json()) == expected(node, c)
    assert r.json()["numberMatched"] == len(expected(node, c))
    # naming a hidden collection answers like naming one that does not exist
    for cid in AGREEMENTS:
        r = http.get(f"/search?collections={cid}&limit=100", headers=c.headers)
        absent = http.get("/search?collections=no-such-collection&limit=100", headers=c.headers)
        assert r.status_code == absent.status_code == 200
        if not expected(node, c, cid):
            assert r.json()["features"] == [] and r.json().get("numberMatched") in (0, None)
    # a filter naming a hidden collection finds nothing, and says nothing about it
    for cid in AGREEMENTS:
        r = http.get(
            "/search",
            params={"filter": f"collection = '{cid}'", "filter-lang": "cql2-text", "limit": 100},
            headers=c.headers,
        )
        assert r.status_code == 200
        assert keys(r.json()) == expected(node, c, cid)


@pytest.mark.parametrize("name", GOOD)
def test_collection_items_and_single_items(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    for cid in AGREEMENTS:
        r = http.get(f"/collections/{cid}/items?limit=100", headers=c.headers)
        if view(c, cid) == "hidden":
            assert r.status_code == 404
            absent = http.get("/collections/no-such-collection/items", headers=c.headers)
            assert r.json()["detail"] == absent.json()["detail"].replace("no-such-collection", cid)
        else:
            assert r.status_code == 200, r.text
            assert keys(r.json()) == expected(node, c, cid)
            assert r.json()["numberMatched"] == len(expected(node, c, cid))
        for key in [k for k in node.items if k[0] == cid]:
            iid = key[1]
            r = http.get(f"/collections/{cid}/items/{iid}", headers=c.headers)
            if sees(c, cid, iid):
                assert r.status_code == 200
                assert r.json()["id"] == iid
            else:
                # exactly the answer for an item that never existed
                assert r.status_code == 404
                absent = http.get(f"/collections/{cid}/items/never-was", headers=c.headers)
                assert absent.status_code == 404
                assert r.json() == {
                    k: (v.replace("never-was", iid) if isinstance(v, str) else v)
                    for k, v in absent.json().items()
                }


@pytest.mark.parametrize("name", GOOD)
def test_asset_decisions(node: Node, http: httpx.Client, name: str) -> None:
    """Each visible item's assets carry the caller's download decision."""
    c = node.callers[name]
    for cid, iid in sorted(expected(node, c)):
        item = http.get(f"/collections/{cid}/items/{iid}", headers=c.headers).json()
        want = oracle.download(
            user=c.user,
            member=c.member,
            operator=c.operator,
            provider=PROVIDER,
            a=AGREEMENTS[cid],
            age_days=age_of(iid),
            accepted=False,
        )
        data = item["assets"]["data"]["eoshare:access"]
        assert data["decision"] == want, (cid, iid)
        if want == "reduced":
            assert data["max_resolution_m"] == 100
            assert "agreement" in data["reason"]
        # thumbnails: anyone who sees the item, reduced where full rights are missing
        full = oracle.full_rights(
            member=c.member,
            operator=c.operator,
            provider=PROVIDER,
            a=AGREEMENTS[cid],
            age_days=age_of(iid),
        )
        thumb = item["assets"]["thumbnail"]["eoshare:access"]["decision"]
        assert thumb == ("full" if full else "reduced")


@pytest.mark.parametrize("name", GOOD)
def test_downloads_and_thumbnails(node: Node, http: httpx.Client, name: str) -> None:
    """/download answers exactly by the agreement: bytes, 403 naming it, or 404."""
    c = node.callers[name]
    for (cid, iid), _ in sorted(node.items.items()):
        n = iid.rsplit("-", 1)[1]
        data = http.get(f"/download/{cid}/{iid}/data", headers=c.headers)
        thumb = http.get(f"/download/{cid}/{iid}/thumbnail", headers=c.headers)
        if not sees(c, cid, iid):
            assert data.status_code == 404 and thumb.status_code == 404
            absent = http.get(f"/download/{cid}/never-was/data", headers=c.headers)
            assert data.json()["detail"] == absent.json()["detail"].replace("never-was", iid)
            continue
        assert thumb.status_code == 200 and thumb.content == THUMB_BYTES
        want = oracle.download(
            user=c.user,
            member=c.member,
            operator=c.operator,
            provider=PROVIDER,
            a=AGREEMENTS[cid],
            age_days=age_of(iid),
            accepted=False,
        )
        if want == "full":
            assert data.status_code == 200, (cid, iid, data.text)
            assert data.content == DATA_BYTES
        else:
            assert data.status_code == 403, (cid, iid, data.status_code)
            problem = data.json()
            assert problem["agreement"] == cid
            assert cid in problem["detail"]
            if want == "denied":  # the terms: say how to accept them
                assert "accept-terms" in problem["detail"]
            else:
                assert "100 m" in problem["detail"] and "obtain access" in problem["detail"]
        assert n


@pytest.mark.parametrize("name", GOOD)
def test_collections_listing_extents_summaries(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    listed = {x["id"]: x for x in http.get("/collections", headers=c.headers).json()["collections"]}
    landing = http.get("/", headers=c.headers).json()
    children = {x["href"].rsplit("/", 1)[1] for x in landing["links"] if x["rel"] == "child"}
    for cid, terms in AGREEMENTS.items():
        v = view(c, cid)
        one = http.get(f"/collections/{cid}", headers=c.headers)
        queryables = http.get(f"/collections/{cid}/queryables", headers=c.headers)
        if v == "hidden":
            assert cid not in listed
            assert cid not in children
            assert one.status_code == 404
            assert queryables.status_code == 404
            continue
        assert cid in listed and cid in children
        assert one.status_code == 200 and queryables.status_code == 200
        doc = one.json()
        agreement = doc["eoshare:agreement"]
        assert agreement["access"] == terms["access"]
        assert agreement["summary"]
        assert agreement["embargo_days"] == terms.get("embargo_days")
        assert agreement["reduced_resolution_m"] == terms.get("reduced_resolution_m")
        if v == "partial":
            # nothing computed from items the caller may not see
            assert "summaries" not in doc and "summaries" not in listed[cid]
            assert doc["extent"]["temporal"]["interval"] == [[None, None]]
            assert doc["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]
        else:
            assert doc.get("summaries") == listed[cid].get("summaries")
    # the count of collections matches what is listed (no hidden ones counted)
    body = http.get("/collections?limit=1000", headers=c.headers).json()
    assert body["numberMatched"] == len(body["collections"])


@pytest.mark.parametrize("name", BAD)
def test_bad_credentials_are_401_everywhere(node: Node, http: httpx.Client, name: str) -> None:
    c = node.callers[name]
    secret = c.headers["Authorization"].split(" ", 1)[1]
    paths = [
        "/",
        "/collections",
        "/collections/t-open",
        "/collections/t-open/items",
        "/collections/t-open/items/t-open-0",
        "/collections/t-open/queryables",
        "/search",
        "/usage",
        "/auth/me",
    ]
    for path in paths:
        r = http.get(path, headers=c.headers)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"] == "Bearer"
        assert secret not in r.text
        assert "t-open-0" not in r.json()["detail"]
    r = http.post("/search", json={}, headers=c.headers)
    assert r.status_code == 401
    log = (node.data_dir / "server.log").read_text()
    assert secret not in log


def test_reasons_for_401(node: Node, http: httpx.Client) -> None:
    def detail(name: str) -> str:
        r = http.get("/search", headers=node.callers[name].headers)
        assert r.status_code == 401
        return str(r.json()["detail"])

    assert "expired" in detail("expired")
    assert "revoked" in detail("revoked")
    assert "not valid" in detail("forged")
    assert "signature" in detail("forged_jwt")
    r = http.get("/search", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401


def test_admin_token_is_an_operator(node: Node, http: httpx.Client) -> None:
    r = http.get("/auth/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.json()["operator"] is True
    r = http.post(
        "/search",
        json={"collections": list(AGREEMENTS), "limit": 1000},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert len(r.json()["features"]) == len(node.items)
