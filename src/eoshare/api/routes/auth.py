"""Authentication on the HTTP side: the middleware that sets ``request.state.principal``,
browser sign-in (a secure, HTTP-only session cookie), ``/auth/me``, acceptance of an
agreement's terms, and the decorators that show each caller the agreement of a
collection and their own rights on each asset.

CSRF: a cookie is sent by the browser on its own, so writes authenticated by the session
cookie must also prove they come from our pages: the cookie is ``SameSite=Lax`` (no
cross-site POST carries it), and such writes need an ``Origin`` that is this node or an
``X-Requested-With`` header (which a cross-site form cannot set without a CORS
preflight, which we never grant). Bearer-token requests are not exposed to CSRF.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import APIRouter, Body, Request
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eoshare.access.auth import Authenticator, Credentials
from eoshare.access.base import Action, Principal
from eoshare.access.oidc import looks_like_jwt
from eoshare.access.policy import AgreementPolicy, is_operator, principal_for
from eoshare.access.service import AccessServices
from eoshare.api import errors
from eoshare.api.deps import Caller, Catalog
from eoshare.api.responses import JSONResponse
from eoshare.errors import (
    EoshareError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)

JSON = dict[str, Any]
log = logging.getLogger("eoshare.auth")
router = APIRouter(tags=["Authentication"])

_SAFE = {"GET", "HEAD", "OPTIONS"}
_CSRF_EXEMPT = {"/auth/login"}


class AuthMiddleware:
    """Sets ``scope['state']['principal']`` (read by ``deps.get_principal``) for every
    HTTP request; answers 401 problems for bad credentials."""

    def __init__(self, app: ASGIApp, auth: Authenticator, cookie_name: str) -> None:
        self.app = app
        self.auth = auth
        self.cookie_name = cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        creds = Credentials(
            authorization=headers.get("authorization"),
            session=_cookie(headers.get("cookie", ""), self.cookie_name),
        )
        try:
            if creds.authorization and looks_like_jwt(creds.authorization.partition(" ")[2]):
                # a JWKS URL may be fetched: keep the event loop free
                result = await to_thread.run_sync(self.auth.authenticate, creds)
            else:
                result = self.auth.authenticate(creds)
        except NotAuthenticatedError as exc:
            log.info("authentication refused", extra={"path": scope["path"], "why": exc.detail})
            response = errors.problem(401, exc.detail, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        except EoshareError as exc:
            # any other refusal below (a malformed claim, a store that failed) is answered
            # as the status table says, never as a bare 500
            status = errors.status_of(exc)
            log.info("authentication failed", extra={"path": scope["path"], "why": exc.detail})
            challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await errors.problem(status, exc.detail, headers=challenge)(scope, receive, send)
            return
        except Exception:
            # a bug: logged with its stack, answered without it
            log.exception("authentication crashed", extra={"path": scope["path"]})
            response = errors.problem(500, "an unexpected error occurred; it has been logged")
            await response(scope, receive, send)
            return
        if (
            result.via == "session"
            and scope["method"] not in _SAFE
            and scope["path"] not in _CSRF_EXEMPT
            and not _same_origin(headers)
        ):
            response = errors.problem(
                403,
                "a write authenticated by the session cookie needs an Origin header of this "
                "node or an X-Requested-With header (CSRF protection)",
            )
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = result.principal
        state["auth_via"] = result.via
        await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _same_origin(headers: Headers) -> bool:
    if headers.get("x-requested-with"):
        return True
    origin = headers.get("origin")
    if not origin:
        return False
    return urlsplit(origin).netloc == headers.get("host", "")


def services(request: Request) -> AccessServices:
    svc: AccessServices = request.app.state.access_services
    return svc


def require_user(caller: Principal) -> str:
    if caller.user is None:
        raise NotAuthenticatedError("sign in first: this route needs a user")
    return caller.user


# --- decorators -----------------------------------------------------------------------
def decorate_item(request: Request, base: str, item: JSON) -> JSON:
    """Per-asset hints for the UI: ``eoshare:access`` with the caller's decision."""
    policy: AgreementPolicy = request.app.state.access
    caller: Principal = request.state.principal
    assets = item.get("assets")
    if not isinstance(assets, dict):
        return item
    out = dict(item)
    new_assets = {}
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            new_assets[key] = asset
            continue
        roles = asset.get("roles")
        action = (
            Action.THUMBNAIL
            if isinstance(roles, list) and "thumbnail" in roles
            else Action.DOWNLOAD
        )
        d = policy.decide(caller, item, key, action)
        if d.kind == "reduced" and action == Action.THUMBNAIL:
            new_assets[key] = {
                **asset,
                "eoshare:access": {"decision": "reduced", "max_resolution_m": d.max_resolution_m},
            }
            continue
        if d.kind == "denied":
            tile = policy.decide(caller, item, key, Action.TILE)
            hint: JSON = {"decision": "reduced" if tile.kind == "reduced" else "denied"}
            if tile.max_resolution_m is not None:
                hint["max_resolution_m"] = tile.max_resolution_m
            hint["reason"] = d.reason
        else:
            hint = {"decision": d.kind}
        new_assets[key] = {**asset, "eoshare:access": hint}
    out["assets"] = new_assets
    return out


