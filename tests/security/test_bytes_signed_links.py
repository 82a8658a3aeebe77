"""Hole 13: signed links outlive their holder. A link made for a user stops working once
that user is removed or the token it was made with is revoked (checked at use, cached a
few seconds at most)."""

from __future__ import annotations

import time

import httpx
import pytest

from eoshare.access.auth import LINK_CHECK_TTL_S

from .bytes_node import B_OPEN, B_SCENE, BytesNode, data_asset


def _signed_link(node: BytesNode, who: str) -> str:
    with node.client(who) as http:
        doc = http.get(f"/collections/{B_OPEN}/items/{B_SCENE}?sign=true").json()
    href: str = doc["assets"][data_asset(node.b_item)]["href"]
    assert "sig=" in href
    return href


@pytest.mark.parametrize("how", ["revoke-token", "delete-user"])
def test_links_die_with_their_holder(secbytes_node: BytesNode, how: str) -> None:
    node = secbytes_node
    who = "revokee" if how == "revoke-token" else "leaver"
    link = _signed_link(node, who)
    with httpx.Client(timeout=60) as bare:
        assert bare.get(link, headers={"Range": "bytes=0-9"}).status_code == 206
        with node.client("operator") as admin:
            if how == "revoke-token":
                r = admin.delete(f"/admin/tokens/{node.token_ids[who]}")
            else:
                r = admin.delete(f"/admin/users/{who}")
            assert r.status_code == 204, r.text
        time.sleep(LINK_CHECK_TTL_S + 0.5)
        for _ in range(4):  # every worker process
            r = bare.get(link, headers={"Range": "bytes=0-9"})
            assert r.status_code == 403, r.text
            assert "no longer valid" in r.json()["detail"]
    # a link of a user who stays keeps working
    with httpx.Client(timeout=60) as bare:
        assert bare.get(_signed_link(node, "b_user")).status_code == 200
