"""FastAPI dependencies: the services built once in ``create_app`` and the caller."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from eoshare.access import ANONYMOUS, Principal
from eoshare.access import AccessPolicy as AccessBackend
from eoshare.catalog.base import Catalog as CatalogBackend
from eoshare.errors import AccessDeniedError, NotAuthenticatedError
from eoshare.settings import Settings as SettingsModel
from eoshare.storage.base import Store as StoreBackend


def get_catalog(request: Request) -> CatalogBackend:
    catalog: CatalogBackend = request.app.state.catalog
    return catalog


def get_store(request: Request) -> StoreBackend:
    store: StoreBackend = request.app.state.store
    return store


def get_settings(request: Request) -> SettingsModel:
    settings: SettingsModel = request.app.state.settings
    return settings


def get_access(request: Request) -> AccessBackend:
    access: AccessBackend = request.app.state.access
    return access


def get_principal(request: Request) -> Principal:
    """Who is calling. Anonymous until authentication exists (the agreements issue)."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    return principal


Catalog = Annotated[CatalogBackend, Depends(get_catalog)]
Access = Annotated[AccessBackend, Depends(get_access)]
Caller = Annotated[Principal, Depends(get_principal)]
Store = Annotated[StoreBackend, Depends(get_store)]
Settings = Annotated[SettingsModel, Depends(get_settings)]


def require_admin(request: Request) -> None:
    """Write routes need the configured admin token (until members and roles exist)."""
    settings: SettingsModel = request.app.state.settings
    expected = settings.api.admin_token
    if not expected:
        raise AccessDeniedError(
            "transactions are disabled on this node: set EOSHARE_API__ADMIN_TOKEN to enable them"
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticatedError("this route needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise NotAuthenticatedError("the bearer token is not valid")


Admin = Annotated[None, Depends(require_admin)]
