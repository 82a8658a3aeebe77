"""FastAPI dependencies: the services built once in ``create_app`` and the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from eoshare.access import ANONYMOUS, Principal
from eoshare.access import AccessPolicy as AccessBackend
from eoshare.access.egress import AssetGate
from eoshare.catalog.base import Catalog as CatalogBackend
from eoshare.catalog.validate import check_new_id
from eoshare.errors import AccessDeniedError, NotAuthenticatedError, NotFoundError
from eoshare.settings import Settings as SettingsModel
from eoshare.storage.base import Store as StoreBackend


# The getters are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in the
# thread pool, and a thread hop per dependency per request (~0.1 ms each) was most of
# the cost of answering a cached map tile.
async def get_catalog(request: Request) -> CatalogBackend:
    catalog: CatalogBackend = request.app.state.catalog
    return catalog


async def get_store(request: Request) -> StoreBackend:
    store: StoreBackend = request.app.state.store
    return store


async def get_settings(request: Request) -> SettingsModel:
    settings: SettingsModel = request.app.state.settings
    return settings


async def get_access(request: Request) -> AccessBackend:
    access: AccessBackend = request.app.state.access
    return access


async def get_gate(request: Request) -> AssetGate:
    gate: AssetGate = request.app.state.gate
    return gate


def principal_of(request: Request) -> Principal:
    """Who is calling: set by the authentication middleware; anonymous otherwise."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal


async def get_principal(request: Request) -> Principal:
    return principal_of(request)


Catalog = Annotated[CatalogBackend, Depends(get_catalog)]
Access = Annotated[AccessBackend, Depends(get_access)]
Caller = Annotated[Principal, Depends(get_principal)]
Store = Annotated[StoreBackend, Depends(get_store)]
Settings = Annotated[SettingsModel, Depends(get_settings)]
# the one path for bytes (eoshare.access.egress): every byte route asks it
Gate = Annotated[AssetGate, Depends(get_gate)]


async def require_admin(request: Request) -> None:
    """Publishing rights for the transaction routes: operators (the configured admin
    token is one, for backwards compatibility) and the provider-admins of the member that
    owns the collection (its agreement's provider). A provider-admin who creates a new
    collection makes its member the provider."""
    principal = principal_of(request)
    if principal.anonymous:
        raise NotAuthenticatedError("this route needs 'Authorization: Bearer <token>'")
    cid = request.path_params.get("collection_id")
    if cid is None and request.method == "POST":
        # POST /collections: the id is in the body (already read and cached by FastAPI)
        try:
            body = await request.json()
        except ValueError:
            body = None
        cid = body.get("id") if isinstance(body, dict) else None
    if isinstance(cid, str) and "collection_id" not in request.path_params:
        # a new collection's id names folders and store keys: refuse a bad one before
        # anything (its agreement) is written
        check_new_id(cid, "the collection's 'id'")
    check = getattr(request.app.state.access, "check_publish", None)
    if check is None:  # a policy without publishing rights: operators only
        if "operator" not in principal.roles:
            raise AccessDeniedError("publishing is for operators on this node")
        return
    catalog: CatalogBackend = request.app.state.catalog
    exists = False
    if isinstance(cid, str) and cid:
        try:
            await run_in_threadpool(catalog.get_collection, cid)
            exists = True
        except NotFoundError:
            exists = False
    settings: SettingsModel = request.app.state.settings
    await run_in_threadpool(
        check,
        principal,
        cid if isinstance(cid, str) else None,
        exists=exists,
        creating=request.method == "POST" and "collection_id" not in request.path_params,
        new_access=settings.access.new_collection_access,
    )


Admin = Annotated[None, Depends(require_admin)]
