"""The web UI on a hub: where each result comes from, which peers did not answer, and the
operators' peers page (``GET /admin/peers``, ``/ui/peers.html``).

Two real eoshare nodes in separate processes on 127.0.0.1, each with its own data and
members (built as in ``tests/federation``): **hub** (member ``vn-vnsc``, collection
``h-open``) and **live** (member ``ke-kspa``, ``l-open``, and ``l-files`` whose items
have files, for a mirror). The hub has two more peers:
**dead**, registered at a port where nothing listens, and **slow**, a socket that takes
connections and never answers (so the hub gives up on it at its deadline). Chromium is
Debian's, driven by Playwright (``tests/web/conftest.py``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from eoshare.access.store import AccessStore
from eoshare.catalog import open_catalog
from eoshare.federation.peers import Peer
from federation.conftest import Node, as_peer, build, serve
from live import free_port

from .conftest import SCREENSHOTS

OPERATOR = "fed-ops"
MEMBER = "vn_user"  # made by build(): an analyst of vn-vnsc, not an operator
HUB_ITEMS = 2
LIVE_ITEMS = 3
LIVE_FILES = 2  # items of live's l-files, each with a file
# live also holds the hub's scene h-open-0 under another id: shown once, from both nodes
TWIN = "l-twin"


@dataclass
class Hub:
    hub: Node
    live: Node
    operator_token: str
    dead_url: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("fed-ui")
    hub = Node("hub", "vn-vnsc", root / "hub")
    live = Node("live", "ke-kspa", root / "live")
    for node in (hub, live):
        node.data_dir.mkdir()
    build(hub, shared_data, {"h-open": ({"access": "open"}, HUB_ITEMS)})
    build(
        live,
        shared_data,
        {"l-open": ({"access": "open"}, LIVE_ITEMS), "l-files": ({"access": "open"}, LIVE_FILES)},
        with_bytes={"l-files"},  # files to mirror
    )
    catalog = open_catalog(f"sqlite:///{hub.data_dir / 'catalog.db'}")
    scene = catalog.get_item("h-open", "h-open-0")
    catalog.close()
    catalog = open_catalog(f"sqlite:///{live.data_dir / 'catalog.db'}")
    catalog.upsert_items([{**scene, "id": TWIN, "collection": "l-open", "links": []}])
    catalog.close()
    store = AccessStore(hub.data_dir / "access.db")
    try:
        store.put_user(OPERATOR, member=None, roles=["operator"], password=None, who="test")
        _, operator_token = store.create_token(OPERATOR, days=1, who="test")
    finally:
        store.close()
    dead_key = hashlib.sha256(b"a peer that never answers").digest()
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    black_hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)  # connections are taken by the kernel, never answered
    slow_url = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
    with black_hole, contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        # the two nodes start at once (each waits for its server to answer)
        nodes = [serve(live), serve(hub)]
        started = [pool.submit(node.__enter__) for node in nodes]
        for node in nodes:
            # stopped after the pool has waited for both starts, whatever happened
            stack.push(node.__exit__)
        for future in started:
            future.result()
        live.registry.add(as_peer(hub, {"*"}))
        hub.registry.add(as_peer(live))
        hub.registry.add(
            Peer(
                name="dead",
                url=dead_url,
                kind="eoshare",
                fingerprint="SHA256:" + base64.b64encode(dead_key).decode().rstrip("="),
                public_key=base64.b64encode(dead_key).decode(),
                member="bd-sparrso",
            )
        )
        hub.registry.add(Peer(name="slow", url=slow_url, kind="stac"))
        yield Hub(hub, live, operator_token, dead_url)
    for node in (hub, live):
        log = (node.data_dir / "server.log").read_text()
        assert "Traceback" not in log, f"{node.name}:\n{log}"


@contextlib.contextmanager
def page_as(browser: Any, token: str | None, errors: list[str]) -> Iterator[Any]:
    """A page whose every request carries the caller's token (none: the public)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, extra_http_headers=headers
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if "Content Security Policy" in msg.text or "eoshare:" in msg.text
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()


