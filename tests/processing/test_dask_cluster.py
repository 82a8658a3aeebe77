"""``EOSHARE_DASK``: a real Dask scheduler and two ``dask worker`` processes started on
127.0.0.1; the node sends its synchronous and batch work to them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from live import free_port, live_node

from .conftest import ingest, setup_access
from .test_openeo_client import check_ndvi, connect, ndvi_graph


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    files = [(logs / name).open("wb") for name in ("scheduler.log", "worker0.log", "worker1.log")]
    procs = [
        subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
            stdout=files[0], stderr=subprocess.STDOUT,
        )
    ]  # fmt: skip
    try:
        for n in range(2):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                     "--dashboard-address", ":0", "--memory-limit", "1GiB"],
                    stdout=files[n + 1], stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 90
        with Client(address, timeout="60s") as client:
            while len(client.scheduler_info()["workers"]) < 2:
                if time.monotonic() > deadline:
                    pytest.fail("the Dask workers did not join:\n" + _logs(logs))
                time.sleep(0.5)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in files:
            f.close()


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(folder.glob("*.log")))


def _tasks_done(address: str) -> int:
    with Client(address, timeout="30s") as client:
        counts: int = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.transition_counter
        )
        return counts


def test_sync_and_batch_ndvi_on_a_dask_cluster(
    cluster: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path_factory.mktemp("dask-node")
    ingest(data_dir, "s2")
    tokens = setup_access(data_dir)
    before = _tasks_done(cluster)
    with live_node(data_dir, {"EOSHARE_DASK": cluster}) as url:
        from .conftest import Node

        node = Node(url, data_dir, tokens)
        con = connect(node)
        ndvi_graph(con).download(tmp_path / "sync.tif")
        check_ndvi(tmp_path / "sync.tif")
        after_sync = _tasks_done(cluster)
        assert after_sync > before  # the cluster did the work
        job = ndvi_graph(con).create_job()
        job.start_and_wait(max_poll_interval=1, print=lambda *a: None)
        files = [f for f in job.get_results().download_files(tmp_path / "job")
                 if f.suffix in (".tif", ".tiff")]  # fmt: skip
        check_ndvi(files[0])
        assert _tasks_done(cluster) > after_sync
