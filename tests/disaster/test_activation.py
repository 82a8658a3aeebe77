"""A full activation against a real node: request, approval, the grant exactly at its
edges (search, download, tiles), outsiders unchanged, a post-event Sentinel-2 scene
ingested during the test reaching the requester by webhook (signed) and by server-sent
events while a subscriber without rights hears nothing, then close and its summary.

The tests of this module run in order and share one node and one activation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from eoshare.ingest.raster import ingest_rasters
from live import free_port

from .conftest import (
    AREA,
    CLOSED,
    EVENT_TIME,
    OUTSIDER,
    RELEASED,
    SCENE_TIME,
    Node,
    json_of,
)

US = timedelta(microseconds=1)
STATE: dict[str, Any] = {}


def _search_ids(node: Node, who: str) -> set[str]:
    r = node.post_search(who)
    assert r.status_code == 200, r.text
    return {f["id"] for f in json_of(r)["features"]}


def test_request_needs_the_focal_point_role(node: Node) -> None:
    body = {"hazard": "flood", "area": AREA, "event_time": EVENT_TIME.isoformat()}
    r = node.post("/activations", "analyst", body)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    bad = node.post("/activations", "focal", {**body, "hazard": "meteor"})
    assert bad.status_code == 400 and "hazard" in bad.json()["detail"]
    bad = node.post(
        "/activations", "focal", {**body, "area": {"type": "Point", "coordinates": [0, 0]}}
    )
    assert bad.status_code == 400 and "polygons" in bad.json()["detail"]


def test_request_and_reject_with_reason(node: Node) -> None:
    body = {"hazard": "fire", "area": AREA, "event_time": EVENT_TIME.isoformat()}
    aid = json_of(node.post("/activations", "focal", body))["id"]
    assert node.post(f"/activations/{aid}/reject", "ops", {}).status_code == 400
    assert node.post(f"/activations/{aid}/reject", "focal", {"reason": "x"}).status_code == 403
    doc = json_of(node.post(f"/activations/{aid}/reject", "ops", {"reason": "duplicate"}))
    assert doc["state"] == "rejected" and doc["reason"] == "duplicate"
    assert [t["to"] for t in doc["transitions"]] == ["requested", "rejected"]
    assert doc["transitions"][-1]["who"] == "ops"
    # outsiders do not even learn it exists
    assert node.get(f"/activations/{aid}", "outsider").status_code == 404


def test_activation_is_approved_and_the_grant_begins_exactly(node: Node) -> None:
    body = {
        "hazard": "flood", "area": AREA, "event_time": EVENT_TIME.isoformat(),
        "description": "river flood", "contacts": ["focal@example.org"],
        "pre_days": 30, "post_days": 30, "webhook": node.receiver.url,
    }  # fmt: skip
    doc = json_of(node.post("/activations", "focal", body))
    aid = doc["id"]
    STATE["aid"] = aid
    assert doc["state"] == "requested" and doc["grant"]["live"] is False
    # the post-event scene is already catalogued by its provider, hidden from others
    ingest_scene(node, "S2A_29RKH_20200219_pre_grant")
    assert _search_ids(node, "analyst") == set()
    approve_at = node.clock.now + timedelta(minutes=7, seconds=13, microseconds=500)
    node.clock.now = approve_at
    doc = json_of(node.post(f"/activations/{aid}/approve", "ops", {"note": "on duty"}))
    assert doc["state"] == "approved" and doc["approved_by"] == "ops"
    STATE["approved_at"] = approve_at
    # one microsecond before approval: nothing; at approval: the scene (same minute)
    node.clock.now = approve_at - US
    assert _search_ids(node, "analyst") == set()
    assert (
        node.get(
            f"/collections/{RELEASED}/items/S2A_29RKH_20200219_pre_grant", "analyst"
        ).status_code
        == 404
    )
    node.clock.now = approve_at
    assert _search_ids(node, "analyst") == {"S2A_29RKH_20200219_pre_grant"}
    # the focal point too (same member); the outsider and the public see nothing new
    assert _search_ids(node, "focal") == {"S2A_29RKH_20200219_pre_grant"}
    assert _search_ids(node, "outsider") == set()
    assert _search_ids(node, None) == set()


def ingest_scene(node: Node, item_id: str, when: Any = SCENE_TIME) -> None:
    raster = node.shared / "raster"
    report = ingest_rasters(
        [raster / "S2A_29RKH_20200219_0_L2A_B04.tif", raster / "S2A_29RKH_20200219_0_L2A_B08.tif"],
        catalog=node.app.state.catalog, store=node.app.state.store, collection_id=RELEASED,
        one_item=True, datetime=when, item_id=item_id,
    )  # fmt: skip
    assert not report.failures, report.failures


def test_download_and_tiles_follow_the_grant(node: Node) -> None:
    iid = "S2A_29RKH_20200219_pre_grant"
    item = json_of(node.get(f"/collections/{RELEASED}/items/{iid}", "analyst"))
    asset = next(k for k, a in item["assets"].items() if "data" in a.get("roles", []))
    href = item["assets"][asset]["href"]
    r = httpx.get(href, headers=node.h("analyst"), timeout=30)
    assert r.status_code == 200 and len(r.content) > 1000
    preview = f"/tiles/collections/{RELEASED}/items/{iid}/preview.png?max_size=64&assets={asset}"
    assert node.get(preview, "analyst").status_code == 200
    assert node.get(preview, "outsider").status_code == 404
    assert httpx.get(href, headers=node.h("outsider"), timeout=30).status_code == 404
    # every byte under the grant is audited against the activation
    summary = json_of(node.get(f"/activations/{STATE['aid']}/summary", "ops"))
    assert summary["bytes"] >= len(r.content)
    assert {m["member"] for m in summary["bytes_by_member"]} == {"ma-crts"}
    STATE["asset"] = asset


def test_collection_without_disaster_release_stays_hidden(node: Node) -> None:
    item = json_of(node.get(f"/collections/{RELEASED}/items/S2A_29RKH_20200219_pre_grant", "ops"))
    node.app.state.catalog.create_item(CLOSED, {**item, "id": "closed-copy", "collection": CLOSED,
                                               "links": []})  # fmt: skip
    assert "closed-copy" not in _search_ids(node, "analyst")
    assert node.get(f"/collections/{CLOSED}/items/closed-copy", "analyst").status_code == 404


def test_new_scene_alerts_requester_by_webhook_and_sse_not_the_outsider(node: Node) -> None:
    aid = STATE["aid"]
    subs = json_of(node.get("/alerts/subscriptions", "focal"))["subscriptions"]
    armed = [s for s in subs if s["activation"] == aid]
    assert len(armed) == 1 and armed[0]["webhook"] == node.receiver.url
    secret = json_of(node.post(f"/alerts/subscriptions/{armed[0]['id']}/secret", "focal"))["secret"]
    # the outsider subscribes to the same area, by webhook and SSE: it may see nothing
    out_sub = node.post(
        "/alerts/subscriptions", "outsider", {"area": AREA, "webhook": node.receiver.url}
    )
    assert out_sub.status_code == 201, out_sub.text
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    stop = threading.Event()
    ready = {who: threading.Event() for who in ("focal", "outsider")}

    def listen(who: str) -> None:
        with httpx.stream("GET", node.url + "/alerts/stream", headers=node.h(who),
                          timeout=httpx.Timeout(30, read=60)) as r:  # fmt: skip
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    ready[who].set()
                if line.startswith("data: "):
                    events.put({"who": who, **json.loads(line[6:])})
                if stop.is_set():
                    return

    threads = [threading.Thread(target=listen, args=(w,), daemon=True) for w in ready]
    for t in threads:
        t.start()
    for e in ready.values():
        assert e.wait(10), "the SSE stream did not open"
    while not node.receiver.received.empty():
        node.receiver.received.get()
    started = time.monotonic()
    ingest_scene(node, "S2A_29RKH_20200219_post")
    headers, body = node.receiver.received.get(timeout=15)
    STATE["ingest_to_webhook_s"] = time.monotonic() - started
    signed = hmac.new(secret.encode(), headers["x-eoshare-timestamp"].encode() + b"." + body,
                      hashlib.sha256).hexdigest()  # fmt: skip
    assert headers["x-eoshare-signature"] == f"sha256={signed}"
    event = json.loads(body)
    assert event["item_id"] == "S2A_29RKH_20200219_post" and event["activation"] == aid
    got = events.get(timeout=15)
    assert got["who"] == "focal" and got["item_id"] == "S2A_29RKH_20200219_post"
    stop.set()
    # the outsider: no webhook, no SSE event, no delivery recorded
    time.sleep(1.0)
    assert node.receiver.received.empty()
    assert all(e["who"] != "outsider" for e in list(events.queue))
    # first post-event data: approved -> active
    doc = json_of(node.get(f"/activations/{aid}", "focal"))
    assert doc["state"] == "active" and doc["first_data_at"] is not None


def test_responders_get_the_grant_only_when_added(node: Node) -> None:
    aid = STATE["aid"]
    assert _search_ids(node, "helper") == set()
    r = node.post(f"/activations/{aid}/responders", "ops", {"member": "bd-drs"})
    assert r.status_code == 200, r.text
    assert "S2A_29RKH_20200219_post" in _search_ids(node, "helper")
    assert _search_ids(node, "outsider") == set()


def test_archive_ranks_post_event_first(node: Node) -> None:
    fc = json_of(node.get(f"/activations/{STATE['aid']}/archive", "analyst"))
    ids = [f["id"] for f in fc["features"]]
    assert set(ids) >= {"S2A_29RKH_20200219_post", "S2A_29RKH_20200219_pre_grant"}
    assert all(f["properties"]["eoshare:phase"] == "post" for f in fc["features"])
    assert [f["properties"]["eoshare:rank"] for f in fc["features"]] == list(range(1, len(ids) + 1))


def test_activation_passes_use_real_orbits(node: Node) -> None:
    r = node.get(f"/activations/{STATE['aid']}/passes?start=2024-10-05T00:00:00Z&hours=24")
    assert r.status_code == 401  # not signed in
    r = node.get(f"/activations/{STATE['aid']}/passes?hours=24", "outsider")
    assert r.status_code == 404  # not the outsider's activation
    doc = json_of(node.get(
        f"/activations/{STATE['aid']}/passes?start=2024-10-05T00:00:00Z&hours=24&format=stapi",
        "focal",
    ))  # fmt: skip
    assert doc["features"], doc
    props = doc["features"][0]["properties"]
    assert {"datetime", "view:off_nadir", "sat:orbit_state", "platform"} <= set(props)


def test_failing_webhook_ends_in_the_dead_letters(node: Node) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    r = node.post("/alerts/subscriptions", "focal", {"area": AREA, "webhook": dead_url,
                                                      "collections": [RELEASED]})  # fmt: skip
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    item = json_of(node.get(f"/collections/{RELEASED}/items/S2A_29RKH_20200219_post", "ops"))
    node.app.state.catalog.create_item(RELEASED, {**item, "id": "post-copy", "links": []})
    deadline = time.monotonic() + 15
    letters: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not letters:
        letters = [d for d in json_of(node.get("/alerts/dead-letters", "focal"))["dead_letters"]
                   if d["subscription"] == sid]  # fmt: skip
        time.sleep(0.2)
    assert letters and letters[0]["attempts"] == 3 and letters[0]["url"] == dead_url
    assert json_of(node.get("/alerts/dead-letters", "outsider"))["dead_letters"] == []


def test_a_cli_load_in_another_process_alerts_the_server(node: Node, tmp_path: Path) -> None:
    """`eoshare load` writes the catalogue from outside the server: the write still
    reaches the server's alert worker (through the item event log) and the webhook."""
    item = json_of(node.get(f"/collections/{RELEASED}/items/S2A_29RKH_20200219_post", "ops"))
    doc = {k: v for k, v in item.items() if k != "links"}
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps({**doc, "id": "cli-loaded"}) + "\n")
    while not node.receiver.received.empty():
        node.receiver.received.get()
    data_dir = node.app.state.settings.data_dir
    result = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "load", str(path), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 15
    seen: list[str] = []
    while time.monotonic() < deadline and "cli-loaded" not in seen:
        try:
            _, body = node.receiver.received.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(json.loads(body)["item_id"])
    assert "cli-loaded" in seen


