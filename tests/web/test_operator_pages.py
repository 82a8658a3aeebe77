"""The operator pages' shared part (``js/operator.js``): the top bar, the language menu and
who is signed in, on each of ``dashboard.html``, ``peers.html`` and ``activations.html``.

Each page builds its top bar with the shared module. Opened by the public in Chromium, every
page must show the brand, the link to the other operator page, a menu of the six UN
languages, and who is calling; choosing each language must translate the bar (Arabic right
to left). A missing or broken ``operator.js`` leaves the bar empty and fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from eoshare import web

from .conftest import Node

# page, id prefix, the key of "who is calling" for the public, the nav link and its key
PAGES = [
    ("dashboard.html", "dash", "auth.public", ("dash-peers", "dash.peersLink")),
    ("peers.html", "peers", "auth.public", ("peers-dashboard", "peers.dashboardLink")),
    ("activations.html", "act", "act.page.signedOut", None),
]


def _strings(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((web.STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


@pytest.mark.parametrize(("page_name", "prefix", "who_key", "link"), PAGES)
def test_operator_page_top_bar_in_six_languages(
    web_node: Node,
    browser: Any,
    page_name: str,
    prefix: str,
    who_key: str,
    link: tuple[str, str] | None,
) -> None:
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{web_node.url}/ui/{page_name}?lang=en")
        english = _strings("en")
        page.locator(f"#{prefix}-who", has_text=english[who_key]).wait_for()
        assert page.locator(f"#{prefix}-brand").inner_text() == english["app.name"]
        assert page.locator(f"#{prefix}-home").get_attribute("href") == "./"
        options = page.locator(f"#{prefix}-language option")
        values = options.evaluate_all("os => os.map(o => o.value)")
        assert sorted(values) == sorted(web.LANGUAGES)
        if link is not None:
            link_id, link_key = link
            assert page.locator(f"#{link_id}").inner_text() == english[link_key]
        for lang in ("ar", "zh", "ru", "fr", "es", "en"):
            strings = _strings(lang)
            page.select_option(f"#{prefix}-language", lang)
            direction = "rtl" if lang == "ar" else "ltr"
            page.wait_for_selector(f"html[lang={lang}][dir={direction}]", state="attached")
            page.locator(f"#{prefix}-who", has_text=strings[who_key]).wait_for()
            label = page.locator(f"#{prefix}-language").get_attribute("aria-label")
            assert label == strings["lang.label"]
            if link is not None:
                assert page.locator(f"#{link[0]}").inner_text() == strings[link[1]]
                nav = page.locator(f"#{prefix}-nav").get_attribute("aria-label")
                assert nav == strings["nav.label"]
    finally:
        context.close()
    assert errors == [], errors
