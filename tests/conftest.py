"""Fixtures shared by the whole suite.

Real data comes from ``../shared/data`` beside the repository (or ``EOSHARE_SHARED_DATA``);
a test that needs it fails, loudly, when it is absent. Under ``CI=true`` a skipped test
fails the run: everything the suite needs is installed by the project's own scripts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    configured = os.environ.get("EOSHARE_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real EO test data (see its PROVENANCE.md)."""
    root = _shared_root()
    if not (root / "PROVENANCE.md").is_file():
        pytest.fail(
            f"the shared test data is missing: expected {root} (set EOSHARE_SHARED_DATA)",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def stac_schemas() -> Path:
    """The offline STAC schema mirror; importing its shim keeps validators off the network."""
    root = _shared_root().parent / "stac-schemas"
    if not (root / "offline.py").is_file():
        pytest.fail(f"the offline STAC schema mirror is missing: expected {root}", pytrace=False)
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get("CI") == "true" and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) were skipped; a skip counts as a failure",
            red=True,
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """A PostgreSQL cluster with a pgstac template database, for the whole session
    (tests/pg.py); ``pg.new_catalog_url()`` gives each user a fresh database."""
    from pg import pg_cluster

    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where a test's stores of node state live, on each engine (eoshare.statedb):
    ``state_location(name)`` is the SQLite file ``tmp_path/name``, or the URL of a fresh
    PostgreSQL database of the session cluster (one per test, shared by its stores)."""
    if request.param == "sqlite":
        return lambda name: tmp_path / name
    cluster = request.getfixturevalue("pg")
    url = cluster.url(cluster.new_state_database())
    return lambda name: url
