"""The one place that decides access (ARCHITECTURE.md, principle 2).

It answers two questions and nothing else does:

* which items may this principal see?  -> ``visible_filter``: a CQL2 JSON expression that
  every catalogue query ANDs in (None = everything);
* may this principal do this action on this asset, and at what resolution?  -> ``decide``:
  a ``Decision`` value (full / reduced(max resolution) / denied(reason)).

Every grant of bytes is written down with ``record``. Until members and agreements exist
(the agreements issue), ``OpenAccess`` answers "everything, in full" and keeps the audit
in the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

JSON = dict[str, Any]
log = logging.getLogger("eoshare.audit")


class Action(StrEnum):
    """What a caller wants to do with an item or an asset."""

    VIEW = "view"  # see the item's metadata
    THUMBNAIL = "thumbnail"
    TILE = "tile"  # map tiles, previews, point values, statistics
    DOWNLOAD = "download"  # the asset's bytes
    PROCESS = "process"  # use as a processing input


@dataclass(frozen=True)
class Principal:
    """Who is calling. Anonymous callers are the public."""

    user: str | None = None
    member: str | None = None
    country: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    # which credential the caller used ("t:<token id>", "s" session, "o" OIDC, "p" a peer
    # hub's word, "a" the admin token); signed links carry it so that they die with it.
    # Not part of equality.
    credential: str | None = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.user is None


ANONYMOUS = Principal()


@dataclass(frozen=True)
class Decision:
    """The answer for one action on one asset."""

    kind: Literal["full", "reduced", "denied"]
    max_resolution_m: float | None = None
    reason: str | None = None
    agreement: str | None = None
    # the disaster activation whose grant allows it (eoshare.access.grants), if any
    grant: str | None = None

    @classmethod
    def full(cls, agreement: str | None = None, grant: str | None = None) -> Decision:
        return cls("full", agreement=agreement, grant=grant)

    @classmethod
    def reduced(cls, max_resolution_m: float, agreement: str | None = None) -> Decision:
        return cls("reduced", max_resolution_m=max_resolution_m, agreement=agreement)

    @classmethod
    def denied(cls, reason: str, agreement: str | None = None) -> Decision:
        return cls("denied", reason=reason, agreement=agreement)

    @property
    def allowed(self) -> bool:
        return self.kind != "denied"


class AccessPolicy(Protocol):
    """Decides what a principal may see and get. Built once in ``create_app``."""

    def visible_filter(self, principal: Principal) -> JSON | None:
        """CQL2 JSON that limits catalogue queries to what ``principal`` may see, or None.
        Called by search, collection items, single items and every byte path."""
        ...

    def decide(
        self, principal: Principal, item: JSON, asset_key: str | None, action: Action
    ) -> Decision:
        """Whether ``principal`` may do ``action`` on an asset of a visible item, and at
        what resolution. Called by downloads, tiles, previews, thumbnails, processing."""
        ...

    def record(
        self,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: Action,
        decision: Decision,
        nbytes: int,
    ) -> None:
        """Write one grant of bytes to the audit log."""
        ...


def log_grant(
    principal: Principal,
    item: JSON,
    asset_key: str | None,
    action: Action,
    decision: Decision,
    nbytes: int,
) -> None:
    """One grant of bytes as a structured log line (every policy's ``record`` writes it)."""
    log.info(
        "grant",
        extra={
            "user": principal.user,
            "member": principal.member,
            "country": principal.country,
            "collection": item.get("collection"),
            "item": item.get("id"),
            "asset": asset_key,
            "action": str(action),
            "decision": decision.kind,
            "bytes": nbytes,
        },
    )


class OpenAccess:
    """Everything visible, everything in full; grants go to the structured log."""

    def visible_filter(self, principal: Principal) -> JSON | None:
        return None

    def decide(
        self, principal: Principal, item: JSON, asset_key: str | None, action: Action
    ) -> Decision:
        return Decision.full()

    def record(
        self,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: Action,
        decision: Decision,
        nbytes: int,
    ) -> None:
        log_grant(principal, item, asset_key, action, decision, nbytes)
