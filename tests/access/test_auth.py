"""Authentication: OIDC access tokens (a key pair made by the test), browser sessions
with CSRF protection, and that no secret reaches a response or the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from .conftest import AUDIENCE, ISSUER, OTHER, PARTNER, Node


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _refused(node: Node, http: httpx.Client, token: str, why: str) -> None:
    r = http.get("/search", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert why in r.json()["detail"]
    assert token not in r.text
    assert token not in (node.data_dir / "server.log").read_text()


def test_oidc_token_maps_member_and_roles(node: Node, http: httpx.Client) -> None:
    token = node.oidc_token({"sub": "lan", "agency": PARTNER, "roles": ["analyst", "operator"]})
    me = http.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["member"] == PARTNER and me["country"] == "VN"
    # operator is not among the roles an external IdP may grant
    assert me["roles"] == ["analyst"] and me["operator"] is False
    assert me["via"] == "oidc"


def test_oidc_refusals(node: Node, http: httpx.Client) -> None:
    now = int(time.time())
    base = {"sub": "x", "agency": PARTNER}
    _refused(node, http, node.oidc_token({**base, "exp": now - 3600}), "expired")
    _refused(node, http, node.oidc_token({**base, "nbf": now + 3600}), "not valid yet")
    _refused(node, http, node.oidc_token({**base, "aud": "someone-else"}), "not meant")
    _refused(node, http, node.oidc_token({**base, "iss": "https://evil.example"}), "issuer")
    _refused(node, http, node.oidc_token(base, key=node.other_private_pem), "signature")
    _refused(node, http, node.oidc_token(base, kid="unknown-kid"), "signing key")
    _refused(node, http, node.oidc_token({**base, "agency": "xx-nobody"}), "member unknown")
    # alg "none": an unsigned token
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 600}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    _refused(node, http, unsigned, "algorithm")
    # HS256 keyed with the public key (algorithm confusion)
    jwks = json.loads((node.data_dir / "jwks.json").read_text())
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    public_pem = public_key.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": node.kid})
    payload = _b64(claims)
    sig = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    _refused(node, http, confused, "algorithm")
    _refused(node, http, "eyJhbGciOi.not-a.jwt", "not")


def test_login_session_cookie_and_csrf(node: Node) -> None:
    with httpx.Client(base_url=node.url, timeout=30) as browser:
        bad = browser.post("/auth/login", json={"username": "browser", "password": "wrong pass"})
        assert bad.status_code == 401 and "wrong pass" not in bad.text
        unknown = browser.post("/auth/login", json={"username": "nobody", "password": "x" * 9})
        assert unknown.json()["detail"] == bad.json()["detail"]
        r = browser.post("/auth/login", json={"username": "browser", "password": "correct horse"})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        me = browser.get("/auth/me").json()
        assert (me["user"], me["member"], me["via"]) == ("browser", OTHER, "session")
        # the session sees what its member sees
        assert browser.get("/collections/t-members").status_code == 200
        assert browser.get("/collections/t-provider").status_code == 404
        # a cookie-authenticated write without proof of origin is refused (CSRF)
        r = browser.post("/collections/t-terms/accept-terms")
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        r = browser.post(
            "/collections/t-terms/accept-terms", headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        r = browser.post("/collections/t-terms/accept-terms", headers={"X-Requested-With": "ui"})
        assert r.status_code == 200, r.text
        assert browser.post("/auth/logout", headers={"X-Requested-With": "ui"}).status_code == 204
        assert browser.get("/auth/me").json()["anonymous"] is True


@pytest.mark.parametrize("secure", [True])
def test_cookie_is_secure_by_default(secure: bool) -> None:
    from eoshare.settings import AccessSettings

    assert AccessSettings().cookie_secure is secure
