"""The Process panel: a member picks NDVI, an area and dates, runs it as an openEO job on
the node, watches it finish, and opens the published result on the map."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import MEMBER_USER, Node


def _ndvi_input(node: Node, token: str) -> tuple[str, list[float], str]:
    """A collection with red and NIR bands, a small box inside one of its scenes, its day."""
    auth = {"Authorization": f"Bearer {token}"}
    base = f"{node.url}/openeo/1.2"
    for c in httpx.get(f"{base}/collections", headers=auth).json()["collections"]:
        meta = httpx.get(f"{base}/collections/{c['id']}", headers=auth).json()
        common = {b.get("common_name") for b in meta.get("summaries", {}).get("eo:bands", [])}
        if {"red", "nir"} <= common:
            found = httpx.get(f"{node.url}/search", params={"collections": c["id"], "limit": 1},
                              headers=auth).json()["features"]  # fmt: skip
            if not found:
                continue
            w, s, e, n = found[0]["bbox"]
            box = [w, s, w + (e - w) / 8, s + (n - s) / 8]
            return c["id"], box, found[0]["properties"]["datetime"][:10]
    raise AssertionError("the demo has no collection with red and NIR bands")


def test_run_ndvi_from_the_process_panel(open_page: Any, web_node: Node, member_token: str) -> None:
    collection, box, day = _ndvi_input(web_node, member_token)
    page = open_page(path="/#/process")
    page.click("#signin-open")
    page.fill("#token", member_token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector(f"#who:has-text('{MEMBER_USER}')")
    page.wait_for_selector(f"#process-collection option[value='{collection}']", state="attached")
    page.select_option("#process-algorithm", "ndvi")
    page.select_option("#process-collection", collection)
    page.fill("#process-bbox", ", ".join(f"{v:.5f}" for v in box))
    page.fill("#process-from", day)
    page.fill("#process-to", day[:8] + f"{int(day[8:]) + 1:02d}" if day[8:] < "28" else day)
    page.click("#process-run")
    page.wait_for_selector(
        "#process-result a[href^='#/item/'], #process-error:not([hidden])", timeout=120_000
    )
    assert not page.is_visible("#process-error"), page.text_content("#process-error")
    downloads = page.locator("#process-result a[download]")
    assert downloads.count() >= 1
    assert "sig=" in (downloads.first.get_attribute("href") or "")
    page.click("#process-result a[href^='#/item/']")
    page.wait_for_selector("#item h2, #item h1")
    assert "results-" in page.url
