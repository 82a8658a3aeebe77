"""The openEO test suite (PyPI ``openeo-test-suite`` 0.2.2) against the live node.

It runs in its own virtual environment (``scripts/install-openeo-suite.sh``; ``make test``
installs it) because it pins openapi-core 0.18. The openEO API specification and the
process specifications it reads come from ``../shared/openeo`` through an ``assets/``
folder of symbolic links; STAC schemas from the offline mirror ``../shared/stac-schemas``.

The subset that must pass (README, "openEO test suite"): the general API compliance
tests, the collection tests, and the functional process-metadata tests except the
processes whose specs in openeo-processes-dask differ from openeo-processes 2.0.0-rc.2
(``SPEC_DRIFT``). The non-functional metadata tests (description texts) are not run: they
compare prose of two releases of the process specifications.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import Node
from .oidc_issuer import CLIENT_ID, CLIENT_SECRET

REPO = Path(__file__).resolve().parents[2]
SUITE_PYTHON = REPO / ".venv" / "openeo-suite" / "bin" / "python"
SHARED = REPO.parent / "shared"
# processes whose parameter or return schemas in openeo-processes-dask 2026.9 differ from
# openeo-processes 2.0.0-rc.2 (the library ships its own copy of the specs)
SPEC_DRIFT = (
    "exp", "rename_labels", "aggregate_temporal", "artanh", "filter_bbox", "load_collection",
    "array_append", "cosh", "neq", "cos", "eq", "arcosh", "arcsin", "ln", "arccos", "sin",
    "sgn", "tanh", "log",
)  # fmt: skip


# processes all of whose examples pass with the HTTP runner (of 953 examples: 319 pass;
# the rest fail mostly on null/no-data semantics inside openeo-processes-dask)
PROCESSES_PASSING = (
    "aggregate_spatial",
    "array_contains",
    "array_create",
    "array_find_label",
    "filter_labels",
    "if",
    "is_nodata",
    "load_collection",
    "load_stac",
    "ndvi",
    "pi",
    "rearrange",
    "reduce_spatial",
    "resample_cube_spatial",
    "resample_cube_temporal",
    "resample_spatial",
    "save_result",
    "text_begins",
    "text_contains",
    "text_ends",
    "trim_cube",
)


def run_suite(node: Node, tmp_path: Path, *targets: str, extra: tuple[str, ...] = ()) -> str:
    if not SUITE_PYTHON.exists():
        pytest.fail(
            f"the openEO test suite is not installed: run scripts/install-openeo-suite.sh "
            f"(expected {SUITE_PYTHON})",
            pytrace=False,
        )
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "openeo-api").symlink_to(SHARED / "openeo" / "openeo-api")
    (assets / "processes").symlink_to(SHARED / "openeo" / "processes")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENEO_", "PYTEST_"))}
    env.update(
        {
            "PYTHONPATH": str(SHARED / "stac-schemas"),
            "HOME": str(tmp_path),  # the client's refresh-token store
            "OPENEO_AUTH_METHOD": "client_credentials",
            "OPENEO_AUTH_CLIENT_ID": CLIENT_ID,
            "OPENEO_AUTH_CLIENT_SECRET": CLIENT_SECRET,
            "OPENEO_AUTH_PROVIDER_ID": "p0",
        }
    )
    cmd = [
        str(SUITE_PYTHON), "-m", "pytest", "-p", "openeo_test_suite.lib.pytest_plugin",
        "-p", "no:cacheprovider", "--pyargs", *targets,
        "--openeo-backend-url", f"{node.url}/openeo/1.2/", "-q", "-rfE", *extra,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    out = proc.stdout + proc.stderr
    (tmp_path / "suite.log").write_text(out)
    if os.environ.get("EOSHARE_SUITE_LOG"):
        Path(os.environ["EOSHARE_SUITE_LOG"]).write_text(out)
    if os.environ.get("EOSHARE_SUITE_SURVEY"):  # list what passes, without failing
        return out
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"\d+ passed", out), out[-3000:]
    assert not re.search(r"\d+ (failed|error)", out), out[-6000:]
    return out


# General tests that cannot pass against any back-end with these assets: the "empty"
# tests read payload folders that the openeo-api assets do not have (StopIteration,
# IndexError); GET /processes trips over the spec's ``oneOf`` of process schemas, where
# a plain schema such as {"type": ["number", "null"]} is reported valid under none.
GENERAL_SKIP = (
    "test_empty_PUT_process_graphs_process_id", "test_empty_POST_jobs",
    "test_empty_PATCH_jobs_job_id", "test_empty_POST_result", "test_empty_POST_validation",
    "test_GET_processes",
)  # fmt: skip


def test_general_api_compliance(node: Node, tmp_path: Path) -> None:
    out = run_suite(
        node,
        tmp_path,
        "openeo_test_suite.tests.general",
        extra=("-k", " and ".join(f"not {t}" for t in GENERAL_SKIP)),
    )
    assert re.search(r"3[6-9] passed", out), out[-2000:]


def test_collections(node: Node, tmp_path: Path) -> None:
    run_suite(node, tmp_path, "openeo_test_suite.tests.collections")


def test_process_metadata(node: Node, tmp_path: Path) -> None:
    drift = " or ".join(f"functional[{p}]" for p in SPEC_DRIFT)
    out = run_suite(
        node,
        tmp_path,
        "openeo_test_suite.tests.processes.metadata",
        extra=("-k", f"not non_functional and not ({drift})"),
    )
    passed = int(re.search(r"(\d+) passed", out).group(1))  # type: ignore[union-attr]
    assert passed >= 90, out[-2000:]


def test_individual_processes_with_the_http_runner(node: Node, tmp_path: Path) -> None:
    out = run_suite(
        node, tmp_path, "openeo_test_suite.tests.processes.processing",
        extra=("--runner", "http", "--processes", ",".join(PROCESSES_PASSING)),
    )  # fmt: skip
    passed = int(re.search(r"(\d+) passed", out).group(1))  # type: ignore[union-attr]
    assert passed >= 40, out[-2000:]
