"""Several processes, one embedded node: ``serve --workers 2`` (A) and a second, separate
``eoshare serve`` (B) on the same data directory. Requests alternate between them; a
change made through one decides the very next request on the other (no cache serves a
stale decision), background work runs in one process at a time, and ``/metrics`` adds
up the workers' counts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from live import free_port

TOKEN = "multiprocess-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SCENE = "LC08_L1TP_016037_20170813_20170814_01_RT"
INTERVAL_S = 1.0


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "EOSHARE_DATA_DIR": str(data_dir),
            "EOSHARE_API__ADMIN_TOKEN": TOKEN,
            "EOSHARE_LOG_LEVEL": "info",
            "EOSHARE_HOUSEKEEPING__INTERVAL_S": str(INTERVAL_S),
        }
    )
    return env


def _cli(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        env=_env(data_dir), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Proc:
    url: str
    popen: subprocess.Popen[bytes]
    log: Path


@contextmanager
def _serve(data_dir: Path, name: str, workers: int) -> Iterator[Proc]:
    port = free_port()
    log = data_dir.parent / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers)],
            env=_env(data_dir), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if popen.poll() is not None:
                pytest.fail(f"{name} exited:\n{log.read_text()}", pytrace=False)
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer:\n{log.read_text()}", pytrace=False)
            time.sleep(0.2)
        yield Proc(url, popen, log)
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@dataclass
class Node:
    a: Proc
    b: Proc
    data_dir: Path
    token: str
    item: str


@pytest.fixture(scope="module")
def node(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data_dir = tmp_path_factory.mktemp("multiprocess") / "node"
    raster = shared_data / "raster" / f"{SCENE}_B4.TIF"
    _cli(data_dir, "ingest", str(raster), "-c", "mp", "--create-collection", "--id", SCENE)
    with ExitStack() as stack:
        a = stack.enter_context(_serve(data_dir, "a", workers=2))
        b = stack.enter_context(_serve(data_dir, "b", workers=1))
        for code, country in (("mp-prov", "KE"), ("mp-other", "NP")):
            r = httpx.put(
                f"{a.url}/admin/members/{code}", json={"name": code, "country": country},
                headers=ADMIN,
            )  # fmt: skip
            assert r.status_code == 200, r.text
        r = httpx.put(
            f"{b.url}/admin/users/alice",
            json={"member": "mp-other", "roles": ["analyst"]},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        token = _new_token(a)
        r = httpx.put(
            f"{a.url}/admin/agreements/mp",
            json={"provider": "mp-prov", "access": "open"},
            headers=ADMIN,
        )
        assert r.status_code == 200, r.text
        yield Node(a, b, data_dir, token, SCENE)


def _new_token(proc: Proc) -> str:
    r = httpx.post(f"{proc.url}/admin/users/alice/tokens", json={"days": 1}, headers=ADMIN)
    assert r.status_code == 201, r.text
    secret: str = r.json()["token"]
    return secret


def _user(node: Node) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


def _search_ids(url: str, headers: dict[str, str]) -> list[str]:
    r = httpx.get(f"{url}/search", params={"collections": "mp"}, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return [f["id"] for f in r.json()["features"]]


def test_an_agreement_changed_on_one_decides_the_next_request_on_the_other(node: Node) -> None:
    user = _user(node)
    item_path = f"/collections/mp/items/{node.item}"
    for _ in range(3):
        for p in (node.a, node.b):
            assert _search_ids(p.url, user) == [node.item]
            assert httpx.get(p.url + item_path, headers=user).status_code == 200
        # closed to its provider on one process: the other refuses the very next request
        for changer, other in ((node.a, node.b), (node.b, node.a)):
            r = httpx.put(
                f"{changer.url}/admin/agreements/mp",
                json={"provider": "mp-prov", "access": "provider"},
                headers=ADMIN,
            )
            assert r.status_code == 200, r.text
            assert _search_ids(other.url, user) == []
            assert httpx.get(other.url + item_path, headers=user).status_code == 404
            r = httpx.put(
                f"{other.url}/admin/agreements/mp",
                json={"provider": "mp-prov", "access": "open"},
                headers=ADMIN,
            )
            assert r.status_code == 200, r.text
            assert _search_ids(changer.url, user) == [node.item]


def _signed_href(proc: Proc, node: Node) -> str:
    r = httpx.get(
        f"{proc.url}/collections/mp/items/{node.item}?sign=true", headers=_user(node), timeout=30
    )
    assert r.status_code == 200, r.text
    href: str = r.json()["assets"]["B4"]["href"]
    return href.removeprefix(proc.url)


def test_a_token_revoked_on_one_is_refused_on_the_other_at_once(node: Node) -> None:
    secret = _new_token(node.b)
    headers = {"Authorization": f"Bearer {secret}"}
    item_path = f"/collections/mp/items/{node.item}"
    r = httpx.get(f"{node.a.url}{item_path}?sign=true", headers=headers)
    assert r.status_code == 200, r.text
    link = r.json()["assets"]["B4"]["href"].removeprefix(node.a.url)
    rng = {"Range": "bytes=0-1023"}
    # the link is checked on both (and its holder's answer cached on both)
    for p in (node.a, node.b, node.a, node.b):
        assert httpx.get(p.url + link, headers=rng).status_code == 206
        assert httpx.get(p.url + item_path, headers=headers).status_code == 200
    token_id = secret.removeprefix("eos_").split("_", 1)[0]
    assert httpx.delete(f"{node.a.url}/admin/tokens/{token_id}", headers=ADMIN).status_code == 204
    for p in (node.b, node.a):
        assert httpx.get(p.url + item_path, headers=headers).status_code == 401
        r = httpx.get(p.url + link, headers=rng)
        assert r.status_code == 403, r.text


def test_signing_keys_rotated_and_removed_by_the_cli_follow_in_every_process(
    node: Node,
) -> None:
    old = _signed_href(node.a, node)
    old_kid = re.search(r"[?&]kid=([^&]+)", old)
    assert old_kid is not None
    _cli(node.data_dir, "keys", "rotate")
    new = _signed_href(node.b, node)
    assert f"kid={old_kid[1]}" not in new
    rng = {"Range": "bytes=0-1023"}
    for p in (node.a, node.b):
        # the new key verifies in a process that did not sign with it; the old one too
        assert httpx.get(p.url + new, headers=rng).status_code == 206
        assert httpx.get(p.url + old, headers=rng).status_code == 206
    _cli(node.data_dir, "keys", "remove", old_kid[1])
    for p in (node.a, node.b):
        assert httpx.get(p.url + old, headers=rng).status_code == 403
        assert httpx.get(p.url + new, headers=rng).status_code == 206


def test_housekeeping_runs_once_per_interval_and_a_killed_holder_is_replaced(
    node: Node,
) -> None:
    def passes() -> list[tuple[float, str]]:
        out = []
        for proc in (node.a, node.b):
            for line in proc.log.read_text(errors="replace").splitlines():
                if '"housekeeping: ' not in line:
                    continue
                doc = json.loads(line)
                out.append((float(doc.get("created", 0) or 0), str(doc["holder"])))
        return out

    before = len(passes())
    time.sleep(5 * INTERVAL_S)
    window = passes()[before:]
    # three server processes share the node; one pass per interval, not three
    assert 3 <= len(window) <= 7, window
    holders = {h for _, h in window}
    assert len(holders) == 1, holders
    holder = holders.pop()
    pid = int(holder.split(":")[1])
    os.kill(pid, signal.SIGKILL)
    # the lease (1.5 intervals) lapses and another process takes the work over
    deadline = time.monotonic() + 10 * INTERVAL_S
    while time.monotonic() < deadline:
        taken = {h for _, h in passes()[before + len(window) :]} - {holder}
        if taken:
            break
        time.sleep(0.2)
    assert taken, "no process took the housekeeping over"
    later = len(passes())
    time.sleep(3 * INTERVAL_S)
    assert len(passes()) - later <= 5


def test_a_deleted_item_is_gone_from_tiles_and_downloads_of_every_process(node: Node) -> None:
    user = _user(node)
    item: dict[str, Any] = httpx.get(
        f"{node.a.url}/collections/mp/items/{node.item}", headers=user
    ).json()
    paths = [item["assets"]["B4"]["href"].removeprefix(node.a.url)]
    tile_path = _first_tile(node, item)
    for p in (node.a, node.b, node.a, node.b):
        assert httpx.get(p.url + tile_path, headers=user).status_code == 200
        for path in paths:
            r = httpx.get(p.url + path, headers={**user, "Range": "bytes=0-99"})
            assert r.status_code == 206
    r = httpx.delete(f"{node.a.url}/collections/mp/items/{node.item}", headers=ADMIN)
    assert r.status_code in (200, 204), r.text
    for p in (node.b, node.a):
        assert httpx.get(p.url + tile_path, headers=user).status_code == 404
        for path in paths:
            r = httpx.get(p.url + path, headers={**user, "Range": "bytes=0-99"})
            assert r.status_code == 404


def _first_tile(node: Node, item: dict[str, Any]) -> str:
    import morecantile

    west, south, east, north = item["bbox"]
    t = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 9)
    return (
        f"/tiles/collections/mp/items/{node.item}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
        "?assets=B4&rescale=0,30000"
    )


def test_metrics_add_up_the_requests_every_worker_answered(node: Node) -> None:
    route = "/collections/{collection_id}/queryables"
    for _ in range(40):
        # a new connection each time: the kernel hands them to either worker of A
        assert httpx.get(f"{node.a.url}/collections/mp/queryables").status_code == 200
    seen = []
    for _ in range(6):
        r = httpx.get(f"{node.a.url}/metrics", headers=ADMIN)
        assert r.status_code == 200, r.text
        seen.append(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in r.text.splitlines()
                if line.startswith("eoshare_http_requests_total{")
                and f'route="{route}"' in line
                and 'status="200"' in line
            )
        )
    # whichever worker answers the scrape, it counts both workers' requests
    assert seen == [40.0] * 6, seen
