"""Holes 6 and 15: header values from provider metadata. A provider-admin sets an
asset's ``type`` to active content or to text that breaks headers; the node refuses what
is not a media type (400), and serves what is so that no browser renders it as a page of
this origin."""

from __future__ import annotations

import pytest

from .bytes_node import B_OPEN, B_SCENE, BytesNode

ITEM = f"/collections/{B_OPEN}/items/{B_SCENE}"


@pytest.mark.parametrize(
    "media_type",
    [
        "text/html\r\nSet-Cookie: session=stolen",
        "text/html\x01",
        "text/html\x7f",
        "text/html; charset=\u00e9t\u00e9",  # Latin-1, not ASCII
        "text/\u0125tml",  # not Latin-1
        "text/html\u2028",
        "text html",
        "",
        "x" * 300 + "/y",
    ],
)
def test_a_type_that_is_not_a_media_type_is_refused(
    secbytes_node: BytesNode, media_type: str
) -> None:
    with secbytes_node.client("b_admin") as http:
        r = http.patch(ITEM, json={"assets": {"thumbnail": {"type": media_type}}})
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "media type" in r.json()["detail"]
        doc = {**http.get(ITEM).json(), "id": "bad-type"}
        doc["assets"] = {"x": {"href": "https://example.com/x.html", "type": media_type}}
        r = http.post(f"/collections/{B_OPEN}/items", json=doc)
        assert r.status_code == 400, r.text
    with secbytes_node.client("anonymous") as http:
        # the item still downloads, with its old, valid type
        got = http.get(f"/download/{B_OPEN}/{B_SCENE}/thumbnail")
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "media_type", ["text/html", "image/svg+xml", "application/xhtml+xml; charset=utf-8"]
)
def test_active_content_is_sandboxed_and_attached(
    secbytes_node: BytesNode, media_type: str
) -> None:
    with secbytes_node.client("b_admin") as http:
        r = http.patch(ITEM, json={"assets": {"thumbnail": {"type": media_type}}})
        assert r.status_code == 200, r.text
    try:
        with secbytes_node.client("anonymous") as http:
            for method in ("GET", "HEAD"):
                got = http.request(method, f"/download/{B_OPEN}/{B_SCENE}/thumbnail")
                assert got.status_code == 200
                h = got.headers
                assert h["content-type"] == media_type
                assert h["x-content-type-options"] == "nosniff"
                assert h["content-security-policy"] == "sandbox; default-src 'none'"
                assert h["content-disposition"].startswith("attachment;")
    finally:
        with secbytes_node.client("b_admin") as http:
            http.patch(ITEM, json={"assets": {"thumbnail": {"type": "image/png"}}})
