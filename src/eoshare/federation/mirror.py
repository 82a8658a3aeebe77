"""Mirror: a member with a slow or intermittent link keeps a local copy of chosen
collections, areas and periods of a peer's assets, and serves it under the origin's
agreement.

A mirror (``eoshare mirror add``) names a registered eoshare peer, its collections, an
optional bbox and datetime interval, an optional daily time window (``22:00-06:00``,
UTC unless a time zone follows: ``22:00-06:00 Asia/Ho_Chi_Minh``), an optional
bandwidth limit and the local user it acts for (``--as``). A run:

1. **asks as that user** -- every request is signed by this node and carries the user
   (``Eoshare-On-Behalf-Of``, see ``trust``): the peer decides with its own agreements and
   its own trust in this node, so a mirror never gets more than that user could get from
   the peer directly. Without ``--as`` the node asks as itself: the peer's public view.
2. **copies the agreement first** -- the origin's ``eoshare:agreement`` of each collection
   becomes this node's agreement of the local collection ``<peer>.<collection>`` (the
   harvest naming), *before* any item or byte is written, so that the local copy is never
   shown to anyone the origin would not show it to. Two things are never widened: a
   disaster release is dropped (this node's activations do not open another member's
   data) and an embargo whose audience is not stated opens to members only.
3. **fetches each held asset** (an ``href`` under the peer's ``/download/``) into a
   partial file ``<data_dir>/mirror-partial/<mirror>/<hash>.<pid>.part``. An interrupted
   run (even ``kill -9``) leaves it there; the next run adopts it (the pid in the name
   says whose it was) and asks only for the rest (HTTP ``Range``). The bytes are read
   through a token bucket (``--limit-rate``).
4. **verifies** the whole file against the origin item's ``file:size`` and
   ``file:checksum`` (sha2-256 multihash). A resumed file that does not match is fetched
   again from its first byte once (the partial was damaged); a fresh one that does not
   match fails (the origin's bytes are not what it says).
5. **commits**: the file is moved into the store atomically (a rename into a local
   store on the same file system, else ``Store.put_file``), and the item is written to
   the local catalogue with the node's ``eoshare:key`` on the mirrored assets, so that
   ``AssetGate`` -- the one path for bytes -- serves the local copy with this node's
   decision and audit under the copied agreement. Hidden stays hidden: an item the
   agreement hides is 404 here too.

Runs are serialised per mirror by a lock file; ``state``, file and byte counts, the last
run and its error are kept in ``federation.db`` and shown by ``eoshare mirror status``
and ``GET /admin/mirrors``. ``eoshare mirror run --loop`` and the node itself (every
``EOSHARE_FEDERATION__MIRROR_INTERVAL_S``) run the mirrors whose window is open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from eoshare.access.agreements import Agreement, agreement_from_dict
from eoshare.access.base import Principal
from eoshare.access.store import AccessStore
from eoshare.catalog.assetkeys import KEY_FIELD, key_of, store_key
from eoshare.catalog.base import Catalog
from eoshare.catalog.validate import parse_datetime
from eoshare.errors import (
    AccessDeniedError,
    ConflictError,
    EoshareError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
    UpstreamError,
)
from eoshare.federation.client import NodeAuth, json_of, upstream
from eoshare.federation.fanout import next_token_of
from eoshare.federation.harvest import _harvested_item, local_collection_id
from eoshare.federation.identity import NodeIdentity
from eoshare.federation.peers import Peer, PeerRegistry, now_iso
from eoshare.federation.trust import encode_on_behalf_of
from eoshare.ingest.checksums import hexdigest_from_multihash
from eoshare.statedb import Migration, StateDB

JSON = dict[str, Any]
log = logging.getLogger("eoshare.federation.mirror")

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.IGNORECASE)
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=,-]{0,200}$")
_CHUNK = 64 * 1024
STATES = ("idle", "running", "done", "failed", "interrupted")

# "window" is quoted: a reserved word of PostgreSQL's (the same column on SQLite)
_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS mirrors (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    collections TEXT NOT NULL,
    bbox TEXT,
    datetime TEXT,
    "window" TEXT,
    as_user TEXT,
    limit_rate INTEGER,
    state TEXT NOT NULL DEFAULT 'idle',
    files_total INTEGER NOT NULL DEFAULT 0,
    files_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER NOT NULL DEFAULT 0,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    last_run TEXT,
    last_error TEXT,
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mirror_files (
    mirror TEXT NOT NULL,
    store_key TEXT NOT NULL,
    checksum TEXT,
    size INTEGER NOT NULL,
    done TEXT NOT NULL,
    PRIMARY KEY (mirror, store_key)
);
""",
    )
]