def test_search_results_name_their_node_and_the_missing_peers(hub: Hub, browser: Any) -> None:
    # the API first: the dead peer is named in the body and in the header
    r = httpx.post(hub.hub.url + "/search", json={"limit": 20}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["federation:missing"] == ["dead", "slow"]
    assert r.headers["Eoshare-Federation-Missing"] == "dead, slow"
    report = body["federation:peers"]
    assert report["live"]["status"] == "ok"
    assert report["dead"]["status"] == "error" and report["slow"]["status"] == "timeout"
    assert len(body["features"]) == HUB_ITEMS + LIVE_ITEMS + LIVE_FILES
    twin = next(f for f in body["features"] if f["id"] == "h-open-0")
    assert [s["node"] for s in twin["properties"]["federation:sources"]] == ["hub", "live"]

    errors: list[str] = []
    with page_as(browser, None, errors) as page:
        page.goto(hub.hub.url + "/ui/?lang=en")
        page.wait_for_selector("body[data-ready]", state="attached")
        results = page.locator("#results li.result")
        assert results.count() == HUB_ITEMS + LIVE_ITEMS + LIVE_FILES
        origins = {}
        for i in range(results.count()):
            badges = results.nth(i).locator(".origin-badge")
            origins[results.nth(i).get_attribute("data-item")] = [
                badges.nth(j).get_attribute("data-origin") for j in range(badges.count())
            ]
        assert origins == {
            "h-open-0": ["hub", "live"],  # the same scene at both nodes
            "h-open-1": ["hub"],
            **{f"l-open-{n}": ["live"] for n in range(LIVE_ITEMS)},
            **{f"l-files-{n}": ["live"] for n in range(LIVE_FILES)},
        }
        # a peer's badge names its member; this node's own results say so
        live_badge = page.locator("#results .origin-badge[data-origin=live]").first
        assert "ke-kspa" in live_badge.inner_text()
        assert live_badge.get_attribute("title") == "From node live, member ke-kspa"
        here = page.locator("#results .origin-badge[data-origin=hub]").first
        assert here.get_attribute("title") == "From this node (hub)"
        notice = page.locator("#federation-notice")
        assert notice.is_visible()
        assert notice.locator("li[data-peer=dead]").inner_text() == "dead: cannot be reached"
        assert notice.locator("li[data-peer=slow]").inner_text() == "slow: did not answer in time"
        assert notice.locator("li").count() == 2
        page.locator(".results").screenshot(path=str(SCREENSHOTS / "federation-results-en.png"))
        # in Arabic, right to left
        page.select_option("#language", "ar")
        page.wait_for_selector("html[dir=rtl][lang=ar]", state="attached")
        assert notice.locator("li[data-peer=dead]").inner_text() == "dead: تعذّر الوصول إليها"
        page.screenshot(path=str(SCREENSHOTS / "federation-results-ar.png"))
        page.select_option("#language", "en")
        # a peer's scene opens through the hub, with its origin
        page.locator("#results li.result[data-item=l-open-0] a").click()
        page.wait_for_selector("#item h1")
        assert page.url.split("#", 1)[1].startswith("/peer/live/l-open/")
        page.locator("#item .origin-badge[data-origin=live]").wait_for()
        # the collections: the peer's are listed as <peer>.<id>, named by their node
        page.goto(hub.hub.url + "/ui/?lang=en#/collections")
        page.wait_for_selector("body[data-ready]", state="attached")
        card = page.locator('#collections li[data-collection="live.l-open"]')
        assert card.locator(".origin-badge").get_attribute("data-origin") == "live"
        assert "ke-kspa" in card.locator(".origin-badge").inner_text()
        assert "Open to everyone" in card.inner_text()  # the origin's agreement, in words
        own = page.locator('#collections li[data-collection="h-open"] .origin-badge')
        assert own.get_attribute("data-origin") == "hub"
    assert errors == [], errors


def _ui_strings(lang: str) -> dict[str, str]:
    from eoshare import web

    data: dict[str, str] = json.loads((web.STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


def test_collections_name_the_missing_peers(hub: Hub, browser: Any) -> None:
    """A hub's /collections names the peers whose collections are missing; the collections
    view says so, as the search view does, in the six languages (Arabic right to left)."""
    r = httpx.get(hub.hub.url + "/collections", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["federation:missing"] == ["dead", "slow"]
    assert r.headers["Eoshare-Federation-Missing"] == "dead, slow"
    errors: list[str] = []
    with page_as(browser, None, errors) as page:
        page.goto(hub.hub.url + "/ui/?lang=en#/collections")
        page.wait_for_selector("body[data-ready]", state="attached")
        page.locator('#collections li[data-collection="live.l-open"]').wait_for()
        notice = page.locator("#collections-notice")
        notice.locator("li[data-peer=slow]").wait_for()
        assert notice.is_visible()
        assert notice.locator("li").count() == 2
        for lang in ("en", "ar", "zh", "ru", "fr", "es"):
            strings = _ui_strings(lang)
            if lang != "en":
                page.select_option("#language", lang)
                direction = "rtl" if lang == "ar" else "ltr"
                page.wait_for_selector(f"html[dir={direction}][lang={lang}]", state="attached")
            notice.locator("p", has_text=strings["fed.collectionsMissingTitle"]).wait_for()
            dead = strings["fed.missingUnreachable"].replace("{node}", "dead")
            slow = strings["fed.missingSlow"].replace("{node}", "slow")
            assert notice.locator("li[data-peer=dead]").inner_text() == dead
            assert notice.locator("li[data-peer=slow]").inner_text() == slow
            if lang == "ar":
                page.screenshot(path=str(SCREENSHOTS / "federation-collections-ar.png"))
    assert errors == [], errors


def test_admin_peers_reports_health_for_operators_only(hub: Hub) -> None:
    url = hub.hub.url + "/admin/peers"
    r = httpx.get(url, headers=bearer(hub.operator_token), timeout=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["node"]["name"] == "hub" and doc["node"]["member"] == "vn-vnsc"
    peers = {p["name"]: p for p in doc["peers"]}
    assert set(peers) == {"dead", "live", "slow"}
    live, dead, slow = peers["live"], peers["dead"], peers["slow"]
    assert live["url"] == hub.live.url and live["member"] == "ke-kspa"
    assert live["fingerprint"] == hub.live.fingerprint
    assert live["trusted_members"] == []
    assert live["health"]["reachable"] is True and live["health"]["status"] == "ok"
    assert live["health"]["latency_ms"] > 0
    assert abs(live["health"]["clock_skew_s"]) <= 0.5  # the same machine's clock
    assert live["health"]["last_error"] is None
    assert dead["health"]["reachable"] is False and dead["health"]["status"] == "unreachable"
    assert "cannot be reached" in dead["health"]["last_error"]
    assert hub.dead_url in dead["health"]["last_error"]
    assert dead["health"]["latency_ms"] is None
    assert slow["health"]["reachable"] is False and slow["kind"] == "stac"
    assert "did not answer in time" in slow["health"]["last_error"]
    assert live["harvest"]["finished"] is None  # never harvested yet
    assert live["harvest"]["due"] is False and live["harvest_every_s"] is None
    # the member of a member agency is refused, the public is asked to sign in
    refused = httpx.get(url, headers=hub.hub.headers(MEMBER), timeout=30)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(url, timeout=30).status_code == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_peers_page_for_an_operator(hub: Hub, browser: Any) -> None:
    from eoshare.catalog import open_catalog
    from eoshare.federation.harvest import Harvester
    from eoshare.federation.identity import load_or_create_identity

    # a real harvest of the live peer, as `eoshare harvest` runs it: the page shows its lag
    hub_dir = hub.hub.data_dir
    catalog = open_catalog(f"sqlite:///{hub_dir / 'catalog.db'}")
    try:
        identity = load_or_create_identity(hub_dir / "node-key.pem", name="hub", member="vn-vnsc")
        registry = hub.hub.registry
        report = Harvester(catalog, registry, identity).harvest(registry.get("live"))
    finally:
        catalog.close()
    assert report.written == LIVE_ITEMS + 1 + LIVE_FILES and not report.errors
    registry.update("live", harvest_every_s=3600)  # as `eoshare peers set --harvest-every 1h`

    errors: list[str] = []
    with page_as(browser, hub.operator_token, errors) as page:
        page.goto(hub.hub.url + "/ui/peers.html?lang=en")
        page.wait_for_selector("body[data-ready]", state="attached")
        live = page.locator(".peer-card[data-peer=live]")
        dead = page.locator(".peer-card[data-peer=dead]")
        assert live.get_attribute("data-reachable") == "true"
        assert dead.get_attribute("data-reachable") == "false"
        assert live.locator(".peer-state").first.inner_text() == "Reachable"
        assert dead.locator(".peer-state").first.inner_text() == "Unreachable"
        assert live.locator(".peer-latency").inner_text().endswith(" ms")
        assert live.locator(".peer-error").inner_text() == "none"
        assert "cannot be reached" in dead.locator(".peer-error").inner_text()
        slow = page.locator(".peer-card[data-peer=slow]")
        assert slow.get_attribute("data-reachable") == "false"
        assert "did not answer in time" in slow.locator(".peer-error").inner_text()
        assert slow.locator(".peer-identity").inner_text().count("STAC API") == 1
        assert hub.live.fingerprint in live.inner_text()
        assert "ke-kspa" in live.inner_text() and "bd-sparrso" in dead.inner_text()
        assert "no member" in live.inner_text()  # its trust setting: nobody's word believed
        harvest = live.locator(".peer-harvest")
        assert "never" not in harvest.locator(".peer-last-harvest").inner_text()
        assert harvest.locator(".peer-items").inner_text() == str(LIVE_ITEMS + 1 + LIVE_FILES)
        assert harvest.locator(".peer-schedule").inner_text() == "every 1 hour"
        assert dead.locator(".peer-schedule").inner_text() == "by hand only (eoshare harvest)"
        # no mirror yet: said so
        assert page.locator(".mirrors-none").inner_text() == "No mirrors configured."
        # a real mirror of the live peer's files, run as `eoshare mirror run --now` runs it
        report = run_mirror(hub)
        assert report.files_done == report.files_total == LIVE_FILES and not report.errors
        page.click("#peers-refresh")
        row = page.locator("#peers-mirrors tr[data-mirror=m-live]")
        row.wait_for()
        assert row.locator(".mirror-state").inner_text() == "up to date"
        bar = row.locator("progress")
        assert bar.get_attribute("value") == bar.get_attribute("max") == str(report.bytes_total)
        assert f"{LIVE_FILES} of {LIVE_FILES} files" in row.inner_text()
        assert "l-files" in row.inner_text() and "live" in row.inner_text()
        assert page.locator(".mirrors-none").count() == 0
        page.screenshot(path=str(SCREENSHOTS / "federation-peers-en.png"), full_page=True)
        # a node without the mirror service answers 404: "no mirrors configured" too
        page.route("**/admin/mirrors", lambda route: route.fulfill(status=404, json={}))
        page.click("#peers-refresh")
        page.locator(".mirrors-none").wait_for()
        assert page.locator("#peers-mirrors tr").count() == 0
        page.unroute("**/admin/mirrors")
        page.click("#peers-refresh")
        row.wait_for()
        page.select_option("#peers-language", "ar")
        page.wait_for_selector("html[dir=rtl][lang=ar]", state="attached")
        page.locator("h1", has_text="العقد النظيرة").wait_for()
        assert live.locator(".peer-state").first.inner_text() == "يمكن الوصول إليها"
        page.screenshot(path=str(SCREENSHOTS / "federation-peers-ar.png"), full_page=True)
        # the main page's navigation links to it for operators, and so does the dashboard
        page.goto(hub.hub.url + "/ui/?lang=en")
        page.locator("#nav-peers").wait_for(state="visible")
        assert page.locator("#nav-peers").get_attribute("href") == "peers.html"
        page.goto(hub.hub.url + "/ui/dashboard.html?lang=en")
        link = page.locator("#dash-peers")
        link.wait_for(state="visible")
        assert link.get_attribute("href") == "peers.html"
        assert link.inner_text() == "Peers"
    assert errors == [], errors


def run_mirror(hub: Hub) -> Any:
    """Mirror the live peer's l-files on the hub, now, in this process."""
    from eoshare.access.store import AccessStore
    from eoshare.federation.identity import load_or_create_identity
    from eoshare.federation.mirror import Mirror, Mirrorer, open_mirrors
    from eoshare.settings import Settings
    from eoshare.storage import open_store

    settings = Settings(data_dir=hub.hub.data_dir)
    book = open_mirrors(settings)
    catalog = open_catalog(settings.catalog_url)
    access = AccessStore(settings.access_db_path)
    try:
        book.add(Mirror(id="m-live", peer="live", collections=("l-files",)))
        identity = load_or_create_identity(
            settings.node_key_path, name="hub", member=hub.hub.member
        )
        store = open_store(settings.storage_url)
        runner = Mirrorer(book, hub.hub.registry, identity, catalog, store, access)
        return runner.run("m-live", now=True)
    finally:
        catalog.close()
        access.close()
        book.close()


def test_peers_page_refuses_members_and_the_public(hub: Hub, browser: Any) -> None:
    errors: list[str] = []
    with page_as(browser, hub.hub.tokens[MEMBER], errors) as page:
        page.goto(hub.hub.url + "/ui/peers.html?lang=en")
        page.wait_for_selector("body[data-ready]", state="attached")
        message = page.locator(".peers-error")
        assert message.get_attribute("data-status") == "403"
        assert "operator" in message.inner_text()
        assert page.locator(".peer-card").count() == 0
        page.goto(hub.hub.url + "/ui/?lang=en")
        page.wait_for_selector("body[data-ready]", state="attached")
        assert page.locator("#nav-peers").is_hidden()  # not offered to a member
    with page_as(browser, None, errors) as page:
        page.goto(hub.hub.url + "/ui/peers.html?lang=fr")
        page.wait_for_selector("body[data-ready]", state="attached")
        message = page.locator(".peers-error")
        assert message.get_attribute("data-status") == "401"
        assert message.locator("a").inner_text() == "Se connecter"
    assert errors == [], errors
