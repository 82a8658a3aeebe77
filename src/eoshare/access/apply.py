"""``eoshare apply FILE``: members, users and agreements declared in a reviewable file.

TOML or YAML, with three optional lists::

    [[members]]
    code = "ke-kspa"          name = "Kenya Space Agency"     country = "KE"
    [[users]]
    username = "amina"        member = "ke-kspa"   roles = ["analyst"]
    [[agreements]]
    collection = "kestrel-msi-l2a"  provider = "ke-kspa"  access = "partners"
    partners = ["vn-vnsc"]

Applying is idempotent: what already matches is left alone, each change goes through the
store (so it lands in the history under the applying person's name). ``plan`` returns
the changes without making them, for review. Users' passwords are never read from the
file (a reviewable file is no place for secrets), except with ``allow_passwords`` (the
demo, whose accounts are public on purpose).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eoshare.access.agreements import Member, agreement_from_dict, check_code, check_roles
from eoshare.access.store import AccessStore
from eoshare.errors import InvalidRequestError, NotFoundError

JSON = dict[str, Any]


@dataclass
class ApplyReport:
    changes: list[str] = field(default_factory=list)
    unchanged: int = 0


def read_declarations(path: Path) -> JSON:
    """Parse a TOML (.toml) or YAML (.yaml/.yml) declarations file."""
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            doc: Any = tomllib.loads(text.decode())
        elif path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(text)
        else:
            raise InvalidRequestError(f"{path}: use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidRequestError(f"{path}: the top level must be a table/mapping")
    unknown = sorted(set(doc) - {"members", "users", "agreements"})
    if unknown:
        raise InvalidRequestError(f"{path}: unknown section(s) {', '.join(unknown)}")
    for key in ("members", "users", "agreements"):
        if not isinstance(doc.get(key, []), list):
            raise InvalidRequestError(f"{path}: '{key}' must be a list")
    return doc


def apply_declarations(
    store: AccessStore,
    doc: JSON,
    *,
    who: str,
    dry_run: bool = False,
    allow_passwords: bool = False,
) -> ApplyReport:
    """Make the store match the declarations (members first, then users, agreements)."""
    report = ApplyReport()
    members = [Member.from_dict(m) for m in doc.get("members", [])]
    declared_members = {m.code for m in members}
    for m in members:
        try:
            same = store.get_member(m.code) == m
        except NotFoundError:
            same = False
        if same:
            report.unchanged += 1
            continue
        report.changes.append(f"member {m.code}: {m.name} ({m.country})")
        if not dry_run:
            store.put_member(m, who=who)

    def member_known(code: str) -> bool:
        if code in declared_members:
            return True
        try:
            store.get_member(code)
        except NotFoundError:
            return False
        return True

    for u in doc.get("users", []):
        if not isinstance(u, dict):
            raise InvalidRequestError("each user must be a table/mapping")
        name = check_code(u.get("username"), "user name")
        member = u.get("member")
        roles = check_roles(u.get("roles", ["viewer"]))
        if member is not None and not member_known(member):
            raise InvalidRequestError(f"user {name!r}: member {member!r} is not declared")
        password = u.get("password")
        if password is not None and not allow_passwords:
            raise InvalidRequestError(
                f"user {name!r}: passwords do not belong in a declarations file; "
                "set them with 'eoshare users passwd'"
            )
        try:
            current = store.get_user(name)
            same = current.member == member and current.roles == roles and password is None
        except NotFoundError:
            same = False
        if same:
            report.unchanged += 1
            continue
        report.changes.append(
            f"user {name}: member {member or '-'}, roles {','.join(sorted(roles))}"
        )
        if not dry_run:
            store.put_user(name, member=member, roles=roles, password=password, who=who)

    for raw in doc.get("agreements", []):
        a = agreement_from_dict(raw)
        for code in (a.provider, *a.partners):
            if not member_known(code):
                raise InvalidRequestError(
                    f"agreement {a.collection!r}: member {code!r} is not declared"
                )
        if store.find_agreement(a.collection) == a:
            report.unchanged += 1
            continue
        report.changes.append(f"agreement {a.collection}: {a.summary()}")
        if not dry_run:
            store.put_agreement(a, who=who)
    return report
