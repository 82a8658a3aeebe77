"""Time-boxed grants that the access policy honours beside the agreements: a disaster
activation's release of data (``eoshare.disaster``).

A grant never edits an agreement. The policy asks its ``GrantSource`` which grants exist
and applies one only when all of these hold at the moment of the request:

* the caller is a beneficiary (a user of one of its members, or one of its named users);
* the instant lies in ``[starts, ends)`` (``ends`` None: until closed);
* the item's collection's agreement has ``disaster_release``;
* the item intersects the grant's area and was acquired within ``[window_start,
  window_end]``.

Every byte handed out under a grant is recorded against the grant's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from eoshare.access.base import Principal

JSON = dict[str, Any]


@dataclass(frozen=True)
class DisasterGrant:
    """Full access over an area and a period of acquisition, for some members and users,
    from ``starts`` until ``ends`` (exclusive; None: until revoked)."""

    id: str
    area: JSON  # a GeoJSON geometry (lon/lat)
    window_start: datetime
    window_end: datetime
    starts: datetime
    ends: datetime | None = None
    members: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)
    revision: int = 0

    def benefits(self, principal: Principal) -> bool:
        if principal.user is not None and principal.user in self.users:
            return True
        return principal.member is not None and principal.member in self.members

    def live_at(self, instant: datetime) -> bool:
        return self.starts <= instant and (self.ends is None or instant < self.ends)

    @cached_property
    def geometry(self) -> Any:
        # shapely loads with the first grant's area, not with every command and node
        import shapely
        from shapely.geometry import shape

        geom = shape(self.area)
        shapely.prepare(geom)
        return geom

    def covers_item(self, item: JSON, acquired: datetime | None) -> bool:
        """The item intersects the area and was acquired within the window."""
        if acquired is None or not (self.window_start <= acquired <= self.window_end):
            return False
        import shapely
        from shapely.geometry import shape

        geometry = item.get("geometry")
        if isinstance(geometry, dict):
            try:
                return bool(self.geometry.intersects(shape(geometry)))
            except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError):
                return False
        bbox = item.get("bbox")
        if isinstance(bbox, list) and len(bbox) in (4, 6):
            corners = bbox if len(bbox) == 4 else [bbox[0], bbox[1], bbox[3], bbox[4]]
            return bool(self.geometry.intersects(shapely.box(*corners)))
        return False


class GrantSource(Protocol):
    """Where the policy finds the grants (the disaster activations service)."""

    def grants(self) -> Sequence[DisasterGrant]:
        """Every grant that is or may become live (approved, not closed). Called by the
        policy on every decision and visibility filter: it must be cheap (cached)."""
        ...

    def record_grant(
        self,
        grant_id: str,
        principal: Principal,
        item: JSON,
        asset_key: str | None,
        action: str,
        nbytes: int,
    ) -> None:
        """Write one grant of bytes under a grant to that grant's audit."""
        ...
