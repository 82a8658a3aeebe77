"""``eoshare jobs`` on a node's jobs database, and jobs left running by a node that
stopped: marked failed when it starts again, never left "running"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eoshare.processing.jobs import JobStore
from eoshare.settings import load_settings

GRAPH = {"process_graph": {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2},
                                 "result": True}}}  # fmt: skip


def eoshare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args], capture_output=True, text=True, check=False
    )


def _location(state_location: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The jobs database on this engine; the CLI finds it as an operator sets it."""
    location = state_location("processing.db")
    if isinstance(location, str):
        monkeypatch.setenv("EOSHARE_DATABASE", location)
    return location


def test_jobs_list_logs_cancel_results(
    tmp_path: Path, state_location: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(state_location, monkeypatch)
    store = JobStore(location)
    running = store.create_job("alice", "kenya", GRAPH, title="long one")
    store.set_status(running.id, "running")
    store.log(running.id, "info", "computing")
    done = store.create_job("bob", None, GRAPH)
    store.close()

    out = eoshare("jobs", "list", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert running.id in out.stdout and done.id in out.stdout and "long one" in out.stdout
    mine = eoshare("jobs", "list", "--user", "bob", "--json", "--data-dir", str(tmp_path))
    assert done.id in mine.stdout and running.id not in mine.stdout

    logs = eoshare("jobs", "logs", running.id, "--data-dir", str(tmp_path))
    assert "computing" in logs.stdout
    cancel = eoshare("jobs", "cancel", running.id, "--data-dir", str(tmp_path))
    assert cancel.returncode == 0 and "canceled" in cancel.stdout
    store = JobStore(location)
    assert store.get_job(running.id).status == "canceled"
    store.close()

    results = eoshare("jobs", "results", done.id, "--data-dir", str(tmp_path))
    assert results.returncode == 1
    assert results.stderr.strip().count("\n") == 0 and "no results yet" in results.stderr
    missing = eoshare("jobs", "logs", "j-nope", "--data-dir", str(tmp_path))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert eoshare("jobs", "cancel", "--help").returncode == 0


def test_a_job_running_when_the_node_stopped_is_marked_failed(
    tmp_path: Path, state_location: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = _location(state_location, monkeypatch)
    store = JobStore(location)
    job = store.create_job("alice", "kenya", GRAPH)
    store.set_status(job.id, "running")
    queued = store.create_job("alice", "kenya", GRAPH)
    store.set_status(queued.id, "queued")
    store.close()

    from eoshare.api.app import create_app

    app = create_app(load_settings(data_dir=tmp_path))  # the node starts again
    try:
        jobs = app.state.processing.jobs
        for job_id in (job.id, queued.id):
            again = jobs.get_job(job_id)
            assert again.status == "error"
            assert "stopped" in (again.error or "")
            assert any("stopped" in e["message"] for e in jobs.logs(job_id))
    finally:
        app.state.processing.close()
        app.state.catalog.close()
        app.state.access_services.close()
