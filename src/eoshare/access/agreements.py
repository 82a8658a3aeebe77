"""Members, users and sharing agreements as plain values (no I/O here).

An ``Agreement`` is keyed by collection id and set by the collection's provider (its
owning member). ``agreement_from_dict``/``Agreement.to_dict`` are the one way in and out,
used by the store, the admin API, the CLI and ``eoshare apply``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

from eoshare.errors import InvalidRequestError

JSON = dict[str, Any]

AccessLevel = Literal["open", "members", "partners", "provider"]
ACCESS_LEVELS: tuple[AccessLevel, ...] = ("open", "members", "partners", "provider")
EmbargoOpensTo = Literal["public", "members"]

VIEWER = "viewer"
ANALYST = "analyst"
PROVIDER_ADMIN = "provider-admin"
OPERATOR = "operator"
# a member's authorised user who may request disaster activations (eoshare.disaster)
EMERGENCY_FOCAL_POINT = "emergency-focal-point"
ROLES = (VIEWER, ANALYST, PROVIDER_ADMIN, OPERATOR, EMERGENCY_FOCAL_POINT)

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_code(value: Any, what: str) -> str:
    """A member code or user name: lower-case letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not _CODE.match(value):
        raise InvalidRequestError(
            f"{what} must be 1-64 characters of a-z, 0-9, '_', '.', '-' "
            f"(starting with a letter or digit), got {str(value)[:80]!r}"
        )
    return value


def check_roles(values: Any) -> frozenset[str]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v]
    if not isinstance(values, list | tuple | set | frozenset):
        raise InvalidRequestError("roles must be a list of role names")
    out = frozenset(str(v).strip() for v in values)
    unknown = sorted(out - set(ROLES))
    if unknown:
        raise InvalidRequestError(
            f"unknown role(s) {', '.join(unknown)}; known roles: {', '.join(ROLES)}"
        )
    return out


@dataclass(frozen=True)
class Member:
    """An agency of a country that publishes or uses data."""

    code: str
    name: str
    country: str  # ISO 3166-1 alpha-2

    @classmethod
    def from_dict(cls, d: JSON) -> Member:
        code = check_code(d.get("code"), "member code")
        name = d.get("name") or code
        country = str(d.get("country", "")).upper()
        if not _COUNTRY.match(country):
            raise InvalidRequestError(
                f"member {code!r}: country must be an ISO 3166-1 alpha-2 code such as 'KE'"
            )
        return cls(code=code, name=str(name), country=country)

    def to_dict(self) -> JSON:
        return asdict(self)


@dataclass(frozen=True)
class User:
    """A person (or a service) that signs in. ``member`` None: the public."""

    username: str
    member: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    disabled: bool = False

    def to_dict(self) -> JSON:
        return {
            "username": self.username,
            "member": self.member,
            "roles": sorted(self.roles),
            "disabled": self.disabled,
        }


def _opt_number(d: JSON, key: str, *, integer: bool = False) -> Any:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidRequestError(f"agreement field {key!r} must be a non-negative number")
    if integer:
        if int(value) != value:
            raise InvalidRequestError(f"agreement field {key!r} must be a whole number")
        return int(value)
    if key == "reduced_resolution_m" and value <= 0:
        raise InvalidRequestError("agreement field 'reduced_resolution_m' must be over 0")
    return float(value)


