"""Members, principals, agreements and the decisions made from them."""

from __future__ import annotations

from eoshare.access.base import (
    ANONYMOUS,
    AccessPolicy,
    Action,
    Decision,
    OpenAccess,
    Principal,
)

__all__ = ["ANONYMOUS", "AccessPolicy", "Action", "Decision", "OpenAccess", "Principal"]
