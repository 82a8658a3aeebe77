"""Building the disaster services from settings (``create_app`` and the CLI share it).

``open_disaster`` wires three things together:

* the activations service becomes the access policy's grant source (the grant lives in
  the access module; this only tells it where to look);
* the catalogue is wrapped (``ObservedCatalog``) so that every write lands in the item
  event log, which the alert worker reads;
* approval arms an alert subscription; every new batch of items tells the activations
  service (first data, post-event hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eoshare.access.base import Principal
from eoshare.access.policy import AgreementPolicy
from eoshare.access.service import AccessServices
from eoshare.catalog.base import Catalog, SearchQuery
from eoshare.catalog.observed import ObservedCatalog
from eoshare.disaster.activations import ActivationService, Clock
from eoshare.disaster.alerts import AlertService, AlertSettings
from eoshare.disaster.archive import rank
from eoshare.disaster.events import ItemEventLog
from eoshare.disaster.orbits import OrbitService, load_platforms
from eoshare.disaster.passes import Pass, plan
from eoshare.disaster.store import DisasterStore
from eoshare.errors import InvalidRequestError
from eoshare.leases import Leases, lease_location
from eoshare.settings import Settings

JSON = dict[str, Any]


@dataclass
class DisasterServices:
    store: DisasterStore
    activations: ActivationService
    orbits: OrbitService
    alerts: AlertService
    events: ItemEventLog
    catalog: ObservedCatalog
    policy: AgreementPolicy
    max_pass_hours: float = 240.0

    def set_clock(self, clock: Clock) -> None:
        """One clock for every rule that reads the time (tests inject one)."""
        self.activations.clock = clock
        self.alerts.clock = clock
        self.events.clock = clock
        self.policy.clock = clock

    def now(self) -> datetime:
        return self.activations.clock()

    def close(self) -> None:
        self.alerts.close()
        self.store.close()

    # --- reading across services ------------------------------------------------------
    def archive(self, principal: Principal, aid: str, *, limit: int = 500) -> JSON:
        """The activation's pre/post scenes the caller may see, ranked (an ItemCollection)."""
        a = self.activations.get(principal, aid)
        start, end = self.activations.window(a)
        page = self.catalog.search(
            SearchQuery(
                intersects=a.area,
                datetime_start=start,
                datetime_end=end,
                limit=limit,
                visible=self.policy.visible_filter(principal),
                count=False,
            )
        )
        # the activations' own products are listed with them, not as scenes
        scenes = [i for i in page.items if "eoshare:activation" not in (i.get("properties") or {})]
        features = rank(scenes, a.area, a.event_time)
        return {
            "type": "FeatureCollection",
            "features": features,
            "numberReturned": len(features),
            "eoshare:activation": aid,
            "eoshare:event_time": a.event_time.isoformat().replace("+00:00", "Z"),
        }

    def passes(
        self, area: JSON, start: datetime | None, hours: float, *, usable_only: bool = False
    ) -> tuple[list[Pass], list[str]]:
        if not 0 < hours <= self.max_pass_hours:
            raise InvalidRequestError(f"hours must be over 0 and at most {self.max_pass_hours:g}")
        now = self.now()
        begin = start or now
        satellites = self.orbits.member_satellites()
        warnings = self.orbits.stale_warnings(begin)
        if not satellites:
            warnings.append("no element sets of member satellites are loaded: eoshare orbits load")
        return plan(satellites, area, begin, hours, usable_only=usable_only), warnings


def open_disaster(
    settings: Settings, catalog: Catalog, access: AccessServices, *, worker: bool = True
) -> DisasterServices:
    """The disaster services over ``catalog`` (wrapped) and the access services."""
    store = DisasterStore(settings.state_db(settings.disaster_db_path))
    platforms = load_platforms(
        Path(settings.disaster.platforms) if settings.disaster.platforms else None
    )
    events = ItemEventLog(store)
    observed = catalog if isinstance(catalog, ObservedCatalog) else ObservedCatalog(catalog)
    observed.listeners.append(events)
    activations = ActivationService(store, access.store)
    policy = access.policy
    policy.grant_source = activations
    alerts = AlertService(
        store,
        observed,
        policy,
        access.store,
        events,
        AlertSettings(
            allow_private_webhooks=settings.disaster.allow_private_webhooks,
            webhook_attempts=max(1, settings.disaster.webhook_attempts),
            webhook_backoff_s=settings.disaster.webhook_backoff_s,
            webhook_timeout_s=settings.disaster.webhook_timeout_s,
        ),
        # hooks and webhooks in one process of the node, whatever serves it
        leases=Leases(lease_location(settings)),  # (opened by the worker, if it runs)
    )
    services = DisasterServices(
        store=store, activations=activations, orbits=OrbitService(store, platforms),
        alerts=alerts, events=events, catalog=observed, policy=policy,
        max_pass_hours=settings.disaster.max_pass_hours,
    )  # fmt: skip
    activations.on_approved.append(lambda a: alerts.arm_for_activation(a, activations.window(a)))
    activations.on_closed.append(lambda a: alerts.disarm_activation(a.id))

    def released(collection: str) -> bool:
        agreement = policy.agreement(collection)
        return agreement is not None and agreement.disaster_release

    alerts.on_items.append(lambda items: activations.items_created(items, released))
    if worker:
        alerts.start()
    return services


def default_window(now: datetime, hours: float) -> tuple[datetime, datetime]:
    return now, now + timedelta(hours=hours)


def utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
