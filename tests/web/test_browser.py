"""The web UI in a real browser: Debian's Chromium, headless, against a live node.

Each test does what a person would: draws an area, picks dates, opens a scene, looks at
its preview tiles, switches language, tries a download, signs in, uses only the
keyboard, or uses a phone-sized screen. Screenshots go to ``.artifacts/screenshots/``.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import numpy as np
from PIL import Image

from eoshare.web import STATIC

from .conftest import MEMBER_PASSWORD, MEMBER_USER, SCREENSHOTS, Node

DHAKA_SAR = ("monsoon-sar-grd", "M1_SAR_GRD_20240802T115825_DHAKA")
CAIRO_OPTICAL = ("kestrel-msi-l2a", "K1A_MSI_L2A_20240318T082527_CAIRO")


def _strings(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


def _api_search(node: Node, body: dict[str, Any], token: str | None = None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{node.url}/search", json={**body, "limit": 100}, headers=headers)
    assert response.status_code == 200, response.text
    return sorted(f["id"] for f in response.json()["features"])


def _result_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#results li", "items => items.map(li => li.dataset.item)"
    )
    return sorted(ids)


def _item_hash(cid: str, iid: str) -> str:
    return f"/#/item/{cid}/{iid}"


def test_search_by_drawn_area_and_dates(open_page: Any, web_node: Node) -> None:
    page = open_page()
    page.wait_for_selector("#results li")
    # zoom the map in on Bangladesh with the map's own controls, then draw around Dhaka
    page.fill("#bbox", "88, 21, 93, 26.5")
    page.click("#use-view")  # keyboard-free sanity: the button fills the box from the map
    assert re.fullmatch(r"[-\d.]+(, [-\d.]+){3}", page.input_value("#bbox"))
    page.fill("#bbox", "")
    dhaka_dot = page.locator("path.footprint-monsoon-sar-grd_M1_SAR_GRD_20240802T115825_DHAKA.dot")
    box = dhaka_dot.bounding_box()
    assert box is not None, "the Dhaka scenes are not on the map"
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.click("#draw")
    assert page.get_attribute("#draw", "aria-pressed") == "true"
    assert page.is_visible("#map-hint")
    page.mouse.move(cx - 25, cy - 25)
    page.mouse.down()
    page.mouse.move(cx, cy, steps=4)
    page.mouse.move(cx + 25, cy + 25, steps=4)
    page.mouse.up()
    assert page.get_attribute("#draw", "aria-pressed") == "false"
    drawn = [float(v) for v in page.input_value("#bbox").split(",")]
    assert len(drawn) == 4
    assert drawn[0] < 90.41 < drawn[2] and drawn[1] < 23.81 < drawn[3], drawn

    page.fill("#date-from", "2024-03-01")
    page.fill("#date-to", "2024-12-31")
    with page.expect_response(lambda r: r.url.endswith("/search") and r.request.method == "POST"):
        page.click("#search-submit")
    page.wait_for_selector("#results li")

    expected = _api_search(
        web_node, {"bbox": drawn, "datetime": "2024-03-01T00:00:00Z/2024-12-31T23:59:59Z"}
    )
    assert expected, "the area and dates should match demo scenes"
    assert _result_ids(page) == expected
    # every result is over Dhaka and inside the dates; the February scene is left out
    assert all("DHAKA" in i for i in expected)
    assert "L3_OLI_L2_20240203T041025_DHAKA" not in expected
    # one footprint (outline + dot) per result on the map, and the thumbnails are real
    assert page.locator("path.footprint.dot").count() == len(expected)
    thumbs = page.locator("#results img.thumb")
    assert thumbs.count() == len(expected)
    for i in range(thumbs.count()):
        thumbs.nth(i).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    widths = page.eval_on_selector_all(
        "#results img.thumb", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)"
    )
    assert all(w > 0 for w in widths), widths


def test_open_item_and_preview_tiles_are_real_images(open_page: Any, web_node: Node) -> None:
    page = open_page()
    page.wait_for_selector("#results li")
    tiles: list[Any] = []
    page.on(
        "response",
        lambda r: tiles.append(r) if "/tiles/WebMercatorQuad/" in r.url else None,
    )
    page.fill("#text", "Cairo")
    page.select_option("#collection", CAIRO_OPTICAL[0])
    page.click("#search-submit")
    link = page.locator(f'#results li[data-item="{CAIRO_OPTICAL[1]}"] a')
    link.wait_for()
    assert page.locator("#results li").count() == len(
        _api_search(web_node, {"q": "Cairo", "collections": [CAIRO_OPTICAL[0]]})
    )
    link.click()
    page.wait_for_selector("#item h1")
    assert page.url.endswith(_item_hash(*CAIRO_OPTICAL))
    item = httpx.get(f"{web_node.url}/collections/{CAIRO_OPTICAL[0]}/items/{CAIRO_OPTICAL[1]}")
    doc = item.json()
    assert page.inner_text("#item h1") == doc["properties"]["title"]
    details = page.inner_text("#item .metadata")
    assert CAIRO_OPTICAL[1] in details and "EPSG:" in details

    # the preview layer fills in with tiles that the node rendered from the scene
    page.wait_for_selector(".preview-tiles img.leaflet-tile-loaded")
    page.wait_for_timeout(500)
    loaded = page.eval_on_selector_all(
        ".preview-tiles img.leaflet-tile-loaded",
        "imgs => imgs.map(i => [i.src, i.naturalWidth, i.naturalHeight])",
    )
    assert loaded and all(w == h and w >= 256 for _, w, h in loaded), loaded
    assert all("/tiles/collections/kestrel-msi-l2a/items/" in src for src, _, _ in loaded)
    ok = [r for r in tiles if r.status == 200]
    assert ok, [r.status for r in tiles]
    varied = 0
    for response in ok:
        assert response.headers["content-type"].startswith("image/")
        pixels = np.asarray(Image.open(io.BytesIO(response.body())).convert("RGBA"))
        opaque = pixels[pixels[..., 3] > 0]
        if len(np.unique(opaque, axis=0)) > 50:  # real imagery, not blank or one colour
            varied += 1
    assert varied >= 1
    assert page.get_attribute("#item", "data-preview") == "tiles"

    # an open collection: every file can be downloaded by the public
    buttons = page.locator("#item .asset .download")
    assert buttons.count() == len(doc["assets"])
    assert page.locator('#item .asset .download[aria-disabled="true"]').count() == 0
    with page.expect_download() as download_info:
        page.click('#item .asset[data-asset="visual"] .download')
    download = download_info.value
    path = download.path()
    assert path is not None
    with open(path, "rb") as f:
        assert f.read(4) in (b"II*\x00", b"MM\x00*")  # a GeoTIFF


def test_arabic_is_right_to_left(open_page: Any, web_node: Node) -> None:
    page = open_page()
    page.wait_for_selector("#results li")
    assert page.get_attribute("html", "dir") == "ltr"
    page.select_option("#language", "ar")
    page.wait_for_selector("html[lang=ar][dir=rtl]")
    ar = _strings("ar")
    assert page.inner_text("#view-search h1") == ar["search.title"]
    assert page.inner_text("#search-submit") == ar["search.submit"]
    # the panel sits on the right of the map, the map itself stays left-to-right
    panel = page.locator("#panel").bounding_box()
    map_box = page.locator("#map").bounding_box()
    assert panel is not None and map_box is not None
    assert panel["x"] > map_box["x"]
    assert page.get_attribute("#map", "dir") == "ltr"
    assert page.evaluate("getComputedStyle(document.querySelector('#panel')).direction") == "rtl"
    # results are re-rendered in Arabic too, and the choice survives a reload
    status = page.inner_text("#results-status")
    assert status.startswith(ar["results.count"].split("{")[0].strip())
    page.screenshot(path=str(SCREENSHOTS / "arabic-search.png"))
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute("html", "dir") == "rtl"
    assert page.input_value("#language") == "ar"
    page.goto(f"{web_node.url}/?lang=en")
    page.wait_for_selector("html[lang=en][dir=ltr]")


def test_every_language_fills_every_string(open_page: Any) -> None:
    page = open_page()
    for lang in ("ar", "zh", "fr", "ru", "es", "en"):
        page.select_option("#language", lang)
        page.wait_for_selector(f"html[lang={lang}]")
        strings = _strings(lang)
        shown = page.eval_on_selector_all(
            "[data-i18n]", "els => els.map(e => [e.dataset.i18n, e.textContent])"
        )
        for key, text in shown:
            assert text == strings[key], (lang, key, text)
        assert page.title().endswith(strings["app.title"])
        page.screenshot(path=str(SCREENSHOTS / f"language-{lang}.png"))


def test_withheld_download_shows_the_agreement(open_page: Any, web_node: Node) -> None:
    page = open_page(path=_item_hash(*DHAKA_SAR))
    page.wait_for_selector("#item .asset")
    item = httpx.get(f"{web_node.url}/collections/{DHAKA_SAR[0]}/items/{DHAKA_SAR[1]}").json()
    vv = page.locator('#item .asset[data-asset="vv"]')
    button = vv.locator(".download")
    assert button.get_attribute("aria-disabled") == "true"
    reason = vv.locator(".reason").inner_text()
    # the reason is the node's own, and it names the agreement
    assert item["assets"]["vv"]["eoshare:access"]["reason"] in reason
    assert "monsoon-sar-grd" in reason and "bd-dra" in reason
    # the node refuses the bytes with the same agreement named in its 403 problem
    refused = httpx.get(item["assets"]["vv"]["href"])
    assert refused.status_code == 403
    assert "bd-dra" in refused.json()["detail"]
    # the greyed button stays focusable (its reason is read with it) and starts nothing
    downloads: list[Any] = []
    page.on("download", lambda d: downloads.append(d))
    button.focus()
    page.keyboard.press("Enter")
    button.click(force=True)  # a real mouse click; Playwright would wait for "enabled"
    page.wait_for_timeout(500)
    assert downloads == []
    assert button.get_attribute("aria-disabled") == "true"
    # the described-by link lets a screen reader read the reason with the button
    assert button.get_attribute("aria-describedby") == vv.locator(".reason").get_attribute("id")


def test_token_sign_in_gives_member_downloads(
    open_page: Any, web_node: Node, member_token: str
) -> None:
    page = open_page(path=_item_hash(*DHAKA_SAR))
    page.wait_for_selector('#item .asset[data-asset="vv"] .download[aria-disabled="true"]')
    page.click("#signin-open")
    assert page.is_visible("#signin")
    page.fill("#token", member_token)
    seen: list[str | None] = []
    page.on(
        "request",
        lambda r: seen.append(r.headers.get("authorization")) if "/collections/" in r.url else None,
    )
    page.click("#token-form button[type=submit]")
    page.wait_for_selector(f"#who:has-text('{MEMBER_USER}')")
    assert not page.is_visible("#signin")
    # the item is asked for again, with the token, and the downloads open up
    page.wait_for_selector('#item .asset[data-asset="vv"] a.download')
    assert f"Bearer {member_token}" in seen
    with page.expect_download() as download_info:
        page.click('#item .asset[data-asset="vv"] a.download')
    path = download_info.value.path()
    with open(path, "rb") as f:
        assert f.read(4) in (b"II*\x00", b"MM\x00*")
    page.click("#signout")
    page.wait_for_selector("#signin-open:visible")
    page.wait_for_selector('#item .asset[data-asset="vv"] .download[aria-disabled="true"]')


def test_account_sign_in_and_bad_password(open_page: Any) -> None:
    page = open_page()
    page.click("#signin-open")
    page.fill("#username", MEMBER_USER)
    page.fill("#password", "not-the-password")
    page.click("#account-form button[type=submit]")
    error = page.locator("#signin-error")
    error.wait_for()
    assert "wrong" in error.inner_text()
    page.fill("#password", MEMBER_PASSWORD)
    page.click("#account-form button[type=submit]")
    page.wait_for_selector(f"#who:has-text('{MEMBER_USER}')")
    # the session cookie is HTTP-only: scripts cannot read it
    assert "eoshare_session" not in page.evaluate("document.cookie")
    page.click("#signout")
    page.wait_for_selector("#signin-open:visible")
    assert page.inner_text("#who") == _strings("en")["auth.public"]


def test_keyboard_only(open_page: Any) -> None:
    page = open_page()
    page.wait_for_selector("#results li")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "panel-content"
    # walk forward to the free-text field, type, and submit with Enter
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "text":
            break
    assert page.evaluate("document.activeElement.id") == "text"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    page.keyboard.type("Nairobi")
    with page.expect_response(lambda r: r.url.endswith("/search")):
        page.keyboard.press("Enter")
    page.wait_for_selector("#results-status:not(:has-text('…'))")
    ids = _result_ids(page)
    assert ids and all(i.endswith("NAIROBI") for i in ids)
    # Tab reaches the first result; Enter opens it and focus moves to its heading
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('result-link')"):
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("#item h1")
    assert page.evaluate("document.activeElement.tagName") == "H1"
    # the sign-in dialog opens and closes (Escape) from the keyboard, focus returns
    page.focus("#signin-open")
    page.keyboard.press("Enter")
    assert page.is_visible("#signin")
    page.keyboard.press("Escape")
    assert not page.is_visible("#signin")
    assert page.evaluate("document.activeElement.id") == "signin-open"


def test_phone_sized_screen(open_page: Any) -> None:
    page = open_page(viewport=(375, 740))
    page.wait_for_selector("#results li")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    map_box = page.locator("#map").bounding_box()
    panel = page.locator("#panel").bounding_box()
    assert map_box is not None and panel is not None
    assert map_box["width"] >= 360 and map_box["height"] >= 200
    assert panel["y"] >= map_box["y"] + map_box["height"] - 1  # stacked under the map
    page.screenshot(path=str(SCREENSHOTS / "phone-search.png"), full_page=True)
    page.locator("#results li a").first.click()
    page.wait_for_selector("#item .asset")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.select_option("#language", "ar")
    page.wait_for_selector("html[dir=rtl]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_collections_state_their_agreements(open_page: Any, web_node: Node) -> None:
    page = open_page(path="/#/collections")
    page.wait_for_selector("#collections li")
    docs = httpx.get(f"{web_node.url}/collections").json()["collections"]
    assert page.locator("#collections li").count() == len(docs)
    for doc in docs:
        card = page.locator(f'#collections li[data-collection="{doc["id"]}"]')
        text = card.locator(".agreement").inner_text()
        agreement = doc.get("eoshare:agreement")
        if agreement and agreement.get("summary"):
            assert agreement["summary"] in text
        else:
            assert doc["license"] in text
    radar = page.locator('#collections li[data-collection="monsoon-sar-grd"] .agreement')
    assert _strings("en")["access.members"] in radar.inner_text()
    # "search this collection" goes back to the search with the collection chosen
    page.locator('#collections li[data-collection="monsoon-sar-grd"] button').click()
    page.wait_for_selector("#results li[data-item^=M1_SAR]")
    assert page.input_value("#collection") == "monsoon-sar-grd"
    assert all(i.startswith("M1_SAR") for i in _result_ids(page))
