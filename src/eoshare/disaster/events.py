"""The item event log: every catalogue write, by any process, recorded for the server's
alert worker (``eoshare.disaster.alerts``). Kept apart from the alert service so that a
command that only writes items (``eoshare ingest``, ``load``, ``harvest``) need not
import webhooks, CQL2 and the access services to tell the server about them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eoshare.catalog.base import Catalog
from eoshare.catalog.observed import ObservedCatalog
from eoshare.disaster.store import DisasterStore

if TYPE_CHECKING:
    from eoshare.settings import Settings

Clock = Callable[[], datetime]


class ItemEventLog:
    """The listener ``ObservedCatalog`` calls: records written items for the alert worker
    (whichever process wrote them) and wakes it when it lives in this process."""

    def __init__(self, store: DisasterStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.wake = threading.Event()

    def __call__(self, refs: list[tuple[str, str]]) -> None:
        self.store.add_item_events(refs, at=self.clock())
        self.wake.set()


def observe_writes(settings: Settings, catalog: Catalog) -> tuple[ObservedCatalog, DisasterStore]:
    """For the CLI (``ingest``, ``load``): the catalogue wrapped so that what it writes
    reaches a running server's alert worker through the item event log."""
    store = DisasterStore(settings.state_db(settings.disaster_db_path))
    return ObservedCatalog(catalog, [ItemEventLog(store)]), store
