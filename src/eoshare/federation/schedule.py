"""Per-peer harvest schedules and the lease that lets one process run them.

A peer's schedule is ``harvest_every_s`` (how long after the last harvest began the next
one is due; None: only by hand) and an optional ``harvest_window`` (``HH:MM-HH:MM`` UTC,
e.g. ``22:00-06:00`` for night hours: a due harvest waits for it). Set with
``eoshare peers add|set --harvest-every 1h --harvest-window 22:00-06:00``.

``run_due_harvests`` is one pass: called by the node's housekeeping loop (every
``housekeeping.interval_s``) and by ``eoshare harvest --due`` (cron). Several processes
of a node may call it at once; the ``harvest-schedules`` lease of the node's lease table
(``eoshare.leases``: one holder until a time, taken in one atomic statement, given back at
the end, or lapsing when its holder dies) lets one of them run the harvests, and which
harvests are due is read *after* taking it, so a harvest another process just finished is
not run again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from eoshare.errors import InvalidRequestError
from eoshare.federation.peers import Peer, PeerRegistry
from eoshare.leases import Leases, new_holder

log = logging.getLogger("eoshare.federation.schedule")
LEASE_NAME = "harvest"
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_every(text: str) -> int | None:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` -> seconds; ``"off"``/``"never"`` -> None."""
    if text.strip().lower() in ("off", "never", "none", ""):
        return None
    m = _EVERY.match(text.lower())
    if m is None or int(m.group(1)) <= 0:
        raise InvalidRequestError(
            f"harvest interval {text!r} is not valid: a number with s, m, h or d (e.g. 1h), or off"
        )
    return int(m.group(1)) * _UNITS[m.group(2)]


def check_window(text: str | None) -> str | None:
    """``HH:MM-HH:MM`` (UTC; may wrap past midnight), or None for any time."""
    if text is None or text.strip().lower() in ("", "any", "off"):
        return None
    if not _WINDOW.match(text.strip()):
        raise InvalidRequestError(
            f"harvest window {text!r} is not valid: HH:MM-HH:MM in UTC, e.g. 22:00-06:00"
        )
    return text.strip()


def in_window(window: str | None, now: datetime) -> bool:
    if window is None:
        return True
    m = _WINDOW.match(window)
    if m is None:
        return False
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    minute = now.hour * 60 + now.minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # wraps past midnight


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_due(peer: Peer, last_started: str | None, now: float) -> bool:
    if not peer.enabled or peer.harvest_every_s is None:
        return False
    if not in_window(peer.harvest_window, datetime.fromtimestamp(now, UTC)):
        return False
    last = _epoch(last_started)
    return last is None or now - last >= peer.harvest_every_s


def due_peers(registry: PeerRegistry, now: float | None = None) -> list[Peer]:
    now = time.time() if now is None else now
    out = []
    for peer in registry.all():
        last = registry.last_harvest(peer.name)
        if is_due(peer, last["started"] if last else None, now):
            out.append(peer)
    return out


class Lease:
    """One named lease of the node's lease table, held by this process."""

    def __init__(self, leases: Leases, name: str = LEASE_NAME, holder: str | None = None):
        self.leases, self.name = leases, name
        self.holder = holder or new_holder()

    def acquire(self, ttl_s: float) -> bool:
        """Take (or extend) the lease for ``ttl_s``; False when another holder has it."""
        return self.leases.acquire(self.name, self.holder, ttl_s)

    def release(self) -> None:
        self.leases.release(self.name, self.holder)


def run_due_harvests(
    registry: PeerRegistry,
    harvest: Callable[[Peer], object],
    *,
    lease: Lease,
    ttl_s: float = 900.0,
) -> list[str] | None:
    """Harvest every peer that is due, once; the names harvested, or None when another
    process holds the lease. ``harvest(peer)`` does one peer (``Harvester.harvest``)."""
    if not lease.acquire(ttl_s):
        return None
    done: list[str] = []
    try:
        for peer in due_peers(registry):  # read under the lease
            try:
                harvest(peer)
            except Exception:  # one peer's failure must not stop the others
                log.exception("scheduled harvest of %s failed", peer.name)
            done.append(peer.name)
            lease.acquire(ttl_s)  # renewed after each peer
    finally:
        lease.release()
    return done