@dataclass(frozen=True)
class Agreement:
    """The sharing terms of one collection, set by its provider."""

    collection: str
    provider: str  # the owning member's code
    access: AccessLevel = "provider"
    partners: frozenset[str] = field(default_factory=frozenset)
    # items become visible (and fully available) this many days after acquisition
    embargo_days: int | None = None
    embargo_opens_to: EmbargoOpensTo = "public"
    # callers without full rights see metadata, thumbnails and tiles no finer than this
    reduced_resolution_m: float | None = None
    licence: str | None = None
    # accepted once per user before the first download
    terms: str | None = None
    # an approved disaster activation may release its scenes over the affected area and
    # period in full to the affected member and the responders (eoshare.disaster)
    disaster_release: bool = False
    quota_user_bytes_per_day: int | None = None
    quota_member_bytes_per_day: int | None = None
    # map tiles, previews, point values and statistics per day (a count)
    quota_user_tiles_per_day: int | None = None
    quota_member_tiles_per_day: int | None = None
    # products derived from this collection (processing results) may be open to everyone;
    # otherwise they inherit this agreement (eoshare.processing.publish)
    derived_open: bool = False

    @property
    def name(self) -> str:
        """How problem documents name the agreement."""
        return f"agreement of collection {self.collection!r} (provider {self.provider})"

    def summary(self, names: Mapping[str, str] | None = None) -> str:
        """The agreement in plain words, for people; ``names`` gives member agencies'
        names for their codes (a code stands for itself without it)."""
        name = (names or {}).get
        partners = sorted(name(p, p) for p in self.partners)
        who = {
            "open": "Open to everyone",
            "members": "Open to users of every member agency",
            "partners": "Open to users of the provider and its partner agencies"
            + (f" ({', '.join(partners)})" if partners else ""),
            "provider": "Restricted to the provider's own users",
        }[self.access]
        parts = [f"{who}; provided by {name(self.provider, self.provider)}."]
        if self.embargo_days is not None and self.access != "open":
            to = "everyone" if self.embargo_opens_to == "public" else "all member agencies"
            parts.append(f"Each scene opens to {to} {self.embargo_days} days after acquisition.")
        if self.reduced_resolution_m is not None and self.access != "open":
            parts.append(
                "Others may see metadata, thumbnails and map tiles no finer than "
                f"{self.reduced_resolution_m:g} m, but not download full-resolution files."
            )
        if self.terms:
            parts.append("Terms must be accepted once before the first download.")
        if self.disaster_release and self.access != "open":
            parts.append(
                "During an approved disaster activation, scenes over the affected area and "
                "period are released in full, free of charge, to the affected country's users "
                "and the responders until the activation closes."
            )
        if self.licence:
            parts.append(f"Licence: {self.licence}.")
        if self.derived_open:
            parts.append("Products derived from it may be shared openly.")
        elif self.access != "open":
            parts.append("Products derived from it are shared under these same terms.")
        return " ".join(parts)

    def to_dict(self) -> JSON:
        return {
            "collection": self.collection,
            "provider": self.provider,
            "access": self.access,
            "partners": sorted(self.partners),
            "embargo_days": self.embargo_days,
            "embargo_opens_to": self.embargo_opens_to,
            "reduced_resolution_m": self.reduced_resolution_m,
            "licence": self.licence,
            "terms": self.terms,
            "disaster_release": self.disaster_release,
            "quota_user_bytes_per_day": self.quota_user_bytes_per_day,
            "quota_member_bytes_per_day": self.quota_member_bytes_per_day,
            "quota_user_tiles_per_day": self.quota_user_tiles_per_day,
            "quota_member_tiles_per_day": self.quota_member_tiles_per_day,
            "derived_open": self.derived_open,
        }

    def public_view(self, names: Mapping[str, str] | None = None) -> JSON:
        """``eoshare:agreement`` as shown on a collection to any caller who may see it
        (``names``: member agencies' names by code, for the plain words)."""
        view: JSON = {
            "access": self.access,
            "provider": self.provider,
            "summary": self.summary(names),
            "licence": self.licence,
            "embargo_days": self.embargo_days,
            "reduced_resolution_m": self.reduced_resolution_m,
            "terms": self.terms,
            "partners": sorted(self.partners),
            "disaster_release": self.disaster_release,
            "derived_open": self.derived_open,
        }
        if names and self.provider in names:
            view["provider_name"] = names[self.provider]
        return view


_AGREEMENT_KEYS = {*Agreement.__dataclass_fields__, "disaster_open"}


def agreement_from_dict(d: JSON, *, collection: str | None = None) -> Agreement:
    """Validate an agreement document (from the API, the CLI or an applied file)."""
    if not isinstance(d, dict):
        raise InvalidRequestError("an agreement must be a JSON/TOML object")
    d = dict(d)
    if collection is not None:
        d.setdefault("collection", collection)
        if d["collection"] != collection:
            raise InvalidRequestError(
                f"the agreement names collection {d['collection']!r}, not {collection!r}"
            )
    unknown = sorted(set(d) - _AGREEMENT_KEYS)
    if unknown:
        raise InvalidRequestError(f"unknown agreement field(s): {', '.join(unknown)}")
    cid = d.get("collection")
    if not isinstance(cid, str) or not cid:
        raise InvalidRequestError("an agreement needs a 'collection'")
    provider = check_code(d.get("provider"), f"the provider of agreement {cid!r}")
    access = d.get("access", "provider")
    if access not in ACCESS_LEVELS:
        raise InvalidRequestError(
            f"agreement {cid!r}: access must be one of {', '.join(ACCESS_LEVELS)}"
        )
    partners_raw = d.get("partners") or []
    if not isinstance(partners_raw, list):
        raise InvalidRequestError(f"agreement {cid!r}: partners must be a list of member codes")
    partners = frozenset(check_code(p, "partner member code") for p in partners_raw)
    opens_to = d.get("embargo_opens_to", "public")
    if opens_to not in ("public", "members"):
        raise InvalidRequestError(f"agreement {cid!r}: embargo_opens_to is 'public' or 'members'")
    for key in ("licence", "terms"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise InvalidRequestError(f"agreement {cid!r}: {key} must be text")
    # "disaster_open" was this field's name before disaster activations existed
    disaster = d.get("disaster_release", d.get("disaster_open", False))
    if not isinstance(disaster, bool):
        raise InvalidRequestError(f"agreement {cid!r}: disaster_release must be true or false")
    derived_open = d.get("derived_open", False)
    if not isinstance(derived_open, bool):
        raise InvalidRequestError(f"agreement {cid!r}: derived_open must be true or false")
    return Agreement(
        collection=cid,
        provider=provider,
        access=cast(AccessLevel, access),
        partners=partners,
        embargo_days=_opt_number(d, "embargo_days", integer=True),
        embargo_opens_to=cast(EmbargoOpensTo, opens_to),
        reduced_resolution_m=_opt_number(d, "reduced_resolution_m"),
        licence=d.get("licence") or None,
        terms=d.get("terms") or None,
        disaster_release=disaster,
        quota_user_bytes_per_day=_opt_number(d, "quota_user_bytes_per_day", integer=True),
        quota_member_bytes_per_day=_opt_number(d, "quota_member_bytes_per_day", integer=True),
        quota_user_tiles_per_day=_opt_number(d, "quota_user_tiles_per_day", integer=True),
        quota_member_tiles_per_day=_opt_number(d, "quota_member_tiles_per_day", integer=True),
        derived_open=derived_open,
    )
