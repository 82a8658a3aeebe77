"""Hole 5: quotas can be overshot. A member user fires concurrent downloads (and
pictures) at a collection with a daily quota, against a live node with two worker
processes; the bytes served never pass the quota, a refusal says how much remains, and a
range within what remains is still served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from eoshare.access.agreements import Member, agreement_from_dict
from eoshare.access.base import Principal
from eoshare.access.policy import AgreementPolicy
from eoshare.access.quotas import Quotas
from eoshare.access.store import AccessStore
from eoshare.errors import QuotaExceededError

from .bytes_node import A_QUOTA, QUOTA_SCENE, TILE_QUOTA, BytesNode


def _fire(node: BytesNode, who: str, path: str, n: int, **kw: object) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        with node.client(who) as http:
            return http.get(path, **kw)  # type: ignore[arg-type]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _asset(node: BytesNode) -> str:
    with node.client("operator") as http:
        item = http.get(f"/collections/{A_QUOTA}/items/{QUOTA_SCENE}").json()
    return next(k for k, a in item["assets"].items() if a.get("roles") == ["data"])


def test_concurrent_downloads_cannot_pass_the_byte_quota(secbytes_node: BytesNode) -> None:
    node = secbytes_node
    size, quota = node.quota_file_size, node.byte_quota
    path = f"/download/{A_QUOTA}/{QUOTA_SCENE}/{_asset(node)}"
    with node.client("c_user") as http:  # HEAD costs nothing
        assert all(http.head(path).status_code == 200 for _ in range(3))
    answers = _fire(node, "c_user", path, 8)
    served = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 403]
    assert len(served) + len(refused) == len(answers), [r.status_code for r in answers]
    assert sum(len(r.content) for r in served) <= quota
    assert len(served) == 1 and len(served[0].content) == size  # one whole file fits
    left = quota - size
    for r in refused:
        problem = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert problem["remaining"] == left and problem["unit"] == "bytes"
        assert f"{left} remain" in problem["detail"]
    with node.client("c_user") as http:
        # a range within what remains is served; one byte more is not
        part = http.get(path, headers={"Range": f"bytes=0-{left - 1}"})
        assert part.status_code == 206 and len(part.content) == left
        over = http.get(path, headers={"Range": "bytes=0-0"})
        assert over.status_code == 403 and "0 bytes remain" in over.json()["detail"]
    # another user of the same member has a quota of their own (per user)
    with node.client("b_user") as http:
        assert http.get(path, headers={"Range": "bytes=0-99"}).status_code == 206


def test_concurrent_pictures_cannot_pass_the_picture_quota(secbytes_node: BytesNode) -> None:
    node = secbytes_node
    path = f"/tiles/collections/{A_QUOTA}/items/{QUOTA_SCENE}/preview.png?max_size=64"
    answers = _fire(node, "d_user", path, 2 * TILE_QUOTA)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * TILE_QUOTA + [403] * TILE_QUOTA, codes
    refused = next(r for r in answers if r.status_code == 403).json()
    assert refused["remaining"] == 0 and refused["unit"] == "tiles"
    # the provider's own users are not counted
    with node.client("a_user") as http:
        for _ in range(TILE_QUOTA + 1):
            assert http.get(path).status_code == 200


def test_reservations_are_atomic_across_connections_and_unsent_bytes_go_back(
    state_location: Any,
) -> None:
    """The counter itself: 40 reservations of 10 bytes, from threads on four separate
    connections (as worker processes have), against a limit of 100: exactly ten fit.
    A download cut short gives back what it did not send."""
    first = AccessStore(state_location("access.db"))
    first.put_member(Member("ke", "Kenya", "KE"), who="t")
    first.put_member(Member("vn", "Viet Nam", "VN"), who="t")
    terms = {"collection": "c", "provider": "ke", "access": "open"}
    first.put_agreement(agreement_from_dict({**terms, "quota_user_bytes_per_day": 100}), who="t")
    stores = [first, *(AccessStore(state_location("access.db")) for _ in range(3))]
    quotas = [Quotas(s, AgreementPolicy(s)) for s in stores]
    caller = Principal(user="v", member="vn")

    def one(n: int) -> bool:
        try:
            quotas[n % 4].reserve(caller, "c", "bytes", 10)
        except QuotaExceededError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(40)))
    assert sum(results) == 10
    assert first.quota_used("u:v", "c", "bytes") == 100
    assert quotas[0].remaining(caller, "c", "bytes") == 0
    # a new day's worth: 60 reserved, 25 sent before the client went away
    first._db.execute("DELETE FROM quota_use")
    reservation = quotas[1].reserve(caller, "c", "bytes", 60)
    reservation.settle(25)
    reservation.settle(60)  # only the first settle counts
    assert first.quota_used("u:v", "c", "bytes") == 25
    for s in stores:
        s.close()
