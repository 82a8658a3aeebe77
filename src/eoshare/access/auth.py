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
import time
from dataclasses import dataclass, replace

from eoshare.access.agreements import OPERATOR
from eoshare.access.base import ANONYMOUS, Principal
from eoshare.access.oidc import OidcVerifier, looks_like_jwt
from eoshare.access.policy import AgreementPolicy, principal_for
from eoshare.access.store import TOKEN_PREFIX, AccessStore
from eoshare.errors import AccessDeniedError, NotAuthenticatedError, NotFoundError

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
        # (user, credential) -> (access version, when, the answer)
        self._links: dict[
            tuple[str, str | None], tuple[int, float, Principal | NotAuthenticatedError]
        ] = {}

    def authenticate(self, creds: Credentials) -> Authenticated:
        if creds.authorization is not None:
            scheme, _, token = creds.authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise NotAuthenticatedError("use 'Authorization: Bearer <token>'")
            # an openEO client's header ('basic//TOKEN', 'oidc/PROVIDER/TOKEN') names the
            # same token: its session may reach result assets outside /openeo
            return self._bearer(plain_token(token))
        if creds.session:
            try:
                user = self.store.user_for_session(creds.session)
            except NotAuthenticatedError:
                return Authenticated(ANONYMOUS, "anonymous")
            principal = principal_for(user, self.policy.member(user.member))
            return Authenticated(replace(principal, credential="s"), "session")
        return Authenticated(ANONYMOUS, "anonymous")

    def _bearer(self, token: str) -> Authenticated:
        if not token:
            raise NotAuthenticatedError("use 'Authorization: Bearer <token>'")
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Authenticated(
                Principal(user=ADMIN_TOKEN_USER, roles=frozenset({OPERATOR}), credential="a"),
                "admin-token",
            )
        if token.startswith(TOKEN_PREFIX):
            user, token_id = self.store.user_and_token(token)
            principal = principal_for(user, self.policy.member(user.member))
            return Authenticated(replace(principal, credential=f"t:{token_id}"), "token")
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
                    credential="o",
                ),
                "oidc",
            )
        raise NotAuthenticatedError("the bearer token is not valid")

    # --- signed links -----------------------------------------------------------------
    def link_subject(self, signed: Principal) -> Principal:
        """The principal a signed link acts for, as it is *now*: the user must still
        exist and be enabled, and the token the link was made with must not be revoked
        or expired; roles and member come from the current record, not from the link.
        Raises AccessDeniedError (403) otherwise. Answers are cached for a few seconds
        (``LINK_CHECK_TTL_S``, for a token's expiry) and while the access version stays
        the same: a revocation by any process takes effect at the next request."""
        if signed.user is None or signed.credential in ("o", "p"):
            # a link made for the public grants what the public may get; an OIDC caller,
            # or a caller a trusted peer hub vouched for ("p", eoshare.federation.trust),
            # has no local record to check, and its link lives its (short) life
            return signed
        key = (signed.user, signed.credential)
        now = time.monotonic()
        # the access version changes with every revocation, removal or change of a user,
        # in any process; the policy reads it once per request (eoshare.freshness)
        version = self.policy.snapshot().version
        hit = self._links.get(key)
        if hit is not None and hit[0] == version and now - hit[1] < LINK_CHECK_TTL_S:
            return _checked(hit[2], signed)
        current: Principal | NotAuthenticatedError
        try:
            current = self._link_subject(signed)
        except NotAuthenticatedError as exc:
            current = exc
        if len(self._links) > 10_000:
            self._links.clear()
        self._links[key] = (version, now, current)
        return _checked(current, signed)

    def _link_subject(self, signed: Principal) -> Principal:
        credential = signed.credential or ""
        if credential == "a" or signed.user == ADMIN_TOKEN_USER:
            if credential != "a" or not self.admin_token:
                raise NotAuthenticatedError("the admin token it was made with is gone")
            return signed
        assert signed.user is not None
        try:
            user = self.store.get_user(signed.user)
        except NotFoundError as exc:
            raise NotAuthenticatedError("its user no longer exists") from exc
        if user.disabled:
            raise NotAuthenticatedError("its user is disabled")
        if credential.startswith("t:"):
            self.store.check_token(credential[2:])
        elif credential != "s":
            raise NotAuthenticatedError("it names no credential (made by an older version)")
        return replace(principal_for(user, self.policy.member(user.member)), credential=credential)


LINK_CHECK_TTL_S = 5.0


def _checked(current: Principal | NotAuthenticatedError, signed: Principal) -> Principal:
    if isinstance(current, NotAuthenticatedError):
        raise AccessDeniedError(
            f"the signed link is no longer valid: {current.detail}; ask for a new one"
        )
    return current


def plain_token(token: str) -> str:
    """The token inside openEO's bearer forms (``basic//TOKEN``, ``oidc/PROVIDER/TOKEN``)."""
    if token.startswith("basic//"):
        return token[len("basic//") :]
    if token.startswith("oidc/"):
        parts = token.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return token
