"""Node-to-node signatures against a real peer (beta): who is asking is believed only
when signed by a registered peer, within the clock-skew window, once, and only for the
members that peer is trusted for."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eoshare.access.base import Principal
from eoshare.errors import NotAuthenticatedError
from eoshare.federation.identity import NodeIdentity, load_or_create_identity
from eoshare.federation.signatures import ON_BEHALF_OF, sign_request
from eoshare.federation.trust import encode_on_behalf_of
from federation.conftest import Federation

JSON = dict[str, Any]
VN = Principal(user="thu", member="vn-vnsc", roles=frozenset({"analyst"}))
BD = Principal(user="rahim", member="bd-sparrso", roles=frozenset({"analyst"}))


def alpha_identity(federation: Federation) -> NodeIdentity:
    return load_or_create_identity(
        federation.alpha.data_dir / "node-key.pem", name="alpha", member="vn-vnsc"
    )


def signed_get(
    identity: NodeIdentity,
    url: str,
    *,
    principal: Principal | None = None,
    now: float | None = None,
) -> dict[str, str]:
    parts = urlsplit(url)
    headers: dict[str, str] = {}
    if principal is not None:
        headers[ON_BEHALF_OF] = encode_on_behalf_of(principal) or ""
    headers.update(
        sign_request(
            identity,
            method="GET",
            authority=parts.netloc,
            path=parts.path,
            query=parts.query,
            headers=headers,
            now=now,
        )
    )
    return headers


def ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {f["id"] for f in r.json()["features"]}


@pytest.fixture()
def search_url(federation: Federation) -> str:
    return federation.beta.url + "/search?collections=b-partners,b-open&limit=100"


def test_trusted_member_sees_what_that_member_sees(federation: Federation, search_url: str) -> None:
    alpha = alpha_identity(federation)
    seen = ids(httpx.get(search_url, headers=signed_get(alpha, search_url, principal=VN)))
    assert {"b-partners-0", "b-open-0"} <= seen


def test_untrusted_member_is_the_public(federation: Federation) -> None:
    """beta does not believe alpha about bd-sparrso users: b-members (open to every
    member's users) stays hidden from them through alpha, not directly."""
    alpha, beta = alpha_identity(federation), federation.beta
    url = beta.url + "/search?collections=b-members,b-open&limit=100"
    seen = ids(httpx.get(url, headers=signed_get(alpha, url, principal=BD)))
    assert "b-open-0" in seen and not any(i.startswith("b-members") for i in seen)
    directly = ids(httpx.get(url, headers=beta.headers("bd_user")))
    assert any(i.startswith("b-members") for i in directly)


def test_forwarded_roles_never_include_operator(federation: Federation, search_url: str) -> None:
    alpha = alpha_identity(federation)
    op = Principal(user="root", member="vn-vnsc", roles=frozenset({"operator"}))
    headers = signed_get(alpha, search_url, principal=op)
    seen = ids(httpx.get(search_url, headers=headers))
    url = federation.beta.url + "/search?collections=b-provider"
    assert not ids(httpx.get(url, headers=signed_get(alpha, url, principal=op)))
    assert seen  # the member's own view, nothing more


def test_clock_ten_minutes_off_is_refused(federation: Federation, search_url: str) -> None:
    alpha = alpha_identity(federation)
    for skew in (-600, +600):
        r = httpx.get(search_url, headers=signed_get(alpha, search_url, now=time.time() + skew))
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "clock" in r.json()["detail"]
    # within the tolerance (120 s): accepted
    r = httpx.get(search_url, headers=signed_get(alpha, search_url, now=time.time() - 60))
    assert r.status_code == 200


def test_replayed_signature_is_refused(federation: Federation, search_url: str) -> None:
    headers = signed_get(alpha_identity(federation), search_url, principal=VN)
    assert httpx.get(search_url, headers=headers).status_code == 200
    again = httpx.get(search_url, headers=headers)
    assert again.status_code == 401 and "replay" in again.json()["detail"]


def test_replay_against_another_process_of_the_node(
    federation: Federation, search_url: str
) -> None:
    """The replay cache is the peers database: a signature used at one process of beta
    is refused by another process of beta (here: this test's, on beta's database), and
    the other way round."""
    from eoshare.federation.peers import PeerRegistry
    from eoshare.federation.trust import PeerTrust

    parts = urlsplit(search_url)
    request = {
        "method": "GET", "authority": parts.netloc, "path": parts.path, "query": parts.query,
        "body": b"",
    }  # fmt: skip
    registry = PeerRegistry(federation.beta.data_dir / "federation.db")
    other = PeerTrust(registry, known_member=lambda m: True, clock_skew_s=120, max_ttl_s=300)
    try:
        alpha = alpha_identity(federation)
        used_at_beta = signed_get(alpha, search_url, principal=VN)
        assert httpx.get(search_url, headers=used_at_beta).status_code == 200
        with pytest.raises(NotAuthenticatedError, match="replay"):
            other.authenticate(headers=used_at_beta, **request)
        used_here = signed_get(alpha, search_url, principal=VN)
        assert other.authenticate(headers=used_here, **request).trusted
        again = httpx.get(search_url, headers=used_here)
        assert again.status_code == 401 and "replay" in again.json()["detail"]
    finally:
        registry.close()


def test_forged_signatures_are_refused(federation: Federation, search_url: str) -> None:
    alpha = alpha_identity(federation)
    mallory = NodeIdentity(Ed25519PrivateKey.generate(), "mallory")
    # an unknown node
    r = httpx.get(search_url, headers=signed_get(mallory, search_url, principal=VN))
    assert r.status_code == 401 and "not a peer" in r.json()["detail"]
    # another key claiming to be alpha
    forged = signed_get(mallory, search_url, principal=VN)
    forged["signature-input"] = forged["signature-input"].replace(
        mallory.fingerprint, alpha.fingerprint
    )
    r = httpx.get(search_url, headers=forged)
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    # alpha's signature, with the forwarded member changed afterwards
    tampered = signed_get(alpha, search_url, principal=BD)
    tampered[ON_BEHALF_OF] = encode_on_behalf_of(VN) or ""
    r = httpx.get(search_url, headers=tampered)
    assert r.status_code == 401
    # alpha's signature used for another URL
    other = federation.beta.url + "/search?collections=b-provider"
    r = httpx.get(other, headers=signed_get(alpha, search_url, principal=VN))
    assert r.status_code == 401
    # a signed body that was changed on the way
    url = federation.beta.url + "/search"
    body = b'{"collections": ["b-open"]}'
    parts = urlsplit(url)
    headers = sign_request(
        alpha, method="POST", authority=parts.netloc, path=parts.path, query="",
        headers={"content-type": "application/json"}, body=body,
    )  # fmt: skip
    r = httpx.post(
        url,
        content=b'{"collections": ["b-partners"]}',
        headers={**headers, "content-type": "application/json"},
    )
    assert r.status_code == 401 and "Content-Digest" in r.json()["detail"]
    r = httpx.post(url, content=body, headers={**headers, "content-type": "application/json"})
    assert r.status_code == 200


def test_agreement_change_between_two_searches(federation: Federation) -> None:
    """beta narrows b-partners to its own users: the hub's next search no longer shows
    it to a vn-vnsc user, with nothing cached at the hub."""
    alpha, beta = federation.alpha, federation.beta
    url = alpha.url + "/search"
    params = {"collections": "b-partners", "limit": 50}
    vn = alpha.headers("vn_user")
    assert len(ids(httpx.get(url, params=params, headers=vn))) == 3
    admin = {"Authorization": "Bearer federation-test-admin-token-0123456789"}
    path = f"{beta.url}/admin/agreements/b-partners"
    original = httpx.get(path, headers=admin).json()
    changed = {k: v for k, v in original.items() if k != "collection"}
    changed.update(access="provider", partners=[])
    r = httpx.put(path, json=changed, headers=admin)
    assert r.status_code == 200, r.text
    try:
        assert ids(httpx.get(url, params=params, headers=vn)) == set()
    finally:
        restore = {k: v for k, v in original.items() if k != "collection"}
        assert httpx.put(path, json=restore, headers=admin).status_code == 200
    assert len(ids(httpx.get(url, params=params, headers=vn))) == 3


def test_minimal_rendering_only_for_signed_peers(federation: Federation) -> None:
    """A harvesting peer (signed, ``Eoshare-Render: minimal``) gets items without the UI
    access hints and tile links it makes itself; anyone else gets the full rendering."""
    beta = federation.beta
    url = beta.url + "/search?collections=b-partners&limit=3"
    minimal = {"Eoshare-Render": "minimal"}

    def hinted(r: httpx.Response) -> bool:
        assert r.status_code == 200, r.text
        assert r.json()["features"]
        return any(
            "eoshare:access" in a for f in r.json()["features"] for a in f["assets"].values()
        )

    # not signed (the member's own token): the full rendering
    assert hinted(httpx.get(url, headers={**beta.headers("vn_user"), **minimal}))
    alpha = alpha_identity(federation)
    assert hinted(httpx.get(url, headers=signed_get(alpha, url, principal=VN)))
    signed = signed_get(alpha, url, principal=VN)
    assert not hinted(httpx.get(url, headers={**signed, **minimal}))
