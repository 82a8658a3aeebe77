"""The job table and the stored user-defined processes, in the state database.

Plain SQL with ``?`` parameters and ISO text times (``eoshare.statedb`` runs it on
SQLite, ``<data_dir>/processing.db`` beside ``access.db``, or on PostgreSQL, the
``processing`` schema of ``EOSHARE_DATABASE``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eoshare.processing.errors import JobNotFound, ProcessGraphNotFound
from eoshare.statedb import Conn, Migration, StateDB

JSON = dict[str, Any]

_MIGRATIONS = [
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    member TEXT,
    title TEXT,
    description TEXT,
    process TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE TABLE IF NOT EXISTS job_logs (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS process_graphs (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    member TEXT,
    shared INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (owner, id)
);
""",
    )
]

STATUSES = ("created", "queued", "running", "canceled", "finished", "error")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    id: str
    owner: str
    member: str | None
    title: str | None
    description: str | None
    process: JSON
    status: str
    progress: float
    created: str
    updated: str
    result: JSON | None = None
    error: str | None = None
    extra: JSON = field(default_factory=dict)

    def summary(self) -> JSON:
        """A job as ``GET /jobs`` lists it."""
        out: JSON = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
        }
        if self.status in ("running", "queued", "finished"):
            out["progress"] = round(self.progress, 1)
        if self.description:
            out["description"] = self.description
        return out

    def to_dict(self) -> JSON:
        """A job as ``GET /jobs/{id}`` describes it."""
        return {**self.summary(), "process": self.process}


class JobStore:
    """Jobs, their logs and stored process graphs. Writes one at a time (``StateDB.tx``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = StateDB(path, area="processing", component="jobs", migrations=_MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Conn]:
        with self._db.tx() as conn:
            yield conn

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params)

    # --- jobs -------------------------------------------------------------------------
    _COLUMNS = (
        "id, owner, member, title, description, process, status, progress, created, "
        "updated, result, error"
    )

    @staticmethod
    def _job(row: tuple[Any, ...]) -> Job:
        return Job(
            id=row[0],
            owner=row[1],
            member=row[2],
            title=row[3],
            description=row[4],
            process=json.loads(row[5]),
            status=row[6],
            progress=float(row[7]),
            created=row[8],
            updated=row[9],
            result=json.loads(row[10]) if row[10] else None,
            error=row[11],
        )

    def create_job(
        self,
        owner: str,
        member: str | None,
        process: JSON,
        *,
        title: str | None = None,
        description: str | None = None,
    ) -> Job:
        job_id = f"j-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(6)}"
        now = now_iso()
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO jobs ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id, owner, member, title, description, json.dumps(process),
                    "created", 0.0, now, now, None, None,
                ),
            )  # fmt: skip
        return self.get_job(job_id)

    def get_job(self, job_id: str, owner: str | None = None) -> Job:
        """A job; JobNotFound when it is absent or not ``owner``'s."""
        rows = self._read(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows or (owner is not None and rows[0][1] != owner):
            raise JobNotFound(f"The batch job '{job_id}' does not exist.")
        return self._job(rows[0])

    def list_jobs(
        self, owner: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[Job]:
        if owner is None:
            rows = self._read(
                f"SELECT {self._COLUMNS} FROM jobs ORDER BY created DESC, id LIMIT ? OFFSET ?",
                (limit, offset),
            )
        else:
            rows = self._read(
                f"SELECT {self._COLUMNS} FROM jobs WHERE owner = ? "
                "ORDER BY created DESC, id LIMIT ? OFFSET ?",
                (owner, limit, offset),
            )
        return [self._job(r) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"title", "description", "process", "status", "progress", "result", "error"}
        sets = []
        params: list[Any] = []
        for key, value in fields.items():
            if key not in allowed:
                raise ValueError(key)
            if key in ("process", "result") and value is not None:
                value = json.dumps(value)
            sets.append(f"{key} = ?")
            params.append(value)
        sets.append("updated = ?")
        params.append(now_iso())
        with self._tx() as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job_id))

    def set_status(self, job_id: str, status: str, *, only_from: tuple[str, ...] = ()) -> bool:
        """Move a job to ``status`` (only from one of ``only_from`` when given)."""
        with self._tx() as conn:
            if only_from:
                marks = ", ".join("?" for _ in only_from)
                cur = conn.execute(
                    f"UPDATE jobs SET status = ?, updated = ? WHERE id = ? AND status IN ({marks})",
                    (status, now_iso(), job_id, *only_from),
                )
            else:
                cur = conn.execute(
                    "UPDATE jobs SET status = ?, updated = ? WHERE id = ?",
                    (status, now_iso(), job_id),
                )
            return cur.rowcount > 0

    def delete_job(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def interrupted(self) -> list[str]:
        """Jobs left queued or running by a node that stopped (called at start)."""
        rows = self._read("SELECT id FROM jobs WHERE status IN ('queued', 'running')")
        return [r[0] for r in rows]

    # --- logs -------------------------------------------------------------------------
    def log(self, job_id: str, level: str, message: str) -> None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM job_logs WHERE job_id = ?", (job_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO job_logs VALUES (?, ?, ?, ?, ?)",
                (job_id, int(row[0]) + 1, now_iso(), level, message[:4000]),
            )

    def logs(self, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JSON]:
        rows = self._read(
            "SELECT seq, time, level, message FROM job_logs WHERE job_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (job_id, after, limit),
        )
        return [{"id": str(r[0]), "time": r[1], "level": r[2], "message": r[3]} for r in rows]

    # --- user-defined processes -------------------------------------------------------
    def put_process_graph(self, owner: str, member: str | None, spec: JSON, shared: bool) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO process_graphs VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (owner, id) "
                "DO UPDATE SET member = excluded.member, shared = excluded.shared, "
                "spec = excluded.spec, updated = excluded.updated",
                (owner, spec["id"], member, 1 if shared else 0, json.dumps(spec), now_iso()),
            )

    def visible_process_graphs(self, owner: str, member: str | None) -> list[JSON]:
        """The caller's own process graphs and those shared with their member."""
        rows = self._read(
            "SELECT owner, spec FROM process_graphs WHERE owner = ? "
            "OR (shared = 1 AND member IS NOT NULL AND member = ?) ORDER BY id, owner",
            (owner, member),
        )
        out = []
        for row_owner, spec in rows:
            d = json.loads(spec)
            if row_owner != owner:
                d["eoshare:owner"] = row_owner
            out.append(d)
        return out

    def get_process_graph(self, owner: str, member: str | None, pg_id: str) -> JSON:
        """The caller's own process graph ``pg_id``, else one shared with their member."""
        found = [s for s in self.visible_process_graphs(owner, member) if s["id"] == pg_id]
        found.sort(key=lambda s: "eoshare:owner" in s)
        if not found:
            raise ProcessGraphNotFound(f"User-defined process '{pg_id}' does not exist.")
        return found[0]

    def delete_process_graph(self, owner: str, pg_id: str) -> None:
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM process_graphs WHERE owner = ? AND id = ?", (owner, pg_id)
            )
            if cur.rowcount == 0:
                raise ProcessGraphNotFound(f"User-defined process '{pg_id}' does not exist.")
