"""Fan-out search on a hub over two real peers: merging, paging, de-duplication, and the
access matrix across nodes (the hub never shows a peer's item that the caller could not
get from that peer directly)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from federation.conftest import DATA, Federation, Node, run_cli

JSON = dict[str, Any]


def pages(url: str, params: dict[str, Any], headers: dict[str, str]) -> list[JSON]:
    """Every page of a GET /search, following next links."""
    out = []
    next_url: str | None = url + "/search"
    with httpx.Client(timeout=30, headers=headers) as client:
        r = client.get(next_url, params=params)
        while True:
            assert r.status_code == 200, r.text
            doc = r.json()
            out.append(doc)
            next_url = next((x["href"] for x in doc["links"] if x["rel"] == "next"), None)
            if next_url is None or len(out) > 100:
                return out
            r = client.get(next_url)


def origin(item: JSON) -> str:
    return str(item["properties"].get("federation:origin", "alpha"))


def keys(items: list[JSON]) -> set[tuple[str, str]]:
    return {(origin(i), i["id"]) for i in items}


def direct(node: Node, user: str | None) -> set[str]:
    """The ids a caller gets from a node directly (all pages)."""
    docs = pages(node.url, {"limit": 100}, node.headers(user))
    return {i["id"] for d in docs for i in d["features"]}


def test_well_known_identity(federation: Federation) -> None:
    doc = httpx.get(federation.beta.url + "/.well-known/eoshare-node").json()
    assert doc["name"] == "beta" and doc["member"] == "ke-kspa"
    assert doc["fingerprint"].startswith("SHA256:")
    # the key is made once and kept: the same fingerprint after a second read
    again = httpx.get(federation.beta.url + "/.well-known/eoshare-node").json()
    assert again["fingerprint"] == doc["fingerprint"]


def test_peers_add_checks_the_fingerprint(federation: Federation, tmp_path: Any) -> None:
    gamma = federation.gamma
    missing = run_cli("peers", "add", gamma.url, "--data-dir", str(tmp_path))
    assert missing.returncode == 1
    assert gamma.fingerprint in missing.stderr and "--fingerprint" in missing.stderr
    wrong = run_cli(
        "peers", "add", gamma.url, "--fingerprint", federation.beta.fingerprint,
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert wrong.returncode == 1 and "not added" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    listed = run_cli("peers", "list", "--data-dir", str(tmp_path))
    assert listed.stdout.strip() == "no peers"


@pytest.mark.parametrize("user", [None, "vn_user", "bd_user", "ke_user"])
def test_hub_never_shows_more_than_the_origin(federation: Federation, user: str | None) -> None:
    alpha, beta, gamma = federation.alpha, federation.beta, federation.gamma
    docs = pages(alpha.url, {"limit": 7}, alpha.headers(user))
    items = [i for d in docs for i in d["features"]]
    shown = keys(items)
    assert len(shown) == len(items), "an item was shown twice"
    for doc in docs:
        assert doc["federation:missing"] == [], doc["federation:peers"]
    for node in (beta, gamma):
        from_peer = {iid for o, iid in shown if o == node.name}
        # every peer item shown is one the caller gets from the peer directly
        assert from_peer <= direct(node, user), node.name
    by_origin = {o for o, _ in shown}
    assert by_origin == {"alpha", "beta", "gamma"}, (by_origin, docs[0]["federation:peers"])
    beta_ids = {iid for o, iid in shown if o == "beta"}
    # beta believes alpha only about vn-vnsc users: partners/members open to them alone
    assert any(i.startswith("b-partners") for i in beta_ids) == (user == "vn_user")
    assert any(i.startswith("b-members") for i in beta_ids) == (user == "vn_user")
    assert not any(i.startswith("b-provider") for i in beta_ids)
    # gamma believes alpha about every member: its members-only items for member users
    gamma_ids = {iid for o, iid in shown if o == "gamma"}
    assert any(i.startswith("g-members") for i in gamma_ids) == (user is not None)


def test_merged_pages_are_sorted_and_complete(federation: Federation) -> None:
    alpha = federation.alpha
    docs = pages(alpha.url, {"limit": 5}, {})
    items = [i for d in docs for i in d["features"]]
    times = [i["properties"]["datetime"] for i in items]
    assert times == sorted(times, reverse=True)
    expected = (
        {("alpha", i) for i in alpha.items["a-open"]}
        | {("beta", i) for i in federation.beta.items["b-open"]}
        | {("gamma", i) for i in federation.gamma.items["g-open"] if i != "g-dup"}
    )
    assert keys(items) == expected, (
        keys(items) ^ expected,
        [d["federation:peers"] for d in docs if d["federation:missing"]],
    )
    assert all(d["numberReturned"] == len(d["features"]) for d in docs)


def test_same_scene_from_two_providers_is_shown_once(federation: Federation) -> None:
    alpha = federation.alpha
    doc = pages(alpha.url, {"ids": "b-open-0,g-dup", "limit": 10}, {})[0]
    assert doc["numberReturned"] == 1
    sources = doc["features"][0]["properties"]["federation:sources"]
    assert {(s["node"], s["id"]) for s in sources} == {("beta", "b-open-0"), ("gamma", "g-dup")}
    # a merged page cannot know the true count: it is left out rather than wrong
    assert "numberMatched" not in doc


def test_number_matched_is_the_sum(federation: Federation) -> None:
    doc = pages(federation.alpha.url, {"collections": "a-open,b-open", "limit": 4}, {})[0]
    assert doc["numberMatched"] == 33
    assert doc["federation:peers"]["gamma"]["status"] == "skipped"


def test_post_search_pages_with_one_token(federation: Federation) -> None:
    url = federation.alpha.url + "/search"
    body: JSON = {"collections": ["a-open", "b-open", "g-open"], "limit": 6}
    seen: list[str] = []
    with httpx.Client(timeout=30) as client:
        for _ in range(20):
            r = client.post(url, json=body)
            assert r.status_code == 200, r.text
            doc = r.json()
            seen += [f"{origin(i)}/{i['id']}" for i in doc["features"]]
            nxt = next((x for x in doc["links"] if x["rel"] == "next"), None)
            if nxt is None:
                break
            assert nxt["method"] == "POST"
            body = nxt["body"]
    assert len(seen) == len(set(seen)) == 3 + 30 + 3


def test_peer_item_links_go_to_the_origin(federation: Federation) -> None:
    doc = pages(federation.alpha.url, {"ids": "b-open-5", "limit": 1}, {})[0]
    item = doc["features"][0]
    assert item["properties"]["federation:origin"] == "beta"
    canonical = next(x["href"] for x in item["links"] if x["rel"] == "canonical")
    assert canonical.startswith(federation.beta.url)
    assert httpx.get(canonical).status_code == 200


def test_peer_item_page_through_the_hub(federation: Federation) -> None:
    alpha = federation.alpha
    vn = alpha.headers("vn_user")
    doc = pages(alpha.url, {"ids": "b-partners-1", "limit": 1}, vn)[0]
    (item,) = doc["features"]
    self_url = next(x["href"] for x in item["links"] if x["rel"] == "self")
    assert self_url == (
        f"{alpha.url}/federation/peers/beta/collections/b-partners/items/b-partners-1"
    )
    r = httpx.get(self_url, headers=vn)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "b-partners-1"
    assert r.json()["properties"]["federation:origin"] == "beta"
    # beta hides it from the public, and so does the hub
    hidden = httpx.get(self_url)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(alpha.url + "/federation/peers/nope/collections/c/items/i").status_code == 404


def test_operators_see_peers_health(federation: Federation) -> None:
    alpha = federation.alpha
    listed = run_cli("peers", "list", "--json", "--data-dir", str(alpha.data_dir))
    assert listed.returncode == 0, listed.stderr
    beta = next(p for p in json.loads(listed.stdout) if p["name"] == "beta")
    assert beta["status"] == "ok" and beta["fingerprint"] == federation.beta.fingerprint
    # what beta shows alpha (asking as itself): its public collections only
    assert "b-open" in beta["collections"] and "b-provider" not in beta["collections"]
    doc = httpx.get(alpha.url + "/federation/peers").json()
    assert doc["node"] == "alpha"
    assert {p["name"] for p in doc["peers"]} >= {"beta", "gamma"}
    assert all("trusted_members" not in p for p in doc["peers"])


def test_downloads_of_peer_items_go_to_the_origin(federation: Federation) -> None:
    """The hub hands out the origin's signed link, made by the origin for the forwarded
    caller: it works without credentials, for that asset only."""
    alpha, beta = federation.alpha, federation.beta
    doc = pages(alpha.url, {"ids": "b-partners-0", "limit": 1}, alpha.headers("vn_user"))[0]
    href = doc["features"][0]["assets"]["data"]["href"]
    assert href.startswith(f"{beta.url}/download/b-partners/b-partners-0/data?")
    assert "sig=" in href
    r = httpx.get(href)
    assert r.status_code == 200, r.text
    assert r.content == DATA + b"b-partners-0"
    assert httpx.get(href.replace("b-partners-0", "b-partners-1")).status_code in (403, 404)
    # without the link, the public gets nothing there
    assert httpx.get(f"{beta.url}/download/b-partners/b-partners-0/data").status_code == 404