# --- small values: rates, windows ------------------------------------------------------
def parse_rate(text: str | None) -> int | None:
    """``2M`` -> 2 MiB/s in bytes (K, M, G are powers of 1024, as curl's --limit-rate);
    ``0``: no limit (0); empty: not given (None)."""
    if text is None or not str(text).strip():
        return None
    m = _RATE.match(str(text))
    if not m:
        raise InvalidRequestError(f"rate {text!r} is not valid: write e.g. 500K, 2M or 1.5M")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


@dataclass(frozen=True)
class Window:
    """A daily time window, ``HH:MM-HH:MM`` in a time zone (UTC by default); one that
    ends before it starts runs over midnight (``22:00-06:00``)."""

    start: int  # minutes after midnight
    end: int
    tz: str = "UTC"

    @classmethod
    def parse(cls, text: str) -> Window:
        m = _WINDOW.match(text or "")
        if not m:
            raise InvalidRequestError(
                f"window {text!r} is not valid: write HH:MM-HH:MM, e.g. 22:00-06:00 "
                "(optionally followed by a time zone such as Asia/Ho_Chi_Minh)"
            )
        h1, m1, h2, m2 = (int(m.group(i)) for i in range(1, 5))
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise InvalidRequestError(f"window {text!r} has a time that does not exist")
        tz = m.group(5) or "UTC"
        cls._zone(tz)
        return cls(h1 * 60 + m1, h2 * 60 + m2, tz)

    @staticmethod
    def _zone(tz: str) -> Any:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidRequestError(f"time zone {tz!r} is not known") from exc

    def contains(self, instant: datetime) -> bool:
        local = instant.astimezone(self._zone(self.tz))
        minute = local.hour * 60 + local.minute
        if self.start == self.end:
            return True  # the whole day
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        def hm(x: int) -> str:
            return f"{x // 60:02d}:{x % 60:02d}"

        zone = "" if self.tz == "UTC" else f" {self.tz}"
        return f"{hm(self.start)}-{hm(self.end)}{zone}"


def in_window(window: str | None, instant: datetime | None = None) -> bool:
    return window is None or Window.parse(window).contains(instant or datetime.now(UTC))


def check_datetime_interval(value: str) -> str:
    """A STAC datetime (one instant or ``start/end`` with ``..`` for open ends)."""
    parts = value.split("/")
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise InvalidRequestError(f"datetime {value!r} is not an instant or an interval")
    for p in parts:
        if p not in ("", ".."):
            parse_datetime(p)
    return value


def check_bbox(values: list[float]) -> tuple[float, ...]:
    if len(values) != 4:
        raise InvalidRequestError("bbox needs four numbers: west,south,east,north")
    w, s, e, n = values
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
        raise InvalidRequestError(f"bbox {values} is not in longitude/latitude degrees")
    return tuple(values)


