"""Decisions on the tile, thumbnail and processing paths, quotas, caching across
processes, and the store's hashing of secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.base import Action, Principal
from eoshare.access.policy import AgreementPolicy
from eoshare.access.quotas import Quotas
from eoshare.access.store import AccessStore, sha256
from eoshare.errors import InvalidRequestError, NotAuthenticatedError
from security.at_rest import rows_holding, secrets_at_rest

ITEM = {
    "id": "s1",
    "collection": "c",
    "properties": {"datetime": datetime.now(UTC).isoformat()},
}
OLD = {**ITEM, "id": "s0", "properties": {"datetime": "2000-01-01T00:00:00Z"}}
KE = Principal(user="k", member="ke", country="KE")
VN = Principal(user="v", member="vn", country="VN")


@pytest.fixture()
def store(state_location: Any) -> AccessStore:
    s = AccessStore(state_location("access.db"))
    s.put_member(Member("ke", "Kenya", "KE"), who="t")
    s.put_member(Member("vn", "Viet Nam", "VN"), who="t")
    return s


def _set(store: AccessStore, **terms: object) -> AgreementPolicy:
    store.put_agreement(
        agreement_from_dict({"collection": "c", "provider": "ke", **terms}), who="t"
    )
    policy = AgreementPolicy(store)
    return policy


def test_reduced_allows_tiles_and_thumbnails_only(store: AccessStore) -> None:
    policy = _set(store, access="provider", reduced_resolution_m=100)
    for action in (Action.TILE, Action.THUMBNAIL, Action.VIEW):
        d = policy.decide(VN, ITEM, "data", action)
        assert (d.kind, d.max_resolution_m, d.agreement) == ("reduced", 100, "c")
    for action in (Action.DOWNLOAD, Action.PROCESS):
        d = policy.decide(VN, ITEM, "data", action)
        assert d.kind == "denied" and "Kenya" in (d.reason or "")
    assert policy.decide(KE, ITEM, "data", Action.DOWNLOAD).kind == "full"


def test_embargo_lifts_per_item(store: AccessStore) -> None:
    policy = _set(store, access="provider", embargo_days=30)
    assert policy.decide(VN, OLD, "data", Action.DOWNLOAD).kind == "full"
    assert policy.decide(VN, ITEM, "data", Action.TILE).kind == "denied"
    assert policy.can_view(VN, OLD) and not policy.can_view(VN, ITEM)
    assert policy.collection_view(VN, "c") == "partial"


def test_quotas_per_user_and_member(store: AccessStore) -> None:
    policy = _set(store, access="open", quota_user_bytes_per_day=1000)
    assert policy.decide(VN, ITEM, "data", Action.DOWNLOAD).kind == "full"
    Quotas(store, policy).reserve(VN, "c", "bytes", 1000).settle(1000)
    d = policy.decide(VN, ITEM, "data", Action.DOWNLOAD)
    assert d.kind == "denied" and "quota" in (d.reason or "")
    # tiles are not counted against a download quota
    assert policy.decide(VN, ITEM, "data", Action.TILE).kind == "full"
    policy = _set(store, access="open", quota_member_bytes_per_day=500)
    other_vn = Principal(user="v2", member="vn", country="VN")
    Quotas(store, policy).reserve(VN, "c", "bytes", 500).settle(500)
    assert policy.decide(other_vn, ITEM, "data", Action.DOWNLOAD).kind == "denied"
    assert policy.decide(KE, ITEM, "data", Action.DOWNLOAD).kind == "full"


def test_changes_from_another_process_show_up(store: AccessStore, state_location: Any) -> None:
    policy = _set(store, access="open")
    assert policy.visible_filter(VN) is None
    # another connection (the CLI) changes the agreement
    other = AccessStore(state_location("access.db"))
    other.put_agreement(
        agreement_from_dict({"collection": "c", "provider": "ke", "access": "provider"}), who="cli"
    )
    policy.invalidate()
    assert policy.visible_filter(VN) == {"op": "not", "args": [
        {"op": "=", "args": [{"property": "collection"}, "c"]}]}  # fmt: skip
    assert policy.visible_filter(KE) is None
    history = store.history(subject="c")
    assert history[0]["who"] == "cli" and history[0]["detail"]["before"]["access"] == "open"
    other.close()


def test_secrets_are_hashed(store: AccessStore, tmp_path: Path) -> None:
    store.put_user("k", member="ke", roles=["analyst"], password="long enough pw", who="t")
    info, secret = store.create_token("k", days=1, who="t")
    if store._db.postgres:
        # every column of every table of the access schema
        tables = store._db.read(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'access'"
        )
        holding = []
        for (table,) in tables:
            for row in store._db.read(f"SELECT * FROM {table}"):
                text = repr(row)
                assert secret not in text and "long enough pw" not in text
                if sha256(secret) in text:
                    holding.append(table)
        assert holding == ["tokens"]
    else:
        # through SQLite after a checkpoint, and in the WAL (tests/security/at_rest.py)
        assert secrets_at_rest(tmp_path, [secret, "long enough pw"]) == []
        assert rows_holding(tmp_path / "access.db", [sha256(secret)]) == ["tokens.hash"]
    assert store.verify_password("k", "long enough pw").member == "ke"
    with pytest.raises(NotAuthenticatedError):
        store.verify_password("k", "wrong password")
    with pytest.raises(InvalidRequestError):
        store.put_user("x", member=None, roles=["provider-admin"], who="t")
    store._db.execute(
        "UPDATE tokens SET expires = ?",
        ((datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),),
    )
    with pytest.raises(NotAuthenticatedError, match="expired"):
        store.user_for_token(secret)
    store.revoke_token(info.id, who="t")
    with pytest.raises(NotAuthenticatedError, match="revoked"):
        store.user_for_token(secret)
