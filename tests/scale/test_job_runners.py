"""Jobs shared by several processes of a node: a process that starts (another worker, a
worker restarted by ``serve --workers N``) fails the jobs whose runner died, never the
jobs another live process is running."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eoshare.leases import Leases
from eoshare.processing.service import ProcessingService

NONE: Any = None  # the services a recovery does not touch


def _service(tmp_path: Path, ttl_s: float = 30.0) -> ProcessingService:
    return ProcessingService(
        NONE, NONE, NONE, NONE,
        db_path=tmp_path / "processing.db", work_dir=tmp_path / "work",
        leases=Leases(tmp_path / "node.db"), runner_ttl_s=ttl_s,
    )  # fmt: skip


def test_a_starting_process_leaves_another_live_process_jobs_alone(tmp_path: Path) -> None:
    a = _service(tmp_path, ttl_s=1.5)
    job = a.jobs.create_job("alice", "m1", {"process_graph": {}})
    assert a.jobs.set_status(job.id, "running", only_from=("created",))
    a._claim(job.id)
    orphan = a.jobs.create_job("alice", "m1", {"process_graph": {}})
    assert a.jobs.set_status(orphan.id, "running", only_from=("created",))  # nobody's
    b = _service(tmp_path)
    try:
        # a runs its job (its runner lease is renewed): b's start leaves it alone
        time.sleep(2.0)
        c = _service(tmp_path)
        c.close()
        assert b.jobs.get_job(job.id).status == "running"
        assert b.jobs.get_job(orphan.id).status == "error"
        # a dies (no clean close: its heartbeat simply stops)
        a._beat.set()
        time.sleep(2.0)
        d = _service(tmp_path)
        d.close()
        failed = b.jobs.get_job(job.id)
        assert failed.status == "error", failed
    finally:
        a._beat.set()
        b.close()