class TokenBucket:
    """Bandwidth limit: ``take(n)`` waits until ``n`` bytes fit in ``rate`` bytes per
    second, with bursts of at most ``burst`` bytes (a quarter second by default)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise InvalidRequestError("a rate limit must be over 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 4, 4096))
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock()

    def take(self, n: int) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            self.sleep(-self.tokens / self.rate)


# --- the mirrors' book -----------------------------------------------------------------
@dataclass(frozen=True)
class Mirror:
    id: str
    peer: str
    collections: tuple[str, ...]
    bbox: tuple[float, ...] | None = None
    datetime: str | None = None
    window: str | None = None
    as_user: str | None = None
    limit_rate: int | None = None
    state: str = "idle"
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    last_run: str | None = None
    last_error: str | None = None
    added: str = ""

    def status(self, running: bool | None = None) -> JSON:
        """The operators' status document (``GET /admin/mirrors``; the operator page reads
        exactly these keys)."""
        state = self.state
        if state == "running" and running is False:
            state = "interrupted"  # its process is gone; the next run resumes
        return {
            "id": self.id,
            "peer": self.peer,
            "collections": list(self.collections),
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "datetime": self.datetime,
            "window": self.window,
            "state": state,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "last_run": self.last_run,
            "last_error": self.last_error,
        }


_COLUMNS = (
    'id, peer, collections, bbox, datetime, "window", as_user, limit_rate, state, files_total, '
    "files_done, bytes_total, bytes_done, last_run, last_error, added"
)


def _mirror(row: tuple[Any, ...]) -> Mirror:
    return Mirror(
        id=row[0],
        peer=row[1],
        collections=tuple(json.loads(row[2])),
        bbox=tuple(json.loads(row[3])) if row[3] else None,
        datetime=row[4],
        window=row[5],
        as_user=row[6],
        limit_rate=row[7],
        state=row[8],
        files_total=row[9],
        files_done=row[10],
        bytes_total=row[11],
        bytes_done=row[12],
        last_run=row[13],
        last_error=row[14],
        added=row[15],
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MirrorBook:
    """The mirrors and their progress, in ``federation.db`` or the ``federation`` schema
    (``eoshare.statedb``), and their partial files and locks under ``partial_root``."""

    def __init__(self, path: str | Path, partial_root: str | Path) -> None:
        self.path = path
        self.partial_root = Path(partial_root)
        self._db = StateDB(path, area="federation", component="mirrors", migrations=_MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    # --- mirrors ----------------------------------------------------------------------
    def add(self, m: Mirror) -> Mirror:
        if not _ID.match(m.id):
            raise InvalidRequestError(
                f"mirror id {m.id!r} is not valid: lower-case letters, digits, '-' and '_'"
            )
        if not m.collections:
            raise InvalidRequestError("a mirror needs at least one collection")
        if m.window is not None:
            Window.parse(m.window)
        try:
            self._db.execute(
                f"INSERT INTO mirrors ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    m.id, m.peer, json.dumps(list(m.collections)),
                    json.dumps(list(m.bbox)) if m.bbox is not None else None,
                    m.datetime, m.window, m.as_user, m.limit_rate, "idle",
                    0, 0, 0, 0, None, None, m.added or now_iso(),
                ),
            )  # fmt: skip
        except ConflictError as exc:
            raise ConflictError(f"a mirror named {m.id!r} exists") from exc
        return self.get(m.id)

    def get(self, mirror_id: str) -> Mirror:
        row = self._db.one(f"SELECT {_COLUMNS} FROM mirrors WHERE id = ?", (mirror_id,))
        if row is None:
            raise NotFoundError(f"no mirror named {mirror_id!r}")
        return _mirror(row)

    def all(self) -> list[Mirror]:
        rows = self._db.read(f"SELECT {_COLUMNS} FROM mirrors ORDER BY id")
        return [_mirror(r) for r in rows]

    def next_id(self, peer: str) -> str:
        taken = {m.id for m in self.all()}
        n = 1
        while f"{peer}-{n}" in taken:
            n += 1
        return f"{peer}-{n}"[:63]

    def remove(self, mirror_id: str) -> None:
        with self.lock(mirror_id), self._db.tx() as conn:
            if conn.execute("DELETE FROM mirrors WHERE id = ?", (mirror_id,)).rowcount == 0:
                raise NotFoundError(f"no mirror named {mirror_id!r}")
            conn.execute("DELETE FROM mirror_files WHERE mirror = ?", (mirror_id,))
        shutil.rmtree(self.partial_dir(mirror_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            self._lock_path(mirror_id).unlink()

    def set(self, mirror_id: str, **changes: Any) -> None:
        allowed = {
            "state", "files_total", "files_done", "bytes_total", "bytes_done", "last_run",
            "last_error",
        }  # fmt: skip
        if set(changes) - allowed:
            raise InvalidRequestError(f"cannot change {sorted(set(changes) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        self._db.execute(f"UPDATE mirrors SET {sets} WHERE id = ?", (*changes.values(), mirror_id))

    # --- files already mirrored ---------------------------------------------------------
    def done_files(self, mirror_id: str) -> dict[str, tuple[int, str | None]]:
        rows = self._db.read(
            "SELECT store_key, size, checksum FROM mirror_files WHERE mirror = ?", (mirror_id,)
        )
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    def file_done(self, mirror_id: str, key: str, size: int, checksum: str | None) -> None:
        self._db.execute(
            "INSERT INTO mirror_files (mirror, store_key, checksum, size, done) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (mirror, store_key) DO UPDATE SET "
            "checksum = excluded.checksum, size = excluded.size, done = excluded.done",
            (mirror_id, key, checksum, size, now_iso()),
        )

    def forget_file(self, mirror_id: str, key: str) -> None:
        self._db.execute(
            "DELETE FROM mirror_files WHERE mirror = ? AND store_key = ?", (mirror_id, key)
        )

    # --- partial files and locks --------------------------------------------------------
    def partial_dir(self, mirror_id: str) -> Path:
        return self.partial_root / mirror_id

    def partial_path(self, mirror_id: str, key: str, pid: int | None = None) -> Path:
        """Where this process keeps the partial file of store key ``key``."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.partial_dir(mirror_id) / f"{digest}.{pid or os.getpid()}.part"

    def adopt_partial(self, mirror_id: str, key: str) -> Path:
        """This process's partial file for ``key``: one left by a process that is gone is
        renamed to this process's name (the largest, when there are several)."""
        mine = self.partial_path(mirror_id, key)
        prefix = mine.name.split(".", 1)[0]
        left: list[Path] = []
        for p in mine.parent.glob(f"{prefix}.*.part"):
            pid = p.name.split(".")[1]
            if p != mine and pid.isdigit() and not _alive(int(pid)):
                left.append(p)
        if left and not mine.exists():
            best = max(left, key=lambda p: p.stat().st_size)
            os.replace(best, mine)
            left.remove(best)
        for p in left:
            p.unlink(missing_ok=True)
        return mine

    def _lock_path(self, mirror_id: str) -> Path:
        return self.partial_root / f"{mirror_id}.lock"

    @contextlib.contextmanager
    def lock(self, mirror_id: str) -> Iterator[None]:
        """One run of a mirror at a time, across processes and threads."""
        self.partial_root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path(mirror_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConflictError(f"mirror {mirror_id!r} is running already") from exc
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def running(self, mirror_id: str) -> bool:
        """Whether a process runs this mirror now (holds its lock)."""
        path = self._lock_path(mirror_id)
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def statuses(self) -> list[JSON]:
        return [m.status(self.running(m.id)) for m in self.all()]


# --- a run -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FileTask:
    collection: str  # local
    item_id: str
    asset_key: str
    url: str
    key: str  # local store key
    size: int | None
    sha256: str | None
    checksum: str | None  # as the origin wrote it


@dataclass
class MirrorReport:
    mirror: str
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    fetched: int = 0  # bytes over the wire in this run
    resumed: int = 0
    refetched: int = 0
    already: int = 0  # files mirrored by an earlier run
    items: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None  # why nothing ran (outside the window)

    def summary(self) -> str:
        if self.skipped:
            return f"mirror {self.mirror}: {self.skipped}"
        rate = self.fetched / self.seconds if self.seconds else 0.0
        text = (
            f"mirror {self.mirror}: {self.files_done}/{self.files_total} files, "
            f"{format_bytes(self.bytes_done)} of {format_bytes(self.bytes_total)} "
            f"({format_bytes(self.fetched)} fetched in {self.seconds:.1f} s, "
            f"{format_bytes(rate)}/s; {self.resumed} resumed, {self.refetched} refetched, "
            f"{self.already} already here)"
        )
        if self.errors:
            text += f"; {len(self.errors)} error(s), first: {self.errors[0]}"
        return text


# ("plan", total bytes) | ("bytes", n fetched) | ("skip", size of a file already here) |
# ("file", 1 when a file is done)
Progress = Callable[[str, int], None]


class Mirrorer:
    """Runs mirrors into this node's catalogue, store and agreements. Built by the CLI
    (``eoshare mirror run``) and by the node's background loop."""

    def __init__(
        self,
        book: MirrorBook,
        registry: PeerRegistry,
        identity: NodeIdentity,
        catalog: Catalog,
        store: Any,
        access: AccessStore,
        *,
        timeout_s: float = 60.0,
        chunk: int = _CHUNK,
    ) -> None:
        self.book = book
        self.registry = registry
        self.identity = identity
        self.catalog = catalog
        self.store = store
        self.access = access
        self.timeout_s = timeout_s
        self.chunk = chunk
        # set to stop every run at its next chunk (the node's shutdown); partials stay
        self.stop = threading.Event()

    # --- entry points -------------------------------------------------------------------
    def run_due(self, instant: datetime | None = None) -> list[MirrorReport]:
        """Every mirror whose window is open now and that no one runs already."""
        reports = []
        for m in self.book.all():
            if self.stop.is_set():
                break
            if not in_window(m.window, instant) or self.book.running(m.id):
                continue
            try:
                reports.append(self.run(m.id, now=True))
            except ConflictError:
                continue  # another process started it meanwhile
            except EoshareError as exc:
                log.warning("mirror %s failed: %s", m.id, exc.detail)
        return reports

    def run(
        self,
        mirror_id: str,
        *,
        now: bool = False,
        limit_rate: int | None = None,
        progress: Progress | None = None,
        instant: datetime | None = None,
    ) -> MirrorReport:
        """One run of one mirror. Outside its window it does nothing unless ``now``.
        ``limit_rate`` (bytes/s) replaces the mirror's own for this run; 0: no limit.
        Raises ConflictError when it runs already, NotFoundError for an unknown mirror;
        a failure of the run itself is recorded (``last_error``) and raised as
        UpstreamError (or the error's own kind)."""
        m = self.book.get(mirror_id)
        report = MirrorReport(m.id)
        if not now and not in_window(m.window, instant):
            at = (instant or datetime.now(UTC)).astimezone(UTC).strftime("%H:%M UTC")
            report.skipped = f"outside its window {m.window} (now {at}); --now runs it anyway"
            return report
        with self.book.lock(m.id):
            t0 = time.perf_counter()
            self.book.set(m.id, state="running", last_run=now_iso(), last_error=None)
            try:
                rate = m.limit_rate if limit_rate is None else limit_rate
                self._run(m, report, rate or None, progress)
            except KeyboardInterrupt:
                self.book.set(m.id, state="interrupted")
                raise
            except BaseException as exc:
                detail = exc.detail if isinstance(exc, EoshareError) else str(exc) or repr(exc)
                report.errors.insert(0, detail)
                self.book.set(m.id, state="failed", last_error=detail[:500])
                raise
            finally:
                report.seconds = time.perf_counter() - t0
            state = "failed" if report.errors else "done"
            if self.stop.is_set() and report.files_done < report.files_total:
                state = "interrupted"
            self.book.set(
                m.id,
                state=state,
                last_run=now_iso(),
                last_error="; ".join(report.errors)[:500] or None,
                files_done=report.files_done,
                bytes_done=report.bytes_done,
            )
        return report

    # --- the steps ----------------------------------------------------------------------
    def _principal(self, m: Mirror) -> Principal | None:
        if m.as_user is None:
            return None
        from eoshare.access.policy import principal_for

        user = self.access.get_user(m.as_user)
        if user.disabled:
            raise AccessDeniedError(f"user {m.as_user!r} is disabled: mirror {m.id!r} cannot act")
        member = None
        if user.member is not None:
            with contextlib.suppress(NotFoundError):
                member = self.access.get_member(user.member)
        return principal_for(user, member)

    def _peer(self, m: Mirror) -> Peer:
        peer = self.registry.get(m.peer)
        if peer.kind != "eoshare":
            raise InvalidRequestError(f"peer {peer.name!r} is a plain STAC API: it cannot mirror")
        if not peer.enabled:
            raise InvalidRequestError(f"peer {peer.name!r} is disabled ({peer.status})")
        return peer

    def _run(
        self, m: Mirror, report: MirrorReport, rate: int | None, progress: Progress | None
    ) -> None:
        peer = self._peer(m)
        principal = self._principal(m)
        who = f"user {m.as_user!r}" if m.as_user else "this node"
        auth = NodeAuth(self.identity, encode_on_behalf_of(principal) if principal else None)
        bucket = TokenBucket(rate) if rate else None
        with httpx.Client(timeout=self.timeout_s, auth=auth) as client:
            plan: list[tuple[str, JSON, list[FileTask]]] = []
            for cid in m.collections:
                local = self._collection(client, peer, cid, who)
                for item in self._items(client, peer, m, cid):
                    plan.append((local, item, self._files(peer, local, item)))
            done = self.book.done_files(m.id)
            tasks = [t for _, _, files in plan for t in files]
            report.files_total = len(tasks)
            report.bytes_total = sum(t.size or 0 for t in tasks)
            self.book.set(
                m.id, files_total=report.files_total, bytes_total=report.bytes_total,
                files_done=0, bytes_done=0,
            )  # fmt: skip
            if progress is not None:
                progress("plan", report.bytes_total)
            last_saved = time.monotonic()

            def on_bytes(n: int) -> None:
                nonlocal last_saved
                report.fetched += n
                report.bytes_done += n
                if progress is not None:
                    progress("bytes", n)
                if time.monotonic() - last_saved > 1.0:
                    last_saved = time.monotonic()
                    self.book.set(m.id, bytes_done=report.bytes_done)

            for local, item, files in plan:
                held: dict[str, str] = {}
                for t in files:
                    if self.stop.is_set():
                        return
                    if self._already(m, t, done):
                        report.already += 1
                        if progress is not None:
                            progress("skip", t.size or 0)
                    else:
                        before = report.bytes_done
                        try:
                            self._fetch(client, m, t, bucket, report, on_bytes)
                        except UpstreamError as exc:
                            report.errors.append(f"{t.item_id}/{t.asset_key}: {exc.detail}")
                            report.bytes_done = before
                            continue
                        if self.stop.is_set():
                            return
                        report.bytes_done = before
                    report.files_done += 1
                    report.bytes_done += t.size or 0
                    held[t.asset_key] = t.key
                    if progress is not None:
                        progress("file", 1)
                    self.book.set(m.id, files_done=report.files_done, bytes_done=report.bytes_done)
                if held or not files:
                    self._write_item(peer, local, item, held)
                    report.items += 1

    def _collection(self, client: httpx.Client, peer: Peer, cid: str, who: str) -> str:
        """The origin's collection as ``who`` sees it: its agreement becomes this node's
        agreement of the local collection (first), then the collection is written."""
        from urllib.parse import quote

        with upstream(peer.name):
            r = client.get(f"{peer.url}/collections/{quote(cid, safe='')}")
        if r.status_code == 404:
            raise UpstreamError(
                f"peer {peer.name!r} shows no collection {cid!r} to {who}: nothing to mirror"
            )
        doc = json_of(r, peer.name)
        local = local_collection_id(peer.name, cid)
        agreement = origin_agreement(peer, doc, local)
        current = self.access.find_agreement(local)
        if current is None or current.to_dict() != agreement.to_dict():
            try:
                self.access.put_agreement(agreement, who=f"mirror of {peer.name}")
            except NotFoundError as exc:
                raise InvalidRequestError(
                    f"this node does not know member {agreement.provider!r}, the provider of "
                    f"{peer.name}'s {cid!r}: add it first (eoshare members add)"
                ) from exc
        coll = {k: v for k, v in doc.items() if k not in ("links", "eoshare:agreement")}
        coll["id"] = local
        coll["links"] = [
            {**x, "rel": "canonical"}
            for x in doc.get("links", [])
            if isinstance(x, dict) and x.get("rel") == "self"
        ]
        coll["federation:origin"] = peer.name
        coll["federation:origin_collection"] = cid
        coll["federation:agreement"] = doc.get("eoshare:agreement")
        try:
            self.catalog.get_collection(local)
            self.catalog.update_collection(local, coll)
        except NotFoundError:
            self.catalog.create_collection(coll)
        return local

    def _items(self, client: httpx.Client, peer: Peer, m: Mirror, cid: str) -> Iterator[JSON]:
        body: JSON = {"collections": [cid], "limit": 100}
        if m.bbox is not None:
            body["bbox"] = list(m.bbox)
        if m.datetime is not None:
            body["datetime"] = m.datetime
        token: str | None = None
        for _ in range(100_000):
            with upstream(peer.name):
                r = client.post(
                    f"{peer.url}/search", json={**body, **({"token": token} if token else {})}
                )
            page = json_of(r, peer.name)
            features = [f for f in page.get("features", []) if isinstance(f, dict)]
            yield from (f for f in features if isinstance(f.get("id"), str))
            token = next_token_of(page)
            if token is None or not features:
                return

    def _files(self, peer: Peer, local: str, item: JSON) -> list[FileTask]:
        """The assets the origin holds (served by its /download route) of one item."""
        iid = str(item["id"])
        if "/" in iid or iid in (".", "..") or not iid:
            return []
        prefix = f"{peer.url}/download/"
        out = []
        for name, asset in sorted((item.get("assets") or {}).items()):
            if not isinstance(asset, dict):
                continue
            href = asset.get("href")
            if not isinstance(href, str) or not href.startswith(prefix):
                continue  # not held by the origin: it stays a link
            url = href.split("?", 1)[0]
            origin_key = asset.get(KEY_FIELD)
            base = origin_key.rsplit("/", 1)[-1] if isinstance(origin_key, str) else ""
            if not _FILE.match(base):
                ext = os.path.splitext(url.rsplit("/", 1)[-1])[1][:10]
                base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}{ext}").lstrip("._") or "asset"
            size = asset.get("file:size")
            size = size if isinstance(size, int) and not isinstance(size, bool) else None
            checksum = asset.get("file:checksum")
            sha = None
            if isinstance(checksum, str):
                try:
                    sha = hexdigest_from_multihash(checksum)
                except ValueError:
                    sha = None
            out.append(
                FileTask(local, iid, name, url, store_key(local, iid, base), size, sha,
                         checksum if isinstance(checksum, str) else None)
            )  # fmt: skip
        return out

    def _already(self, m: Mirror, t: FileTask, done: dict[str, tuple[int, str | None]]) -> bool:
        """Mirrored by an earlier run, with the origin's current checksum, and still in
        the store at its size."""
        record = done.get(t.key)
        if (
            record is None
            or record[1] != t.checksum
            or (t.size is not None and record[0] != t.size)
        ):
            return False
        try:
            return bool(self.store.stat(t.key).size == record[0])
        except NotFoundError:
            self.book.forget_file(m.id, t.key)
            return False

    def _fetch(
        self,
        client: httpx.Client,
        m: Mirror,
        t: FileTask,
        bucket: TokenBucket | None,
        report: MirrorReport,
        on_bytes: Callable[[int], None],
    ) -> None:
        part = self.book.adopt_partial(m.id, t.key)
        part.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            have = part.stat().st_size if part.exists() else 0
            if t.size is not None and have > t.size:
                part.unlink()
                have = 0
            digest = hashlib.sha256()
            if have:
                with part.open("rb") as f:
                    while block := f.read(1024 * 1024):
                        digest.update(block)
            resumed = have > 0
            if t.size is None or have < t.size:
                streamed = self._stream(client, t, part, have, digest, bucket, on_bytes)
                if streamed is None:
                    return  # stopped: the partial stays for the next run
                have, digest, whole = streamed
                resumed = resumed and not whole
            if resumed:
                report.resumed += 1
            size_ok = t.size is None or have == t.size
            sum_ok = t.sha256 is None or digest.hexdigest() == t.sha256
            if size_ok and sum_ok:
                break
            part.unlink(missing_ok=True)
            what = (
                f"{have} bytes, not the {t.size} of its file:size"
                if not size_ok
                else "bytes whose sha256 does not match its file:checksum"
            )
            if resumed and attempt == 1:
                log.warning("mirror %s: %s had %s; fetching it again", m.id, t.key, what)
                report.refetched += 1
                continue
            raise UpstreamError(f"the origin sent {what}")
        size = self._commit(t, part)
        self.book.file_done(m.id, t.key, size, t.checksum)

    def _commit(self, t: FileTask, part: Path) -> int:
        """Into the store, atomically: a rename where the store is a directory on the same
        file system (the partial is fsync'd already), else ``Store.put_file``."""
        target = self.store.local_path(t.key)
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(part, 0o644)
                size = part.stat().st_size
                os.replace(part, target)
                fd = os.open(target.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return size
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise StorageError(f"cannot move {t.key!r} into the store: {exc}") from exc
        stored = self.store.put_file(t.key, part)
        if t.sha256 is not None and stored.sha256 not in (None, f"sha256:{t.sha256}"):
            self.store.delete(t.key)
            raise UpstreamError("the stored copy does not match its file:checksum")
        part.unlink(missing_ok=True)
        return int(stored.size)

    def _stream(
        self,
        client: httpx.Client,
        t: FileTask,
        part: Path,
        have: int,
        digest: Any,
        bucket: TokenBucket | None,
        on_bytes: Callable[[int], None],
    ) -> tuple[int, Any, bool] | None:
        """Append the rest of the file to ``part``: (its new size, the sha256 of all of
        it, whether the origin sent the whole file again), or None when stopped."""
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        with upstream(t.url), client.stream("GET", t.url, headers=headers) as r:
            if r.status_code == 416 and have:
                return have, digest, False
            if r.status_code not in (200, 206):
                r.read()
                detail = _problem_detail(r)
                raise UpstreamError(f"the origin answered HTTP {r.status_code}: {detail}")
            whole = r.status_code == 200
            if whole:
                have, digest = 0, hashlib.sha256()  # the whole file again
            with part.open("wb" if whole else "ab") as f:
                for chunk in r.iter_raw(self.chunk):
                    if bucket is not None:
                        bucket.take(len(chunk))
                    f.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    on_bytes(len(chunk))
                    if self.stop.is_set():
                        return None
                f.flush()
                os.fsync(f.fileno())
        return have, digest, whole

    def _write_item(self, peer: Peer, local: str, item: JSON, held: dict[str, str]) -> None:
        doc = _harvested_item(peer, item, local)
        assets = dict(doc.get("assets") or {})
        for name, key in held.items():
            asset = dict(assets[name])
            asset[KEY_FIELD] = key
            assets[name] = asset
        doc["assets"] = assets
        for name in held:
            if key_of(doc, assets[name]) is None:  # pragma: no cover - keys are made bound
                raise StorageError(f"mirror made a key not bound to its item: {held[name]}")
        self.catalog.upsert_items([doc], collection_id=local, on_conflict="update")


def origin_agreement(peer: Peer, collection: JSON, local: str) -> Agreement:
    """The origin's agreement of a collection (its ``eoshare:agreement`` as the caller
    sees it), for the local copy ``local``, never wider than the origin's."""
    view = collection.get("eoshare:agreement")
    view = view if isinstance(view, dict) else {}
    provider = view.get("provider") or peer.member
    if not provider:
        raise UpstreamError(
            f"peer {peer.name!r} does not say which member provides {collection.get('id')!r}"
        )
    doc: JSON = {
        "collection": local,
        "provider": provider,
        # unknown: the strictest
        "access": view.get("access") if view.get("access") else "provider",
        "partners": view.get("partners") or [],
        # this node's disaster activations do not open another member's data
        "disaster_release": False,
    }
    for key in ("embargo_days", "reduced_resolution_m", "licence", "terms", "derived_open"):
        if view.get(key) is not None:
            doc[key] = view[key]
    if doc.get("embargo_days") is not None:
        doc["embargo_opens_to"] = view.get("embargo_opens_to") or "members"
    try:
        return agreement_from_dict(doc)
    except InvalidRequestError as exc:
        raise UpstreamError(
            f"peer {peer.name!r} shows an agreement for {collection.get('id')!r} that this "
            f"node cannot read: {exc.detail}"
        ) from exc


def _problem_detail(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.text[:200].replace("\n", " ")
    if isinstance(doc, dict) and isinstance(doc.get("detail"), str):
        return str(doc["detail"])[:300]
    return str(doc)[:200]


def open_mirrors(settings: Any) -> MirrorBook:
    """The mirrors' book of a node (``federation.db`` and ``<data_dir>/mirror-partial``)."""
    return MirrorBook(
        settings.state_db(settings.federation_db_path), settings.data_dir / "mirror-partial"
    )
