"""Several processes of one node: the item hooks (an activation's first data, its
value-added products) and the webhooks run in the one process holding the node's
``disaster-alerts`` lease, and a process taking the lease over from a dead holder runs
them for what that holder may not have seen. Two ``AlertService`` objects over one state
database and one lease table stand for two processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eoshare.disaster.alerts import LEASE_TTL_S, AlertService, AlertSettings, ItemEventLog
from eoshare.disaster.store import DisasterStore
from eoshare.leases import Leases


class _Catalog:
    def get_item(self, cid: str, iid: str) -> dict[str, Any]:
        return {"type": "Feature", "collection": cid, "id": iid}


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _process(tmp_path: Path, clock: _Clock) -> tuple[AlertService, list[str]]:
    store = DisasterStore(tmp_path / "disaster.db")
    alerts = AlertService(
        store, _Catalog(), None, None, ItemEventLog(store), AlertSettings(),  # type: ignore[arg-type]
        leases=Leases(tmp_path / "node.db", clock=clock),
    )  # fmt: skip
    hooked: list[str] = []
    alerts.on_items.append(lambda items: hooked.extend(str(i["id"]) for i in items))
    return alerts, hooked


def test_hooks_run_in_one_process_and_a_takeover_misses_nothing(tmp_path: Path) -> None:
    clock = _Clock()
    a, hooked_a = _process(tmp_path, clock)
    b, hooked_b = _process(tmp_path, clock)
    store = a.store
    old = datetime.fromtimestamp(clock.now, UTC) - timedelta(seconds=30)
    try:
        a.process_pending()  # a takes the lease first
        b.process_pending()
        store.add_item_events([("c", "one"), ("c", "two")], at=old)
        a.process_pending()
        b.process_pending()
        assert hooked_a == ["one", "two"]
        assert hooked_b == [], "the hooks ran in two processes"

        # a dies (it renews no more); b streams the next scene before the lease expires,
        # then takes the lease over: the scene a never hooked is hooked by b
        store.add_item_events([("c", "three")], at=datetime.fromtimestamp(clock.now, UTC))
        b._lease_until = 0.0
        b.process_pending()
        assert hooked_b == [], "b led while a's lease was alive"
        clock.now += LEASE_TTL_S + 1
        b._lease_until = 0.0
        b.process_pending()
        assert hooked_b == ["three"], hooked_b
        assert hooked_a == ["one", "two"]
    finally:
        a.close()
        b.close()


def test_without_a_lease_table_the_one_process_runs_everything(tmp_path: Path) -> None:
    store = DisasterStore(tmp_path / "disaster.db")
    alerts = AlertService(
        store, _Catalog(), None, None, ItemEventLog(store), AlertSettings(),  # type: ignore[arg-type]
    )  # fmt: skip
    hooked: list[str] = []
    alerts.on_items.append(lambda items: hooked.extend(str(i["id"]) for i in items))
    try:
        store.add_item_events([("c", "x")], at=datetime.now(UTC))
        alerts.process_pending()
        assert hooked == ["x"]
    finally:
        alerts.close()
