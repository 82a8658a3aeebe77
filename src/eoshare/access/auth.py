"""Who is calling: API tokens, browser sessions, external OIDC tokens, the static admin
token. ``Authenticator.principal`` turns the credentials of a request into a
``Principal`` or raises ``NotAuthenticatedError`` (a 401) saying why, never echoing them.

Order: ``Authorization: Bearer`` wins over the session cookie. A bearer credential is
the configured admin token (an operator, kept for backwards compatibility), an eoshare
API token (``eos_<id>_<secret>``), or a JWT from a configured OIDC provider. A session
cookie that has expired is ignored (the caller is anonymous), so that an old cookie never
locks a browser out of public pages.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from eoshare.access.agreements import OPERATOR
from eoshare.access.base import ANONYMOUS, Principal
from eoshare.access.oidc import OidcVerifier, looks_like_jwt
from eoshare.access.policy import AgreementPolicy, principal_for
from eoshare.access.store import TOKEN_PREFIX, AccessStore
from eoshare.errors import NotAuthenticatedError

ADMIN_TOKEN_USER = "admin-token"


@dataclass(frozen=True)
class Credentials:
    """What the request carried (the secrets stay here, never in logs)."""

    authorization: str | None = None
    session: str | None = None


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    # "anonymous", "admin-token", "token", "oidc", "session"
    via: str


class Authenticator:
    """Built once in ``create_app``; called for every request."""

    def __init__(
        self,
        store: AccessStore,
        policy: AgreementPolicy,
        *,
        admin_token: str | None,
        oidc: OidcVerifier | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.admin_token = admin_token
        self.oidc = oidc

    def authenticate(self, creds: Credentials) -> Authenticated:
        if creds.authorization is not None:
            scheme, _, token = creds.authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise NotAuthenticatedError("use 'Authorization: Bearer <token>'")
            return self._bearer(token)
        if creds.session:
            try:
                user = self.store.user_for_session(creds.session)
            except NotAuthenticatedError:
                return Authenticated(ANONYMOUS, "anonymous")
            return Authenticated(principal_for(user, self.policy.member(user.member)), "session")
        return Authenticated(ANONYMOUS, "anonymous")

    def _bearer(self, token: str) -> Authenticated:
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Authenticated(
                Principal(user=ADMIN_TOKEN_USER, roles=frozenset({OPERATOR})), "admin-token"
            )
        if token.startswith(TOKEN_PREFIX):
            user = self.store.user_for_token(token)
            return Authenticated(principal_for(user, self.policy.member(user.member)), "token")
        if self.oidc and looks_like_jwt(token):
            ident = self.oidc.verify(token)
            member = self.policy.member(ident.member)
            if ident.member is not None and member is None:
                raise NotAuthenticatedError("the access token names a member unknown here")
            return Authenticated(
                Principal(
                    user=ident.username,
                    member=ident.member,
                    country=member.country if member else None,
                    roles=ident.roles,
                ),
                "oidc",
            )
        raise NotAuthenticatedError("the bearer token is not valid")
