"""The agreements' rules written out plainly, independently of ``eoshare.access.policy``:
what the tests expect each caller to see and get."""

from __future__ import annotations

from typing import Any, Literal

JSON = dict[str, Any]


def full_rights(
    *, member: str | None, operator: bool, provider: str, a: JSON, age_days: float
) -> bool:
    if operator or a.get("access") == "open":
        return True
    if member is not None:
        if member == provider or a.get("access") == "members":
            return True
        if a.get("access") == "partners" and member in a.get("partners", []):
            return True
    days = a.get("embargo_days")
    if days is not None and age_days >= days:
        return a.get("embargo_opens_to", "public") == "public" or member is not None
    return False


def visible(*, member: str | None, operator: bool, provider: str, a: JSON, age_days: float) -> bool:
    if a.get("reduced_resolution_m") is not None:
        return True
    return full_rights(member=member, operator=operator, provider=provider, a=a, age_days=age_days)


def collection_view(
    *, member: str | None, operator: bool, provider: str, a: JSON
) -> Literal["full", "partial", "hidden"]:
    """All items visible whatever their age, some (an embargo), or none."""
    young = visible(member=member, operator=operator, provider=provider, a=a, age_days=0)
    if young:
        return "full"
    old = visible(member=member, operator=operator, provider=provider, a=a, age_days=1e6)
    return "partial" if old else "hidden"


def download(
    *,
    user: str | None,
    member: str | None,
    operator: bool,
    provider: str,
    a: JSON,
    age_days: float,
    accepted: bool,
) -> Literal["full", "reduced", "denied"]:
    """The decision on a download, as the item's asset hint shows it."""
    if full_rights(member=member, operator=operator, provider=provider, a=a, age_days=age_days):
        if a.get("terms") and not operator and member != provider and not (user and accepted):
            return "denied"
        return "full"
    if a.get("reduced_resolution_m") is not None:
        return "reduced"
    return "denied"


def pictures(
    *, member: str | None, operator: bool, provider: str, a: JSON, age_days: float
) -> Literal["full", "reduced", "hidden"]:
    """The decision on map tiles, previews, point values, statistics and mosaics: whoever
    sees the item gets pictures (terms to accept are for files, not pictures), at full
    resolution with full rights, else no finer than the agreement's reduced resolution."""
    if not visible(member=member, operator=operator, provider=provider, a=a, age_days=age_days):
        return "hidden"
    if full_rights(member=member, operator=operator, provider=provider, a=a, age_days=age_days):
        return "full"
    return "reduced"
