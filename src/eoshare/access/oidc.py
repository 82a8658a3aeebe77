"""Verification of external OpenID Connect access tokens (JWTs).

Each configured provider (an agency's own identity provider) names its issuer, the
audience tokens must carry, and its keys (a JWKS file or URL). Only asymmetric
algorithms are accepted, chosen by the configuration, never by the token: ``alg: none``
and HS256 signed with a public key are refused. Claims map to a member (fixed per
provider, or from a claim) and roles (from a claim, limited to ``allowed_roles``).

Errors say what is wrong with the token and never repeat it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import jwt

from eoshare.access.agreements import ROLES, check_code
from eoshare.errors import InvalidRequestError, NotAuthenticatedError
from eoshare.settings import OidcProviderSettings

log = logging.getLogger("eoshare.auth")

_ASYMMETRIC = {
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
}


# a user name from a token becomes part of ours (oidc:<host>:<sub>), logged and stored
_MAX_CLAIM_CHARS = 256


@dataclass(frozen=True)
class OidcIdentity:
    username: str
    member: str | None
    roles: frozenset[str]
    issuer: str


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


class OidcVerifier:
    """Verifies tokens from the configured identity providers."""

    def __init__(self, providers: list[OidcProviderSettings]) -> None:
        self.providers = {p.issuer: p for p in providers}
        self._file_keys: dict[str, jwt.PyJWKSet] = {}
        self._clients: dict[str, jwt.PyJWKClient] = {}
        for p in providers:
            bad = sorted(set(p.algorithms) - _ASYMMETRIC)
            if bad:
                raise ValueError(f"OIDC provider {p.issuer}: refused algorithms {bad}")
            if p.jwks_file is not None:
                self._file_keys[p.issuer] = jwt.PyJWKSet.from_dict(
                    json.loads(p.jwks_file.read_text())
                )
            elif p.jwks_url:
                self._clients[p.issuer] = jwt.PyJWKClient(p.jwks_url, cache_keys=True)
            else:
                raise ValueError(f"OIDC provider {p.issuer}: set jwks_file or jwks_url")

    def __bool__(self) -> bool:
        return bool(self.providers)

    def _key(self, p: OidcProviderSettings, token: str, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if p.issuer in self._clients:
            try:
                return self._clients[p.issuer].get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise NotAuthenticatedError(
                    "the access token's signing key is not known to its issuer"
                ) from exc
        keys = self._file_keys[p.issuer].keys
        for k in keys:
            if kid is None and len(keys) == 1:
                return k.key
            if k.key_id == kid:
                return k.key
        raise NotAuthenticatedError("the access token's signing key is not known to its issuer")

    def verify(self, token: str) -> OidcIdentity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise NotAuthenticatedError("the bearer token is not a well-formed JWT") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in _ASYMMETRIC:
            raise NotAuthenticatedError("the access token's signing algorithm is not accepted")
        p = self.providers.get(str(unverified.get("iss")))
        if p is None:
            raise NotAuthenticatedError("the access token's issuer is not trusted here")
        if alg not in p.algorithms:
            raise NotAuthenticatedError("the access token's signing algorithm is not accepted")
        key = self._key(p, token, header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=p.audience,
                issuer=p.issuer,
                leeway=p.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise NotAuthenticatedError("the access token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise NotAuthenticatedError("the access token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise NotAuthenticatedError("the access token is not meant for this node") from exc
        except jwt.InvalidIssuerError as exc:
            raise NotAuthenticatedError("the access token's issuer is not trusted here") from exc
        except jwt.InvalidSignatureError as exc:
            raise NotAuthenticatedError("the access token's signature is not valid") from exc
        except jwt.PyJWTError as exc:
            raise NotAuthenticatedError(
                f"the access token is not valid ({type(exc).__name__})"
            ) from exc
        return self._identity(p, claims)

    @staticmethod
    def _identity(p: OidcProviderSettings, claims: dict[str, Any]) -> OidcIdentity:
        sub = claims.get(p.username_claim)
        if not isinstance(sub, str) or not sub:
            raise NotAuthenticatedError(f"the access token has no {p.username_claim!r} claim")
        if len(sub) > _MAX_CLAIM_CHARS:
            raise NotAuthenticatedError(
                f"the access token's {p.username_claim!r} claim is too long"
            )
        member = p.member
        if member is None:
            raw = claims.get(p.member_claim)
            if raw is not None and not isinstance(raw, str):
                # a list, a number, an object: a token this node cannot place
                raise NotAuthenticatedError(
                    f"the access token's {p.member_claim!r} claim must be a member code"
                )
            try:
                member = check_code(raw, "member claim") if raw else None
            except InvalidRequestError as exc:
                raise NotAuthenticatedError(
                    f"the access token's {p.member_claim!r} claim is not a valid member code"
                ) from exc
        raw_roles = claims.get(p.roles_claim) or []
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        if not isinstance(raw_roles, list):
            raise NotAuthenticatedError(
                f"the access token's {p.roles_claim!r} claim must be a list of role names"
            )
        roles = frozenset(
            r for r in raw_roles if isinstance(r, str) and r in ROLES and r in p.allowed_roles
        )
        if member is None:
            roles -= {"provider-admin"}
        host = p.issuer.split("://", 1)[-1].rstrip("/")
        return OidcIdentity(f"oidc:{host}:{sub}", member, roles or frozenset({"viewer"}), p.issuer)