def test_close_ends_the_grant_exactly_and_keeps_a_summary(node: Node) -> None:
    aid = STATE["aid"]
    close_at = node.clock.now + timedelta(hours=5, seconds=3, microseconds=250)
    node.clock.now = close_at
    doc = json_of(node.post(f"/activations/{aid}/close", "ops", {"note": "over"}))
    assert doc["state"] == "closed"
    node.clock.now = close_at - US
    assert "S2A_29RKH_20200219_post" in _search_ids(node, "analyst")
    node.clock.now = close_at
    assert _search_ids(node, "analyst") == set()
    iid = "S2A_29RKH_20200219_post"
    assert node.get(f"/collections/{RELEASED}/items/{iid}", "analyst").status_code == 404
    preview = (
        f"/tiles/collections/{RELEASED}/items/{iid}/preview.png?max_size=64&assets={STATE['asset']}"
    )
    assert node.get(preview, "analyst").status_code == 404
    summary = json_of(node.get(f"/activations/{aid}/summary", "ops"))
    assert summary["state"] == "closed"
    assert summary["seconds_approval_to_first_data"] is not None
    assert summary["scenes_delivered"] and summary["bytes_by_member"][0]["member"] == "ma-crts"
    assert [t["to"] for t in doc["transitions"]][:3] == ["requested", "approved", "active"]
    assert doc["transitions"][-1]["to"] == "closed" and doc["transitions"][-1]["who"] == "ops"


