"""Building the access services from settings (``create_app`` and the CLI share it)."""

from __future__ import annotations

from dataclasses import dataclass

from eoshare.access.agreements import User
from eoshare.access.auth import Authenticator
from eoshare.access.oidc import OidcVerifier
from eoshare.access.policy import AgreementPolicy
from eoshare.access.quotas import Quotas
from eoshare.access.ratelimit import LoginGuard
from eoshare.access.store import AccessStore
from eoshare.errors import InvalidRequestError, NotAuthenticatedError
from eoshare.settings import Settings


@dataclass
class AccessServices:
    store: AccessStore
    policy: AgreementPolicy
    auth: Authenticator
    quotas: Quotas
    # brute-force protection of password sign-in (eoshare.access.ratelimit)
    guard: LoginGuard

    def sign_in(self, username: str, password: str, address: str | None) -> User:
        """Check a user's password: browser sign-in and openEO Basic credentials both come
        here. A locked account or a noisy address is refused (RateLimitedError) before any
        password is hashed; a wrong password is counted."""
        self.guard.check(username, address)
        try:
            user = self.store.verify_password(username, password)
        except NotAuthenticatedError:
            self.guard.failed(username, address)
            raise
        self.guard.succeeded(user.username)
        return user

    def close(self) -> None:
        self.guard.close()
        self.store.close()


def open_access(settings: Settings, *, with_oidc: bool = True) -> AccessServices:
    if settings.access.unlisted not in ("open", "operators"):
        raise InvalidRequestError("EOSHARE_ACCESS__UNLISTED is 'open' or 'operators'")
    if settings.access.new_collection_access not in ("open", "members", "partners", "provider"):
        raise InvalidRequestError(
            "EOSHARE_ACCESS__NEW_COLLECTION_ACCESS is open, members, partners or provider"
        )
    store = AccessStore(settings.state_db(settings.access_db_path))
    policy = AgreementPolicy(store, unlisted=settings.access.unlisted)
    oidc = None
    if with_oidc and settings.access.oidc:
        try:
            oidc = OidcVerifier(settings.access.oidc)
        except (OSError, ValueError) as exc:
            store.close()
            raise InvalidRequestError(f"OIDC settings: {exc}") from exc
    auth = Authenticator(store, policy, admin_token=settings.api.admin_token, oidc=oidc)
    sec = settings.security
    guard = LoginGuard(
        settings.state_db(settings.access_db_path),
        max_failures=sec.login_max_failures,
        lockout_s=sec.lockout_s,
        max_failures_per_address=sec.login_max_failures_per_address,
        window_s=sec.login_window_s,
    )
    return AccessServices(store, policy, auth, Quotas(store, policy), guard)
