"""Housekeeping: purge what has expired, so that rows and staged files do not grow
forever.

* uploads past their expiry time (``upload_ttl_s``): staged bytes and rows;
* orders that expired more than ``order_retention_s`` ago: rows (orders stage no files);
* staging folders without an upload row untouched for ``temp_max_age_s``, and the
  ``eoshare-ingest-<pid>-*`` (and ``-migrate-``) work folders whose process is gone
  (``eoshare.workdirs``).

Run by the node every ``interval_s`` (``run_periodically``, started in ``create_app``'s
lifespan) and by ``eoshare housekeeping [--dry-run]``. Several processes serve one node
(``serve --workers N``, several ``eoshare serve``): only the holder of the
``housekeeping`` lease (``eoshare.leases``) runs the periodic pass, so it runs once per
interval for the node, and another process takes over when the holder dies. A lock file
still keeps a pass started by hand (cron) from overlapping the node's, and every step
tolerates what another process already removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from eoshare.downloads.orders import OrderBook
from eoshare.downloads.uploads import UploadBook
from eoshare.leases import Leases, new_holder
from eoshare.workdirs import stale

# the lease of the periodic pass (eoshare.leases)
LEASE = "housekeeping"

# the work folders of ingest and storage migrate, the metrics folder of `serve --workers`
# (see eoshare.workdirs)
WORKDIR_PREFIXES = ("eoshare-ingest-", "eoshare-migrate-", "eoshare-metrics-")

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass
class HousekeepingReport:
    """What one pass removed (or, with ``dry_run``, would remove)."""

    dry_run: bool = False
    # (upload id, its state)
    uploads: list[tuple[str, str]] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    # another process held the lock: nothing was done
    skipped: bool = False

    @property
    def removed(self) -> int:
        return len(self.uploads) + len(self.orders) + len(self.folders)

    def lines(self) -> list[str]:
        out = [f"upload {uid} ({state})" for uid, state in self.uploads]
        out += [f"order {oid}" for oid in self.orders]
        out += [f"folder {p}" for p in self.folders]
        return out

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.uploads)} expired uploads, {len(self.orders)} expired orders, "
            f"{len(self.folders)} stale temporary folders"
        )


class Housekeeper:
    """One node's housekeeping. Built once in ``create_app`` (and by the CLI)."""

    def __init__(
        self,
        uploads: UploadBook,
        orders: OrderBook,
        *,
        lock_path: Path,
        order_retention_s: float,
        temp_max_age_s: float,
        temp_root: Path | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.leases = leases
        self.holder = new_holder()
        self.uploads = uploads
        self.orders = orders
        self.lock_path = lock_path
        self.order_retention_s = order_retention_s
        self.temp_max_age_s = temp_max_age_s
        self.temp_root = temp_root
        # other areas' periodic work, run after each pass (not in a dry run), each on its
        # own: a failing one is logged (e.g. federation's scheduled harvests)
        self.chores: list[Callable[[], object]] = []
        # set when the node stops: a pass under way starts no further chore
        self._stopping = threading.Event()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[bool]:
        """True when this process holds the lock; False when another one does."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def stale_temp_folders(self) -> list[Path]:
        """Work folders of ingests and migrations whose process is gone."""
        return [p for prefix in WORKDIR_PREFIXES for p in stale(prefix, self.temp_root)]

    def run(self, *, dry_run: bool = False) -> HousekeepingReport:
        """One pass; ``dry_run`` lists what would go and removes nothing."""
        report = HousekeepingReport(dry_run=dry_run)
        with self._lock() as held:
            if not held:
                report.skipped = True
                return report
            report.uploads = [(u.id, u.state) for u in self.uploads.purge_expired(dry_run=dry_run)]
            report.orders = self.orders.purge(self.order_retention_s, dry_run=dry_run)
            folders = self.uploads.stray_folders(self.temp_max_age_s)
            folders += self.stale_temp_folders()
            for folder in folders:
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
            report.folders = folders
        if not dry_run:
            for chore in self.chores:
                if self._stopping.is_set():
                    break
                try:
                    chore()
                except Exception:
                    log.exception("housekeeping chore %r failed", chore)
        return report

    def holds_lease(self, interval_s: float) -> bool:
        """Take or renew the node's housekeeping lease (True without a lease table). The
        lease outlives the interval by half, so that its holder keeps it from one pass
        to the next, and lapses soon after a holder that died."""
        if self.leases is None:
            return True
        return self.leases.acquire(LEASE, self.holder, ttl_s=interval_s * 1.5)

    async def run_periodically(self, interval_s: float) -> None:
        """Every ``interval_s`` seconds until cancelled: a pass, when this process holds
        the node's housekeeping lease. A failing pass is logged and the next one runs on
        time."""
        self._stopping.clear()
        try:
            while True:
                try:
                    if await self._in_thread(lambda: self.holds_lease(interval_s)):
                        report = await self._in_thread(self.run)
                        log.info(
                            "housekeeping: " + report.summary(),
                            extra={"uploads": len(report.uploads), "orders": len(report.orders),
                                   "folders": len(report.folders), "holder": self.holder,
                                   "skipped": report.skipped},
                        )  # fmt: skip
                except Exception:
                    log.exception("housekeeping failed; trying again in %.0f s", interval_s)
                await asyncio.sleep(interval_s)
        except asyncio.CancelledError:
            self._stopping.set()
            raise
        finally:
            if self.leases is not None:
                # a clean stop hands the lease on at once
                with contextlib.suppress(Exception):
                    self.leases.release(LEASE, self.holder)

    async def _in_thread(self, step: Callable[[], _T]) -> _T:
        """``step`` in a worker thread. A thread cannot be cancelled: when the node stops
        (this task is cancelled) the step is told to stop (no further chore) and awaited,
        so that it never outlives the app's lifespan, which closes the stores it uses,
        and never logs after the app is gone."""
        work = asyncio.ensure_future(asyncio.to_thread(step))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            self._stopping.set()
            with contextlib.suppress(Exception):
                await work
            raise
