"""A small OpenID Connect issuer on 127.0.0.1 for the openEO test suite, which signs in
only with OIDC (the client-credentials grant): discovery, JWKS and a token endpoint that
issues RS256 access tokens for one client."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "openeo-suite"
CLIENT_SECRET = "openeo-suite-secret-42"
AUDIENCE = "eoshare-openeo"


@contextlib.contextmanager
def oidc_issuer(*, subject: str, member: str) -> Iterator[str]:
    """Serve the issuer; yield its URL (the ``iss`` of its tokens)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    state: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = state["url"]
            if self.path == "/.well-known/openid-configuration":
                self._json(200, {
                    "issuer": url,
                    "token_endpoint": f"{url}/token",
                    "jwks_uri": f"{url}/jwks",
                    "grant_types_supported": ["client_credentials"],
                    "scopes_supported": ["openid"],
                })  # fmt: skip
            elif self.path == "/jwks":
                self._json(200, {"keys": [jwk]})
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                form.setdefault("client_id", cid)
                form.setdefault("client_secret", secret)
            if self.path != "/token" or form.get("grant_type") != "client_credentials":
                self._json(400, {"error": "unsupported_grant_type"})
                return
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                self._json(401, {"error": "invalid_client"})
                return
            now = int(time.time())
            token = jwt.encode(
                {"iss": state["url"], "aud": AUDIENCE, "sub": subject, "iat": now,
                 "exp": now + 3600, "eoshare_member": member, "eoshare_roles": ["analyst"]},
                key, algorithm="RS256", headers={"kid": "k1"},
            )  # fmt: skip
            self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["url"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
