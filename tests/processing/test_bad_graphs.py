"""Bad process graphs get openEO error documents with the right status, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import BBOX, Node

LOAD = {
    "process_id": "load_collection",
    "arguments": {"id": "s2", "spatial_extent": BBOX, "temporal_extent": None,
                  "bands": ["B04", "B08"]},
}  # fmt: skip


def post(node: Node, path: str, body: Any, user: str = "alice") -> httpx.Response:
    headers = {"Authorization": f"Bearer basic//{node.tokens[user]}"}
    return httpx.post(f"{node.url}/openeo/1.2{path}", json=body, headers=headers, timeout=60)


def graph(**nodes: Any) -> dict[str, Any]:
    return {"process": {"process_graph": nodes}}


BAD: list[tuple[str, Any, int, str]] = [
    ("not an object", [1, 2], 400, "ProcessGraphMissing"),
    ("no graph", {"process": {}}, 400, "ProcessGraphMissing"),
    ("empty graph", {"process": {"process_graph": {}}}, 400, "ProcessGraphInvalid"),
    (
        "unknown process",
        graph(a={"process_id": "make_coffee", "arguments": {}, "result": True}),
        400,
        "ProcessUnsupported",
    ),
    (
        "code execution is not offered",
        graph(a={"process_id": "run_udf", "arguments": {"data": 1, "udf": "x", "runtime": "Python"},
                 "result": True}),
        400,
        "ProcessUnsupported",
    ),
    (
        "cycle",
        graph(
            a={"process_id": "add", "arguments": {"x": {"from_node": "b"}, "y": 1}},
            b={"process_id": "add", "arguments": {"x": {"from_node": "a"}, "y": 1},
               "result": True},
        ),
        400,
        "ProcessGraphInvalid",
    ),
    (
        "dangling reference",
        graph(a={"process_id": "add", "arguments": {"x": {"from_node": "zz"}, "y": 1},
                 "result": True}),
        400,
        "ProcessGraphInvalid",
    ),
    (
        "two result nodes",
        graph(a={"process_id": "add", "arguments": {"x": 1, "y": 1}, "result": True},
              b={"process_id": "add", "arguments": {"x": 1, "y": 1}, "result": True}),
        400,
        "ProcessGraphInvalid",
    ),
    (
        "wrong argument type",
        graph(load={**LOAD, "arguments": {**LOAD["arguments"], "spatial_extent": "everywhere"}},
              save={"process_id": "save_result",
                    "arguments": {"data": {"from_node": "load"}, "format": "GTiff"},
                    "result": True}),
        400,
        "ProcessParameterInvalid",
    ),
    (
        "unknown band",
        graph(load={**LOAD, "arguments": {**LOAD["arguments"], "bands": ["B99"]}},
              save={"process_id": "save_result",
                    "arguments": {"data": {"from_node": "load"}, "format": "GTiff"},
                    "result": True}),
        400,
        "ProcessParameterInvalid",
    ),
    (
        "unknown format",
        graph(load=LOAD, save={"process_id": "save_result",
                               "arguments": {"data": {"from_node": "load"}, "format": "XLSX"},
                               "result": True}),
        400,
        "FormatUnsupported",
    ),
    (
        "unknown collection",
        graph(load={**LOAD, "arguments": {**LOAD["arguments"], "id": "nope"}},
              save={"process_id": "save_result",
                    "arguments": {"data": {"from_node": "load"}, "format": "GTiff"},
                    "result": True}),
        404,
        "CollectionNotFound",
    ),
    (
        "a type error inside a process",
        graph(a={"process_id": "add", "arguments": {"x": "text", "y": [1]}, "result": True}),
        400,
        "ProcessGraphInvalid",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("why", "body", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_graph_is_an_openeo_error(
    node: Node, why: str, body: Any, status: int, code: str
) -> None:
    r = post(node, "/result", body)
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["code"] == code, doc
    assert doc["message"] and doc["id"]
    # the same graph is reported by /validation (bodies that are graphs at all)
    if status != 404 and isinstance(body, dict) and body.get("process", {}).get("process_graph"):
        v = post(node, "/validation", body)
        assert v.status_code == 200
        if code not in ("ProcessParameterInvalid", "FormatUnsupported", "ProcessGraphInvalid"):
            assert [e["code"] for e in v.json()["errors"]] == [code]


def test_huge_extent_is_refused_synchronously(node: Node) -> None:
    # the whole scene at 100 m is ~1.2 million pixels a band; a node that allows fewer
    # in a synchronous call says so and points to batch jobs
    body = graph(
        load={**LOAD, "arguments": {**LOAD["arguments"], "spatial_extent": None}},
        save={"process_id": "save_result",
              "arguments": {"data": {"from_node": "load"}, "format": "GTiff"}, "result": True},
    )  # fmt: skip
    r = post(node, "/result", body)
    # the test node allows 2 million pixels (see conftest): two full bands are refused
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "ProcessGraphComplexity"


def test_jobs_need_a_user_and_are_private(node: Node) -> None:
    body = graph(a={"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True})
    anon = httpx.post(f"{node.url}/openeo/1.2/jobs", json=body)
    assert anon.status_code == 401 and anon.json()["code"] == "AuthenticationRequired"
    created = post(node, "/jobs", body)
    assert created.status_code == 201
    job_id = created.headers["OpenEO-Identifier"]
    bob = {"Authorization": f"Bearer basic//{node.tokens['bob']}"}
    r = httpx.get(f"{node.url}/openeo/1.2/jobs/{job_id}", headers=bob)
    assert r.status_code == 404 and r.json()["code"] == "JobNotFound"
    r = httpx.get(f"{node.url}/openeo/1.2/jobs/{job_id}/results",
                  headers={"Authorization": f"Bearer basic//{node.tokens['alice']}"})  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "JobNotFinished"


def test_sync_of_a_plain_value(node: Node) -> None:
    body = graph(a={"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True})
    r = post(node, "/result", body)
    assert r.status_code == 200, r.text
    assert r.json() == 3


def test_openeo_bearer_form_is_accepted_outside_openeo(node: Node) -> None:
    # an openEO client's session header reaches result assets under /download: the same
    # token, in openEO's 'basic//TOKEN' form, must count there too (and a wrong one fails)
    private = f"{node.url}/collections/s2-private"
    assert httpx.get(private).status_code == 404
    alice = {"Authorization": f"Bearer basic//{node.tokens['alice']}"}
    assert httpx.get(private, headers=alice).status_code == 200
    wrong = httpx.get(private, headers={"Authorization": "Bearer basic//nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"]
    empty = httpx.get(private, headers={"Authorization": "Bearer basic//"})
    assert empty.status_code == 401
