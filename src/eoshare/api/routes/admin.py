"""Administration: members, users, API tokens, agreements, acceptances and the history.

Operators manage everything. A provider-admin manages its own member's users (never
operators), their tokens, and the agreements of collections its member provides. Any
signed-in user may create and revoke their own tokens. Token secrets are shown once, in
the response that creates them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from eoshare.access.agreements import (
    OPERATOR,
    PROVIDER_ADMIN,
    Member,
    agreement_from_dict,
    check_roles,
)
from eoshare.access.apply import apply_declarations
from eoshare.access.base import Principal
from eoshare.access.policy import is_operator
from eoshare.api.deps import Caller
from eoshare.api.responses import JSONResponse
from eoshare.api.routes.auth import require_user, services
from eoshare.errors import (
    AccessDeniedError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
)

JSON = dict[str, Any]
router = APIRouter(prefix="/admin", tags=["Administration"])

AnyBody = Annotated[dict[str, Any], Body()]


def _operator(caller: Principal) -> str:
    who = require_user(caller)
    if not is_operator(caller):
        raise AccessDeniedError("this route is for operators")
    return who


def _manages_member(caller: Principal, member: str | None) -> str:
    """Operators, or a provider-admin of ``member``."""
    who = require_user(caller)
    if is_operator(caller):
        return who
    if PROVIDER_ADMIN in caller.roles and member is not None and caller.member == member:
        return who
    raise AccessDeniedError("only operators and the member's provider-admins may do this")


# --- members --------------------------------------------------------------------------
@router.get("/members", response_class=JSONResponse, summary="List members")
def list_members(request: Request, caller: Caller) -> JSONResponse:
    require_user(caller)
    return JSONResponse({"members": [m.to_dict() for m in services(request).store.list_members()]})


@router.put("/members/{code}", response_class=JSONResponse, summary="Create or change a member")
def put_member(request: Request, code: str, body: AnyBody, caller: Caller) -> JSONResponse:
    who = _operator(caller)
    member = Member.from_dict({**body, "code": code})
    return JSONResponse(services(request).store.put_member(member, who=who).to_dict())


@router.delete("/members/{code}", status_code=204, summary="Delete a member")
def delete_member(request: Request, code: str, caller: Caller) -> Response:
    services(request).store.delete_member(code, who=_operator(caller))
    return Response(status_code=204)


# --- users ----------------------------------------------------------------------------
@router.get("/users", response_class=JSONResponse, summary="List users")
def list_users(
    request: Request, caller: Caller, member: Annotated[str | None, Query()] = None
) -> JSONResponse:
    if not is_operator(caller):
        member = caller.member
        _manages_member(caller, member)
    users = services(request).store.list_users(member)
    return JSONResponse({"users": [u.to_dict() for u in users]})


@router.put("/users/{username}", response_class=JSONResponse, summary="Create or change a user")
def put_user(request: Request, username: str, body: AnyBody, caller: Caller) -> JSONResponse:
    member = body.get("member")
    roles = check_roles(body.get("roles", ["viewer"]))
    who = _manages_member(caller, member)
    store = services(request).store
    if not is_operator(caller):
        if OPERATOR in roles:
            raise AccessDeniedError("only operators may grant the operator role")
        existing = {u.username: u for u in store.list_users()}.get(username)
        if existing is not None and existing.member != caller.member:
            raise AccessDeniedError(f"user {username!r} belongs to another member")
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise InvalidRequestError("password must be text")
    user = store.put_user(
        username,
        member=member,
        roles=roles,
        password=password,
        disabled=bool(body.get("disabled", False)),
        who=who,
    )
    return JSONResponse(user.to_dict())


@router.delete("/users/{username}", status_code=204, summary="Delete a user")
def delete_user(request: Request, username: str, caller: Caller) -> Response:
    store = services(request).store
    user = store.get_user(username)
    store.delete_user(username, who=_manages_member(caller, user.member))
    return Response(status_code=204)


@router.post(
    "/users/{username}/unlock",
    response_class=JSONResponse,
    summary="Lift a sign-in lockout (after too many wrong passwords)",
)
def unlock_user(request: Request, username: str, caller: Caller) -> JSONResponse:
    svc = services(request)
    try:
        member = svc.store.get_user(username).member
    except NotFoundError:
        # a name that was guessed at but does not exist: operators only
        _operator(caller)
    else:
        _manages_member(caller, member)
    return JSONResponse({"username": username, "unlocked": svc.guard.unlock(username)})


# --- tokens ---------------------------------------------------------------------------
def _may_manage_user(request: Request, caller: Principal, username: str) -> str:
    who = require_user(caller)
    if who == username or is_operator(caller):
        return who
    user = services(request).store.get_user(username)
    return _manages_member(caller, user.member)


@router.post(
    "/users/{username}/tokens",
    status_code=201,
    response_class=JSONResponse,
    summary="Create an API token (its secret is shown once)",
)
def create_token(
    request: Request,
    username: str,
    caller: Caller,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> JSONResponse:
    who = _may_manage_user(request, caller, username)
    body = body or {}
    days = body.get("days", request.app.state.settings.access.token_days)
    if isinstance(days, bool) or not isinstance(days, int | float):
        raise InvalidRequestError("days must be a number")
    label = body.get("label")
    info, secret = services(request).store.create_token(
        username, days=float(days), label=str(label) if label else None, who=who
    )
    return JSONResponse({**info.to_dict(), "token": secret}, status_code=201)


@router.get("/tokens", response_class=JSONResponse, summary="List API tokens (never secrets)")
def list_tokens(
    request: Request, caller: Caller, username: Annotated[str | None, Query()] = None
) -> JSONResponse:
    who = require_user(caller)
    if not is_operator(caller):
        username = username or who
        _may_manage_user(request, caller, username)
    tokens = services(request).store.list_tokens(username)
    return JSONResponse({"tokens": [t.to_dict() for t in tokens]})


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
def revoke_token(request: Request, token_id: str, caller: Caller) -> Response:
    store = services(request).store
    info = store.get_token(token_id)
    who = _may_manage_user(request, caller, info.username)
    store.revoke_token(token_id, who=who)
    return Response(status_code=204)


# --- agreements -----------------------------------------------------------------------
@router.get("/agreements", response_class=JSONResponse, summary="List agreements")
def list_agreements(request: Request, caller: Caller) -> JSONResponse:
    require_user(caller)
    items = services(request).store.list_agreements()
    if not is_operator(caller):
        items = [a for a in items if a.provider == caller.member]
    return JSONResponse({"agreements": [a.to_dict() for a in items]})


def _hidden(request: Request, caller: Principal, collection_id: str) -> bool:
    """True when the collection is absent from the catalogue or hidden from the caller:
    the agreement routes then answer as for a collection that does not exist."""
    if request.app.state.access.collection_view(caller, collection_id) == "hidden":
        return True
    try:
        request.app.state.catalog.get_collection(collection_id)
    except NotFoundError:
        return True
    return False


@router.get("/agreements/{collection_id}", response_class=JSONResponse, summary="One agreement")
def get_agreement(request: Request, collection_id: str, caller: Caller) -> JSONResponse:
    require_user(caller)
    a = services(request).store.find_agreement(collection_id)
    if not is_operator(caller):
        mine = a is not None and PROVIDER_ADMIN in caller.roles and caller.member == a.provider
        if a is None or (not mine and _hidden(request, caller, collection_id)):
            # the same answer for a hidden collection as for an unknown one
            raise NotFoundError(f"collection {collection_id!r} has no agreement")
    if a is None:
        raise NotFoundError(f"collection {collection_id!r} has no agreement")
    _manages_member(caller, a.provider)
    return JSONResponse(a.to_dict())


@router.put(
    "/agreements/{collection_id}",
    response_class=JSONResponse,
    summary="Set the agreement of a collection",
)
def put_agreement(
    request: Request, collection_id: str, body: AnyBody, caller: Caller
) -> JSONResponse:
    store = services(request).store
    agreement = agreement_from_dict(body, collection=collection_id)
    current = store.find_agreement(collection_id)
    who = _manages_member(caller, agreement.provider)
    if not is_operator(caller) and _hidden(request, caller, collection_id):
        # providers set the terms of collections they can see (theirs exist once they
        # create them); hidden and unknown ids get the same answer
        raise NotFoundError(f"collection {collection_id!r} does not exist")
    if current is not None and current.provider != agreement.provider:
        # handing a collection to another member is an operator's decision
        _operator(caller)
    saved = store.put_agreement(agreement, who=who)
    request.app.state.access.invalidate()
    return JSONResponse(saved.to_dict())


@router.delete(
    "/agreements/{collection_id}", status_code=204, summary="Remove a collection's agreement"
)
def delete_agreement(request: Request, collection_id: str, caller: Caller) -> Response:
    services(request).store.delete_agreement(collection_id, who=_operator(caller))
    request.app.state.access.invalidate()
    return Response(status_code=204)


@router.post(
    "/apply", response_class=JSONResponse, summary="Apply declarations (members, users, agreements)"
)
def apply(
    request: Request,
    body: AnyBody,
    caller: Caller,
    dry_run: Annotated[bool, Query(alias="dry-run")] = False,
) -> JSONResponse:
    who = _operator(caller)
    report = apply_declarations(services(request).store, body, who=who, dry_run=dry_run)
    request.app.state.access.invalidate()
    return JSONResponse(
        {"changes": report.changes, "unchanged": report.unchanged, "dry_run": dry_run}
    )


# --- acceptances and history ----------------------------------------------------------
@router.get("/acceptances", response_class=JSONResponse, summary="Acceptances of terms")
def list_acceptances(
    request: Request, caller: Caller, username: Annotated[str | None, Query()] = None
) -> JSONResponse:
    who = require_user(caller)
    if not is_operator(caller):
        username = who
    return JSONResponse({"acceptances": services(request).store.list_acceptances(username)})


@router.get("/history", response_class=JSONResponse, summary="Who changed what, when")
def history(
    request: Request,
    caller: Caller,
    subject: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    _operator(caller)
    return JSONResponse({"history": services(request).store.history(subject=subject, limit=limit)})


__all__ = ["NotAuthenticatedError", "router"]
