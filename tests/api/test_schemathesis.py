"""Schemathesis fuzzes every operation of the OpenAPI document (``/api``) against a
real server of its own (it may create and delete things with the admin token):
whatever it sends, the server answers without a 5xx, with the media type it declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance

from .conftest import ADMIN_TOKEN, populate, serve


@pytest.fixture(scope="session")
def fuzz_url(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("eoshare-fuzz")
    populate(f"sqlite:///{data_dir / 'catalog.db'}", shared_data / "stac")
    with serve(data_dir) as url:
        yield url
        log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture(scope="session")
def api_schema(fuzz_url: str) -> schemathesis.Schema:
    return schemathesis.openapi.from_url(f"{fuzz_url}/api")


MAX_EXAMPLES = 25


def test_no_server_errors(api_schema: schemathesis.Schema, fuzz_url: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for operation in operations:
        try:
            _fuzzer(operation, fuzz_url, calls)()
        except Exception as exc:
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    print({k: v for k, v in sorted(calls.items())})
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _fuzzer(operation: Any, base_url: str, calls: dict[str, int]) -> Any:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(
            base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )
        calls[operation.label] = calls.get(operation.label, 0) + 1
        case.validate_response(response, checks=[not_a_server_error, content_type_conformance])

    return fuzz
