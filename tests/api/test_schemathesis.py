"""Schemathesis fuzzes every operation of the OpenAPI document (``/api``) against a
real server of its own, as three callers: anonymous, a member's analyst (a bearer token)
and an operator (may create and delete things). Whatever it sends, the server answers
without a 5xx, with a status code, media type, headers and body that the document
declares for that operation (response-schema conformance included).

Checks left out, and why:

* ``positive_data_acceptance``: expects a 2xx for every schema-valid request, but valid
  ids of things that do not exist rightly answer 404, and most routes need rights the
  fuzzer does not have;
* ``negative_data_rejection``, ``missing_required_header``, ``unsupported_method``,
  ``ignored_auth``: they judge requests the fuzzer builds outside the schema (coverage
  phase); this test draws schema-valid cases only;
* ``use_after_free``, ``ensure_resource_availability``: stateful (OpenAPI links), which
  the document does not declare;
* ``max_response_time``: timing is not a contract (2 shared cores in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from eoshare.api.errors import PROBLEM
from security.nodes import CID, IID, build_small_catalog

from .conftest import ADMIN_TOKEN, S2, populate, serve

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# operations the fuzzer leaves alone, and why
SKIP = {
    "GET /alerts/stream": "an endless server-sent event stream (tests/disaster reads it)",
}
MAX_EXAMPLES = 10
# the routes that render pictures or stream archives cost the most per example
HEAVY = ("/tiles/", "/download/", "/orders/")
HEAVY_EXAMPLES = 4


@dataclass(frozen=True)
class Fuzzed:
    url: str
    headers: dict[str, dict[str, str]]


def _token(http: httpx.Client, username: str, body: dict[str, Any]) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = http.put(f"/admin/users/{username}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    r = http.post(f"/admin/users/{username}/tokens", json={"days": 1}, headers=admin)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@pytest.fixture(scope="session")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Fuzzed]:
    data_dir = tmp_path_factory.mktemp("eoshare-fuzz")
    populate(f"sqlite:///{data_dir / 'catalog.db'}", shared_data / "stac")
    build_small_catalog(data_dir)  # one item whose asset this node holds (orders, downloads)
    with serve(data_dir) as url:
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.put(
                "/admin/members/ke-kspa",
                json={"name": "Kenya Space Agency", "country": "KE"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert r.status_code == 200, r.text
            member = _token(http, "fuzz-analyst", {"member": "ke-kspa", "roles": ["analyst"]})
            operator = _token(http, "fuzz-operator", {"roles": ["operator"]})
        yield Fuzzed(
            url,
            {
                "anonymous": {},
                "member": {"Authorization": f"Bearer {member}"},
                "operator": {"Authorization": f"Bearer {operator}"},
            },
        )
        log = (data_dir / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture(scope="session")
def api_schema(fuzzed: Fuzzed) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.url}/api")


@pytest.mark.parametrize("caller", ["anonymous", "member", "operator"])
def test_every_operation_conforms(api_schema: Any, fuzzed: Fuzzed, caller: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for operation in operations:
        if operation.label in SKIP:
            continue
        try:
            _fuzzer(operation, fuzzed.url, fuzzed.headers[caller], calls)()
        except (Exception, BaseExceptionGroup) as exc:  # hypothesis raises failure groups
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
    print(caller, {k: v for k, v in sorted(calls.items())})
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _fuzzer(operation: Any, base_url: str, headers: dict[str, str], calls: dict[str, int]) -> Any:
    heavy = any(part in operation.path for part in HEAVY)

    @settings(
        max_examples=HEAVY_EXAMPLES if heavy else MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        calls[operation.label] = calls.get(operation.label, 0) + 1
        case.validate_response(response, checks=CHECKS)

    return fuzz


def _real_cases(fuzzed: Fuzzed, http: httpx.Client, headers: dict[str, str]) -> list[tuple]:
    """Requests with real ids (the fuzzer's random ones mostly find nothing), so that
    the declared success answers are checked too."""
    item = http.get("/search", params={"collections": S2, "limit": 1}).json()["features"][0]
    iid = item["id"]
    cases: list[tuple] = [
        ("GET", "/", {}, None, None),
        ("GET", "/conformance", {}, None, None),
        ("GET", "/collections", {}, None, None),
        ("GET", "/collections/{collection_id}", {"collection_id": S2}, None, None),
        ("GET", "/collections/{collection_id}/items", {"collection_id": S2}, {"limit": 2}, None),
        ("GET", "/collections/{collection_id}/items/{item_id}",
         {"collection_id": S2, "item_id": iid}, {"sign": "true"}, None),
        ("GET", "/search", {}, {"limit": 3, "collections": S2}, None),
        ("POST", "/search", {}, None, {"limit": 3, "ids": [iid]}),
        ("GET", "/auth/me", {}, None, None),
        ("GET", "/usage", {}, None, None),
        ("GET", "/download/{collection_id}/{item_id}/{asset_key}",
         {"collection_id": CID, "item_id": IID, "asset_key": "data"}, None, None),
    ]  # fmt: skip
    if headers:
        r = http.post("/orders", json={"ids": [{"collection": CID, "id": IID}]}, headers=headers)
        assert r.status_code == 201, r.text
        order = {"order_id": r.json()["id"]}
        cases += [
            ("GET", "/orders/{order_id}", order, None, None),
            ("GET", "/orders/{order_id}/manifest.json", order, None, None),
            ("GET", "/orders/{order_id}/urls.txt", order, None, None),
            ("GET", "/orders/{order_id}/order.meta4", order, None, None),
            ("GET", "/orders/{order_id}/download.zip", order, None, None),
            ("GET", "/admin/tokens", {}, None, None),
        ]
    return cases


@pytest.mark.parametrize("caller", ["anonymous", "member", "operator"])
def test_real_answers_conform(api_schema: Any, fuzzed: Fuzzed, caller: str) -> None:
    headers = fuzzed.headers[caller]
    failures = []
    with httpx.Client(base_url=fuzzed.url, timeout=30) as http:
        for method, path, params, query, body in _real_cases(fuzzed, http, headers):
            operation = api_schema[path][method]
            kwargs: dict[str, Any] = {"path_parameters": params, "query": query}
            if body is not None:
                kwargs.update(body=body, media_type="application/json")
            case = operation.Case(**kwargs)
            response = case.call(base_url=fuzzed.url, headers=headers, timeout=30)
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{method} {path} [{response.status_code}]: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)


def test_the_document_declares_what_errors_look_like(api_schema: Any, fuzzed: Fuzzed) -> None:
    """Every operation declares the problem documents the error handlers answer (400,
    401, 403, 404, ...; openEO's own error shape under /openeo), never FastAPI's 422."""
    doc = httpx.get(f"{fuzzed.url}/api").json()
    assert doc["components"]["schemas"]["Problem"]["required"] == [
        "type", "title", "status", "detail"
    ]  # fmt: skip
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status in ("400", "401", "403", "404", "503"):
                content = responses[status]["content"]
                media = "application/json" if path.startswith("/openeo/") else PROBLEM
                assert list(content) == [media], (method, path, status)
