"""The official openEO Python client against a live node on the real Sentinel-2 scene:
authentication, collections, NDVI synchronously and as a batch job (equal to NDVI
computed with numpy from the original files), results published back with provenance
and the strictest agreement, cancel, and the access rules."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openeo
import pytest
import rasterio
from openeo.rest import OpenEoApiError
from openeo.rest.auth.auth import BasicBearerAuth

from .conftest import BBOX, PASSWORD, S2, Node, numpy_ndvi

TIME = ["2020-02-01", "2020-03-01"]


def connect(node: Node, user: str | None = "alice", *, basic: bool = False) -> openeo.Connection:
    con = openeo.connect(node.url)
    if user is not None and basic:
        con.authenticate_basic(user, PASSWORD)
    elif user is not None:
        con.auth = BasicBearerAuth(node.tokens[user])
    return con


def ndvi_graph(con: openeo.Connection, collection: str = "s2") -> Any:
    cube = con.load_collection(
        collection, spatial_extent=BBOX, temporal_extent=TIME, bands=["B04", "B08"]
    )
    return cube.ndvi().save_result("GTiff")


def check_ndvi(path: Path) -> None:
    with rasterio.open(path) as ds:
        got = ds.read(1)
        transform = list(ds.transform)[:6]
        assert ds.crs.to_epsg() == 32629
        assert ds.res == (100.0, 100.0)
        assert ds.width * ds.height > 100_000
    want = numpy_ndvi(transform, got.shape)
    assert got.shape == want.shape
    assert np.isnan(got).sum() == np.isnan(want).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_authenticate_with_token_and_basic(node: Node) -> None:
    assert connect(node).describe_account()["user_id"] == "alice"
    assert connect(node, basic=True).describe_account()["user_id"] == "alice"
    with pytest.raises(OpenEoApiError) as err:
        connect(node, None).describe_account()
    assert err.value.http_status_code == 401
    assert err.value.code == "AuthenticationRequired"
    with pytest.raises(OpenEoApiError) as err:
        connect(node, None).authenticate_basic("alice", "wrong-password")
    assert err.value.code == "CredentialsInvalid"


def test_collections_are_what_the_caller_may_see(node: Node) -> None:
    alice = {c["id"] for c in connect(node).list_collections()}
    bob = {c["id"] for c in connect(node, "bob").list_collections()}
    anon = {c["id"] for c in connect(node, None).list_collections()}
    assert {"s2", "s2-private", "s2-reduced"} <= alice
    assert "s2-private" not in bob and "s2-private" not in anon
    assert {"s2", "s2-reduced"} <= bob
    meta = connect(node).describe_collection("s2")
    dims = meta["cube:dimensions"]
    assert dims["bands"]["values"] == ["B04", "B08", "SCL"]
    assert {d["type"] for d in dims.values()} == {"spatial", "temporal", "bands"}
    names = {b["name"]: b.get("common_name") for b in meta["summaries"]["eo:bands"]}
    assert names["B04"] == "red" and names["B08"] == "nir"
    with pytest.raises(OpenEoApiError) as err:
        connect(node, "bob").describe_collection("s2-private")
    assert err.value.http_status_code == 404 and err.value.code == "CollectionNotFound"


def test_sync_ndvi_equals_numpy(node: Node, tmp_path: Path) -> None:
    out = tmp_path / "ndvi.tif"
    ndvi_graph(connect(node)).download(out)
    check_ndvi(out)


def test_batch_ndvi_is_published_with_provenance(node: Node, tmp_path: Path) -> None:
    con = connect(node)
    job = ndvi_graph(con, "s2-private").create_job(title="ndvi private")
    job.start_and_wait(max_poll_interval=1, print=lambda *a: None)
    assert job.status() == "finished"
    results = job.get_results()
    files = [f for f in results.download_files(tmp_path) if f.suffix in (".tif", ".tiff")]
    assert len(files) == 1
    check_ndvi(Path(files[0]))
    meta = results.get_metadata()
    props = meta["properties"]
    assert props["eoshare:job"] == job.job_id
    lineage = json.loads(props["processing:lineage"])
    assert "ndvi1" in lineage["process_graph"] or any(
        n["process_id"] == "ndvi" for n in lineage["process_graph"].values()
    )
    assert "openeo-processes-dask" in props["processing:software"]
    derived = [link["href"] for link in meta["links"] if link["rel"] == "derived_from"]
    assert any(h.endswith(f"/s2-private/items/{S2}") for h in derived)
    # the result is a catalogued item under the inputs' (strictest) agreement
    cid = meta["collection"]
    assert cid.startswith("results-kenya-")
    auth = {"Authorization": f"Bearer {node.tokens['alice']}"}
    coll = httpx.get(f"{node.url}/collections/{cid}", headers=auth).json()
    assert coll["eoshare:agreement"]["access"] == "provider"
    assert coll["eoshare:agreement"]["licence"] == "proprietary"
    item_url = f"{node.url}/collections/{cid}/items/{job.job_id}"
    assert httpx.get(item_url, headers=auth).status_code == 200
    # bob could not see the input, so he cannot see the result either
    bob = {"Authorization": f"Bearer {node.tokens['bob']}"}
    assert httpx.get(item_url, headers=bob).status_code == 404
    assert httpx.get(item_url).status_code == 404
    found = httpx.get(f"{node.url}/search", params={"ids": job.job_id}, headers=bob).json()
    assert found["features"] == []


def test_results_of_open_inputs_are_open(node: Node, tmp_path: Path) -> None:
    job = ndvi_graph(connect(node)).create_job()
    job.start_and_wait(max_poll_interval=1, print=lambda *a: None)
    meta = job.get_results().get_metadata()
    assert meta["collection"] == "results-kenya"
    url = f"{node.url}/collections/results-kenya/items/{job.job_id}"
    assert httpx.get(url).status_code == 200  # anyone: every input was open


def test_cancel_a_running_job(node: Node) -> None:
    con = connect(node)
    cube = con.load_collection("s2", temporal_extent=TIME, bands=["B04", "B08"])
    # a heavier graph over the whole scene, so that it is still running when cancelled
    big = cube.ndvi().apply(lambda x: x.power(2).sqrt()).save_result("netCDF")
    job = big.create_job()
    job.start()
    deadline = time.monotonic() + 60
    while job.status() != "running":
        assert time.monotonic() < deadline, job.logs()
        time.sleep(0.2)
    job.stop()
    assert job.status() == "canceled"
    time.sleep(2)
    assert job.status() == "canceled"
    with pytest.raises(OpenEoApiError) as err:
        job.get_results().get_metadata()
    assert err.value.code == "JobNotFinished"
    assert any(entry["message"] == "canceled" for entry in job.logs())


def test_reduced_caller_is_refused_processing(node: Node) -> None:
    with pytest.raises(OpenEoApiError) as err:
        ndvi_graph(connect(node, "bob"), "s2-reduced").download()
    assert err.value.http_status_code == 403
    assert err.value.code == "PermissionsInsufficient"
    assert "300 m" in err.value.message


def test_hidden_collection_is_not_found_for_processing(node: Node) -> None:
    with pytest.raises(OpenEoApiError) as err:
        ndvi_graph(connect(node, "bob"), "s2-private").download()
    assert err.value.http_status_code == 404
    assert err.value.code == "CollectionNotFound"


def test_embargoed_scenes_are_absent(node: Node, tmp_path: Path) -> None:
    # bob sees the collection (its scenes open one day) but none of its scenes yet
    assert "s2-embargo" in {c["id"] for c in connect(node, "bob").list_collections()}
    with pytest.raises(OpenEoApiError) as err:
        ndvi_graph(connect(node, "bob"), "s2-embargo").download()
    assert err.value.http_status_code == 400
    assert "no scene that you may process" in err.value.message
    # the provider's own users process them
    out = tmp_path / "ndvi.tif"
    ndvi_graph(connect(node), "s2-embargo").download(out)
    check_ndvi(out)