# Fields of a collection computed from its items: hidden when the caller sees only some.
_ITEM_DERIVED = ("summaries", "item_assets_count", "eoshare:item_count")
WORLD_EXTENT: JSON = {
    "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
    "temporal": {"interval": [[None, None]]},
}


def decorate_collection(request: Request, base: str, collection: JSON) -> JSON | None:
    """``eoshare:agreement`` in plain words; None when the caller may not see it at all;
    item-derived fields removed when the caller sees only part of its items."""
    policy: AgreementPolicy = request.app.state.access
    caller: Principal = request.state.principal
    cid = str(collection.get("id", ""))
    view = policy.collection_view(caller, cid)
    if view == "hidden":
        return None
    out = dict(collection)
    a = policy.agreement(cid)
    if a is not None:
        agreement = a.public_view()
        if caller.user is not None and a.terms:
            agreement["terms_accepted"] = policy.store.has_accepted(caller.user, cid, a.terms)
        out["eoshare:agreement"] = agreement
    else:
        out["eoshare:agreement"] = {
            "access": "open",
            "summary": "No agreement recorded: open to everyone on this node.",
            "licence": collection.get("license"),
            "embargo_days": None,
            "reduced_resolution_m": None,
            "terms": None,
        }
    if view == "partial":
        for key in _ITEM_DERIVED:
            out.pop(key, None)
        out["extent"] = WORLD_EXTENT
    return out


# --- routes ---------------------------------------------------------------------------
@router.post("/auth/login", response_class=JSONResponse, summary="Sign in (browser session)")
def login(
    request: Request,
    username: Annotated[str, Body()],
    password: Annotated[str, Body()],
) -> Response:
    """Checks the password and sets an HTTP-only session cookie."""
    svc = services(request)
    settings = request.app.state.settings
    address = request.client.host if request.client else None
    try:
        # a locked account or a noisy address is refused before any password is hashed
        user = svc.sign_in(username, password, address)
    except NotAuthenticatedError:
        log.info("sign-in refused", extra={"user": username[:64], "client": address})
        raise
    secret = svc.store.create_session(user.username, ttl_s=settings.access.session_ttl_s)
    principal = principal_for(user, svc.policy.member(user.member))
    response = JSONResponse(_me(principal, "session"))
    response.set_cookie(
        settings.access.cookie_name,
        secret,
        max_age=settings.access.session_ttl_s,
        httponly=True,
        secure=settings.access.cookie_secure,
        samesite="lax",
        path="/",
    )
    log.info("signed in", extra={"user": user.username, "member": user.member})
    return response


@router.post("/auth/logout", status_code=204, summary="Sign out")
def logout(request: Request) -> Response:
    settings = request.app.state.settings
    secret = request.cookies.get(settings.access.cookie_name)
    if secret:
        services(request).store.delete_session(secret)
    response = Response(status_code=204)
    response.delete_cookie(
        settings.access.cookie_name,
        path="/",
        httponly=True,
        secure=settings.access.cookie_secure,
        samesite="lax",
    )
    return response


def _me(caller: Principal, via: str) -> JSON:
    return {
        "user": caller.user,
        "member": caller.member,
        "country": caller.country,
        "roles": sorted(caller.roles),
        "anonymous": caller.anonymous,
        "operator": is_operator(caller),
        "via": via,
    }


@router.get("/auth/me", response_class=JSONResponse, summary="Who am I")
def me(request: Request, caller: Caller) -> JSONResponse:
    return JSONResponse(_me(caller, getattr(request.state, "auth_via", "anonymous")))


@router.post(
    "/collections/{collection_id}/accept-terms",
    response_class=JSONResponse,
    summary="Accept the terms of a collection's agreement",
)
def accept_terms(
    request: Request, collection_id: str, caller: Caller, catalog: Catalog
) -> JSONResponse:
    """Recorded once per user (and again if the terms change)."""
    user = require_user(caller)
    policy: AgreementPolicy = request.app.state.access
    if policy.collection_view(caller, collection_id) == "hidden":
        raise NotFoundError(f"collection {collection_id!r} does not exist")
    catalog.get_collection(collection_id)
    a = policy.agreement(collection_id)
    if a is None or not a.terms:
        raise InvalidRequestError(f"collection {collection_id!r} has no terms to accept")
    if caller.member == a.provider:
        raise InvalidRequestError("the provider's own users need not accept its terms")
    return JSONResponse(
        {**services(request).store.accept_terms(user, collection_id), "terms": a.terms}
    )
