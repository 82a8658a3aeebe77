"""The demo node's members, users and agreements (``eoshare/demo/agreements.toml``),
applied by the demo builder after its catalogue is ready. Idempotent."""

from __future__ import annotations

import ipaddress
import logging
import statistics
import tomllib
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from eoshare.access.apply import apply_declarations
from eoshare.access.store import AccessStore
from eoshare.catalog.base import Catalog
from eoshare.errors import InvalidRequestError, NotAuthenticatedError, NotFoundError
from eoshare.statedb import is_postgres

log = logging.getLogger(__name__)
DEMO_PASSWORD = "eoshare-demo"


def demo_declarations() -> dict[str, Any]:
    text = resources.files("eoshare.demo").joinpath("agreements.toml").read_text()
    return tomllib.loads(text)


def _median_age_days(catalog: Catalog, collection: str) -> int | None:
    ages = []
    now = datetime.now(UTC)
    try:
        for item in catalog.iter_items(collection):
            props = item.get("properties") or {}
            text = props.get("datetime") or props.get("start_datetime")
            if isinstance(text, str):
                when = datetime.fromisoformat(text.replace("Z", "+00:00"))
                ages.append((now - when).days)
    except NotFoundError:
        return None
    return int(statistics.median(ages)) if ages else None


def apply_demo_agreements(
    data_dir: Path, catalog: Catalog, *, access_db: str | Path | None = None
) -> None:
    """Write the demo's access state into ``data_dir/access.db`` (or ``access_db``: a
    path or the ``EOSHARE_DATABASE`` URL)."""
    doc = demo_declarations()
    for agreement in doc.get("agreements", []):
        if "embargo_days" in agreement:
            age = _median_age_days(catalog, agreement["collection"])
            if age is not None:
                agreement["embargo_days"] = max(age, 0)
    for user in doc.get("users", []):
        user["password"] = DEMO_PASSWORD
    store = AccessStore(access_db or Path(data_dir) / "access.db")
    try:
        # users keep their password once set: only new ones get the demo password
        existing = {u.username for u in store.list_users()}
        for user in doc.get("users", []):
            if user["username"] in existing:
                user.pop("password")
        report = apply_declarations(store, doc, who="demo", allow_passwords=True)
    finally:
        store.close()
    log.info("demo agreements applied", extra={"changes": len(report.changes)})


# --- serving demo users beyond this machine ---------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether ``host`` (what the server binds) is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo_usernames() -> list[str]:
    return [str(u["username"]) for u in demo_declarations().get("users", [])]


def users_with_demo_password(db_path: str | Path) -> list[str]:
    """The demo's users whose password is still the published one (one scrypt each)."""
    if not is_postgres(db_path) and not Path(db_path).exists():
        return []
    names = demo_usernames()
    store = AccessStore(db_path)
    try:
        found = []
        for name in names:
            try:
                store.verify_password(name, DEMO_PASSWORD)
            except (NotAuthenticatedError, NotFoundError):
                continue
            found.append(name)
        return found
    finally:
        store.close()


def check_demo_exposure(host: str, users: list[str], *, allowed: bool) -> None:
    """Refuse to serve demo users with the published password on a non-loopback address,
    unless the operator said so (``--allow-demo-users``, EOSHARE_SECURITY__ALLOW_DEMO_USERS)."""
    if not users or allowed or is_loopback(host):
        return
    shown = ", ".join(users[:6])
    raise InvalidRequestError(
        f"refusing to serve on {host}: demo users ({shown}) have the published password "
        f"{DEMO_PASSWORD!r}, which anyone could use; serve on 127.0.0.1, change or remove "
        "those users (eoshare users remove NAME), or pass --allow-demo-users"
    )
