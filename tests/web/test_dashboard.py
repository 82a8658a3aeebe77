"""The operators' dashboard: ``GET /admin/dashboard`` and ``/ui/dashboard.html``.

The test makes its own members in two countries (Nepal and Tanzania, which no other web
test uses), downloads byte ranges as their users, and expects the dashboard to show
exactly those grants: in its JSON, and on the map (the two countries shaded, the others
not) and the chart of the page in Chromium, in English and in Arabic (right to left).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from eoshare.access.agreements import Member

from .conftest import MEMBER_USER, SCREENSHOTS, Node

CAIRO_OPTICAL = ("kestrel-msi-l2a", "K1A_MSI_L2A_20240318T082527_CAIRO")
OPS_USER = "dash-ops"
OPS_PASSWORD = "dashboard-ops-password"
# (member, country, user): the users who download during the test
PEOPLE = [("np-dash", "NP", "dash-np"), ("tz-dash", "TZ", "dash-tz")]
# how many bytes each user takes, in ranges of the visual asset
RANGES = {"dash-np": [1000, 2000], "dash-tz": [7000]}


@dataclass
class Dash:
    tokens: dict[str, str]
    sent: dict[str, int]  # country -> bytes the node answered with


@pytest.fixture(scope="module")
def dash(web_node: Node) -> Dash:
    from eoshare.access.store import AccessStore

    store = AccessStore(web_node.data_dir / "access.db")
    tokens: dict[str, str] = {}
    try:
        store.put_user(OPS_USER, member=None, roles=["operator"], password=OPS_PASSWORD, who="t")
        tokens[OPS_USER] = store.create_token(OPS_USER, days=1, who="t")[1]
        for member, country, user in PEOPLE:
            store.put_member(Member(member, f"Agency {country}", country), who="t")
            store.put_user(user, member=member, roles=["analyst"], who="t")
            tokens[user] = store.create_token(user, days=1, who="t")[1]
        tokens[MEMBER_USER] = store.create_token(MEMBER_USER, days=1, who="t")[1]
    finally:
        store.close()
    url = f"{web_node.url}/download/{CAIRO_OPTICAL[0]}/{CAIRO_OPTICAL[1]}/visual"
    sent: dict[str, int] = {}
    for _, country, user in PEOPLE:
        for size in RANGES[user]:
            r = httpx.get(
                url,
                headers={
                    "Authorization": f"Bearer {tokens[user]}",
                    "Range": f"bytes=0-{size - 1}",
                },
                timeout=30,
            )
            assert r.status_code == 206, r.text
            assert len(r.content) == size
            sent[country] = sent.get(country, 0) + size
    return Dash(tokens, sent)


def _get(node: Node, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{node.url}/admin/dashboard", headers=headers, params=params, timeout=30)


def test_dashboard_sums_the_grants_by_country(web_node: Node, dash: Dash) -> None:
    r = _get(web_node, dash.tokens[OPS_USER])
    assert r.status_code == 200, r.text
    body = r.json()
    by_country = {row["key"]: row for row in body["usage"]["by_country"]}
    for _, country, user in PEOPLE:
        row = by_country[country]
        assert row["bytes"] == dash.sent[country] == sum(RANGES[user])
        assert row["grants"] == len(RANGES[user])
        assert row["scenes"] == 1
        assert row["users"] == 1
    days = body["usage"]["by_day"]
    assert days and days[-1]["bytes"] >= sum(dash.sent.values())
    assert body["usage"]["users"] >= 2
    top = {row["key"]: row for row in body["usage"]["top_collections"]}
    assert top[CAIRO_OPTICAL[0]]["bytes"] >= sum(dash.sent.values())
    assert body["health"]["status"] == "ok"
    assert set(body["health"]["checks"]) >= {"catalogue", "store", "access"}
    metrics = body["metrics"]
    assert metrics["requests"] > 0
    assert metrics["bytes_served"] >= sum(dash.sent.values())
    assert metrics["server_errors"] >= 0
    whats = [event["subject"] for event in body["events"]]
    assert "dash-tz" in whats  # the user made by this test is in the change history
    assert len(body["events"]) <= 50


def test_dashboard_is_for_operators_only(web_node: Node, dash: Dash) -> None:
    r = _get(web_node, dash.tokens[MEMBER_USER])
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _get(web_node, None).status_code == 401
    assert _get(web_node, dash.tokens[OPS_USER], days=0).status_code == 400


def test_dashboard_in_a_browser(web_node: Node, dash: Dash, browser: Any) -> None:
    """The page in Chromium, in English then Arabic: the countries that received data are
    shaded and the others are not, the chart has bars, no script errors."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    errors: list[str] = []
    try:
        r = context.request.post(
            web_node.url + "/auth/login",
            data={"username": OPS_USER, "password": OPS_PASSWORD},
            headers={"X-Requested-With": "eoshare-ui"},
        )
        assert r.ok, r.text()
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(web_node.url + "/ui/dashboard.html?lang=en")
        page.wait_for_selector("#dash-map path.dash-country-NP")
        for country in ("NP", "TZ"):
            shaded = page.locator(f"#dash-map path.dash-country-{country}")
            assert shaded.get_attribute("fill") not in (None, "", "none", "#f4f1e8")
            assert "dash-reached" in (shaded.get_attribute("class") or "")
        # a country nobody downloaded from keeps the base colour
        for country in ("BR", "FR"):
            plain = page.locator(f"#dash-map path.dash-country-{country}")
            assert "dash-reached" not in (plain.get_attribute("class") or "")
            assert plain.get_attribute("fill") == "#f4f1e8"
        assert page.locator("#dash-chart svg rect.dash-bar").count() >= 1
        assert page.locator("#dash-collections tbody tr").count() >= 1
        assert page.locator("#dash-health .dash-tile").count() >= 3
        assert page.locator("#dash-events li").count() >= 1
        assert page.locator("h1").inner_text() == "Operator dashboard"
        page.screenshot(path=str(SCREENSHOTS / "dashboard-en.png"), full_page=True)
        page.select_option("#dash-language", "ar")
        page.wait_for_selector("html[dir=rtl][lang=ar]", state="attached")
        page.locator("h1", has_text="لوحة المشغل").wait_for()
        page.wait_for_selector("#dash-map path.dash-country-TZ.dash-reached")
        assert page.locator("#dash-chart svg rect.dash-bar").count() >= 1
        page.screenshot(path=str(SCREENSHOTS / "dashboard-ar.png"), full_page=True)
        # the main page links to the dashboard for operators (hidden from others below)
        page.goto(web_node.url + "/ui/?lang=en")
        page.locator("#nav-dashboard").wait_for(state="visible")
        # the public is told the page is for operators
        other = browser.new_context()
        try:
            public_page = other.new_page()
            public_page.on("pageerror", lambda e: errors.append(str(e)))
            public_page.goto(web_node.url + "/ui/dashboard.html?lang=en")
            public_page.wait_for_selector(".dash-error")
            public_page.goto(web_node.url + "/ui/?lang=en")
            public_page.locator("#who", has_text="Public user").wait_for()
            assert public_page.locator("#nav-dashboard").is_hidden()
        finally:
            other.close()
    finally:
        context.close()
    assert errors == [], errors
