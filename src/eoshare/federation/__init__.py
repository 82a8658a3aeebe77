"""Federation: every node can search, harvest and export the others as one catalogue,
and never hands out more than its own agreements allow.

Read in this order:

``identity``    the node's Ed25519 key pair, made on first start; its public document
``signatures``  RFC 9421 request signatures (Ed25519), replay cache, clock-skew limits
``peers``       the registry of peers (SQLite, plain SQL): keys, trust, health, cursors
``trust``       a signed request in -> a ``Principal`` (forwarded only when trusted)
``client``      signed requests out (``httpx.Auth``); errors -> ``UpstreamError``
``fanout``      one /search page over this node and its peers: deadline, merge,
                de-duplication, one composite paging token
``harvest``     incremental, resumable pull of peers' items into the local catalogue
``mirror``      local copies of peers' assets: resumable, verified, rate-limited,
                scheduled; served under the origin's agreement
``schedule``    per-peer harvest schedules; a lease row so that one process runs them
``bundle``      ``eoshare export`` / ``import``: a static STAC catalogue with the bytes,
                checksums and agreements, verified on the way in
``cli``         ``eoshare peers ...``, ``harvest``, ``mirror ...``, ``export``, ``import``

The HTTP side (the well-known document, the signature middleware, the hook in /search)
is ``eoshare.api.routes.federation``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # imported by open_federation: a command of one submodule (eoshare peers ...) does
    # not load every other (httpx, cryptography, shapely) through this package
    from eoshare.catalog.base import Catalog
    from eoshare.federation.fanout import FederatedSearch
    from eoshare.federation.identity import NodeIdentity
    from eoshare.federation.mirror import MirrorBook
    from eoshare.federation.peers import PeerRegistry
    from eoshare.federation.trust import PeerTrust
    from eoshare.leases import Leases
    from eoshare.settings import Settings


@dataclass
class FederationServices:
    identity: NodeIdentity
    registry: PeerRegistry
    trust: PeerTrust
    hub: FederatedSearch
    mirrors: MirrorBook

    def close(self) -> None:
        self.registry.close()
        self.mirrors.close()

    def harvest_chore(
        self, catalog: Catalog, batch: int, leases: Leases
    ) -> Callable[[], list[str] | None]:
        """The scheduled harvests, as one housekeeping chore (``schedule``)."""

        def run() -> list[str] | None:
            if not any(p.harvest_every_s for p in self.registry.cached()):
                return []
            from eoshare.federation.harvest import Harvester
            from eoshare.federation.schedule import Lease, run_due_harvests

            harvester = Harvester(catalog, self.registry, self.identity, batch=batch)
            return run_due_harvests(self.registry, harvester.harvest, lease=Lease(leases))

        return run


def open_federation(
    settings: Settings, known_member: Callable[[str], str | bool | None]
) -> FederationServices:
    """Built once in ``create_app`` (and by the CLI)."""
    from eoshare.federation.fanout import FederatedSearch
    from eoshare.federation.identity import load_or_create_identity
    from eoshare.federation.mirror import open_mirrors
    from eoshare.federation.peers import PeerRegistry
    from eoshare.federation.trust import PeerTrust

    fed = settings.federation
    identity = load_or_create_identity(
        settings.node_key_path, name=settings.node_name, member=fed.member
    )
    registry = PeerRegistry(settings.state_db(settings.federation_db_path))
    trust = PeerTrust(
        registry,
        known_member=known_member,
        clock_skew_s=fed.clock_skew_s,
        max_ttl_s=fed.max_signature_ttl_s,
    )
    hub = FederatedSearch(identity, registry, deadline_s=fed.deadline_s)
    return FederationServices(identity, registry, trust, hub, open_mirrors(settings))


__all__ = ["FederationServices", "open_federation"]