def test_preapproved_member_is_approved_on_arrival(node: Node) -> None:
    assert node.get("/activations/preapprovals", "focal").status_code == 200
    assert node.post("/activations/preapprovals/ma-crts", "focal").status_code == 405
    r = httpx.put(node.url + "/activations/preapprovals/ma-crts", headers=node.h("ops"))
    assert r.status_code == 200, r.text
    body = {"hazard": "earthquake", "area": AREA, "event_time": EVENT_TIME.isoformat()}
    doc = json_of(node.post("/activations", "focal", body))
    assert doc["state"] == "approved"
    assert doc["transitions"][-1]["who"] == "pre-approval:ma-crts"
    assert OUTSIDER not in {r["name"] for r in doc["responders"]}


def test_area_upload_answers_geojson_or_a_problem(node: Node) -> None:
    from .test_area_files import KML

    url = node.url + "/activations/area?filename=flood.kml"
    r = httpx.post(url, content=KML, headers=node.h("focal"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["area"]["type"] == "Polygon"
    r = httpx.post(url, content=b"<kml><NetworkLink/>", headers=node.h("focal"), timeout=30)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert httpx.post(url, content=KML, timeout=30).status_code == 401


def test_activation_pages_in_a_browser(node: Node, tmp_path_factory: Any) -> None:
    """The request form, the queue and an activation's page, in English and Arabic, in
    Chromium; uncaught script errors fail the test; screenshots are kept."""
    from playwright.sync_api import sync_playwright

    chromium = Path(os.environ.get("EOSHARE_CHROMIUM", "/usr/bin/chromium"))
    assert chromium.is_file(), f"{chromium} is missing: run scripts/install-browser.sh"
    store = node.app.state.access_services.store
    store.put_user("ops", member=None, roles=["operator"], password="disaster-ops-pw", who="t")
    shots = tmp_path_factory.mktemp("screenshots")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(chromium),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1400})
            r = context.request.post(
                node.url + "/auth/login",
                data={"username": "ops", "password": "disaster-ops-pw"},
                headers={"X-Requested-With": "eoshare-ui"},
            )
            assert r.ok, r.text()
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(node.url + "/ui/activations.html?lang=en")
            page.wait_for_selector("#act-request")
            assert page.locator("h1").inner_text() == "Disaster activations"
            assert page.locator("h2#act-list-title").inner_text() == "Activations to review"
            assert page.locator("tbody tr").count() >= 3
            page.screenshot(path=str(shots / "queue-en.png"), full_page=True)
            # an operator requests on a member's behalf through the form, then approves it
            page.fill("#act-member", "bd-drs")  # ma-crts is pre-approved by now
            page.select_option("#act-hazard", "landslide")
            page.fill("#act-title", "Landslide in the test valley")
            page.fill("#act-event", "2020-02-18T06:00")
            page.fill("#act-area", json.dumps(AREA))
            page.click("#act-request button[type=submit]")
            page.wait_for_selector("text=Landslide in the test valley")
            assert "Requested" in page.locator("dd.act-state").inner_text()
            page.click("text=All activations")
            row = page.locator("tr", has_text="Landslide in the test valley")
            row.locator("button", has_text="Approve").click()
            page.locator("tr", has_text="Landslide in the test valley").locator(
                "td.act-state", has_text="Approved"
            ).wait_for()
            page.goto(node.url + f"/ui/activations.html?lang=en#{STATE['aid']}")
            page.wait_for_selector("text=History")
            page.wait_for_selector("text=Delivered so far")
            assert "Closed" in page.locator("dd.act-state").inner_text()
            page.wait_for_selector("text=Archive: scenes over the area, best first")
            page.locator("table").first.wait_for()
            page.screenshot(path=str(shots / "activation-en.png"), full_page=True)
            page.select_option("#act-language", "ar")
            page.wait_for_selector("html[dir=rtl][lang=ar]", state="attached")
            page.locator("h1", has_text="تفعيلات الكوارث").wait_for()
            page.locator("dd.act-state", has_text="مغلق").wait_for()
            page.screenshot(path=str(shots / "activation-ar.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    print(f"screenshots: {shots}")
