"""eoshare on SQLite against eoshare on PostgreSQL/pgstac, side by side in one run.

The same N realistic items (``make_items.py``) are loaded into a SQLite catalogue and,
through the ``Catalog`` protocol, into a fresh pgstac database of a PostgreSQL cluster
started here (``tests/pg.py``: initdb + pg_ctl in a temporary folder, 127.0.0.1); the
load into a second pgstac database with ``pypgstac``'s own Loader is timed beside it.
Then one uvicorn process per catalogue answers the same searches (``bench_catalog``'s
kinds, plus 5 ids with their collection), and p50/p95 go to ``RESULTS.md``.

stac-fastapi-pgstac is measured too when it is importable (``pip install
stac-fastapi-pgstac``); it serves the pypgstac-loaded database.

    python benchmarks/bench_pgstac.py --items 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import bench_catalog as bc  # noqa: E402

SHARED_STAC = ROOT.parent / "shared" / "data" / "stac"


def _collections(items_path: Path) -> list[dict[str, Any]]:
    """The collections the items name: the shared real ones where they exist."""
    names: set[str] = set()
    with open(items_path, "rb") as f:
        for line in f:
            names.add(json.loads(line)["collection"])
    docs = []
    for cid in sorted(names):
        # landsat-8-c2-l2 items come from Planetary Computer's landsat-c2-l2
        path = SHARED_STAC / f"collection_{cid.replace('landsat-8-', 'landsat-')}_pc.json"
        if path.exists():
            doc = json.loads(path.read_text())
            doc["links"] = []
            doc["id"] = cid
        else:
            doc = {
                "type": "Collection", "stac_version": "1.1.0", "id": cid, "description": cid,
                "license": "other", "links": [],
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [[None, None]]}},
            }  # fmt: skip
        docs.append(doc)
    return docs


def _items(path: Path) -> Any:
    with open(path, "rb") as f:
        for line in f:
            yield json.loads(line)


def load_eoshare(url: str, items_path: Path, collections: list[dict[str, Any]]) -> float:
    from eoshare.catalog import open_catalog

    catalog = open_catalog(url)
    try:
        for doc in collections:
            catalog.create_collection(doc)
        t0 = time.perf_counter()
        catalog.upsert_items(_items(items_path))
        return time.perf_counter() - t0
    finally:
        catalog.close()


def load_pypgstac(dsn: str, items_path: Path, collections: list[dict[str, Any]]) -> float:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    coll_file = WORK / "bench-pgstac-collections.ndjson"
    coll_file.write_text("".join(json.dumps(c) + "\n" for c in collections))
    db = PgstacDB(dsn=dsn)
    try:
        loader = Loader(db=db)
        loader.load_collections(str(coll_file), Methods.insert)
        t0 = time.perf_counter()
        loader.load_items(str(items_path), Methods.insert)
        return time.perf_counter() - t0
    finally:
        db.close()


class Uvicorn(bc.Server):
    """An eoshare (or stac-fastapi-pgstac) process on a free 127.0.0.1 port."""

    def __init__(
        self, env: dict[str, str], app: list[str], data_dir: Path, python: str = sys.executable
    ) -> None:
        self.port = bc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "EOSHARE_DATA_DIR": str(data_dir), "EOSHARE_LOG_LEVEL": "warning"}
        full.update(env)
        self.proc = subprocess.Popen(
            [python, "-m", "uvicorn", *app, "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            env=full, cwd=ROOT,
        )  # fmt: skip


def _ids_with_collection(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    picked = rng.sample(ids, 5)
    return [("ids", ",".join(picked)), ("collections", "landsat-8-c2-l2,sentinel-2-l2a")]


def kinds(token_paging: bool) -> list[bc.Kind]:
    out = [k for k in bc.KINDS if not k.name.startswith("paged")]
    out.append(bc.Kind("ids (5) + collections", bc.TARGET_OTHER_MS, _ids_with_collection))
    out.append(bc.Kind("paged search, page 1", bc.TARGET_OTHER_MS, bc._page(1)))
    if token_paging:
        out.append(bc.Kind("paged search, page 50", bc.TARGET_OTHER_MS, bc._page(50)))
    return out


def measure(
    base: str, ids: list[str], args: argparse.Namespace, token_paging: bool
) -> dict[str, Any]:
    saved = bc.KINDS
    bc.KINDS = kinds(token_paging)
    try:
        check = bc.check_paging
        if not token_paging:
            bc.check_paging = lambda client, base: None  # its own tokens
        lats = bc.measure(
            base, ids, requests=args.requests, warmup=args.warmup, budget_s=60.0, seed=args.seed
        )
    finally:
        bc.KINDS = saved
        bc.check_paging = check
    return {lat.kind: lat for lat in lats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument(
        "--stac-fastapi-python",
        default=str(WORK / "sfp-venv" / "bin" / "python"),
        help="a Python with stac-fastapi-pgstac 7.2 and uvicorn installed (its own venv: "
        "python -m venv benchmarks/.work/sfp-venv && benchmarks/.work/sfp-venv/bin/pip "
        "install stac-fastapi-pgstac==7.2.0 uvicorn)",
    )
    args = parser.parse_args(argv)

    WORK.mkdir(exist_ok=True)
    items_path = WORK / f"items-{args.items}.ndjson"
    if not items_path.exists():
        subprocess.run(
            [sys.executable, str(HERE / "make_items.py"), str(args.items), str(items_path)],
            check=True,
        )
    collections = _collections(items_path)
    ids = [i["id"] for i in _items(items_path)]

    from pg import pg_cluster

    tmp = Path(tempfile.mkdtemp(prefix="bench-pgstac-"))
    results: dict[str, dict[str, Any]] = {}
    loads: dict[str, float] = {}
    with pg_cluster() as cluster:
        sqlite_url = f"sqlite:///{tmp / 'catalog.db'}"
        pg_url = cluster.new_catalog_url()
        raw_dsn = cluster.url(cluster.new_database())
        print(f"loading {args.items} items", flush=True)
        loads["eoshare → SQLite"] = load_eoshare(sqlite_url, items_path, collections)
        loads["eoshare → pgstac"] = load_eoshare(pg_url, items_path, collections)
        loads["pypgstac Loader → pgstac"] = load_pypgstac(raw_dsn, items_path, collections)
        for name, s in loads.items():
            print(f"  {name:28s} {s:7.1f} s  {args.items / s:7.0f} items/s", flush=True)
        for analyze_url in (pg_url, raw_dsn):
            cluster_db = analyze_url.rsplit("/", 1)[1]
            cluster.execute("ANALYZE", database=cluster_db)

        servers: list[tuple[str, list[str], dict[str, str], bool]] = [
            ("eoshare on SQLite", ["eoshare.api.app:create_app", "--factory"],
             {"EOSHARE_CATALOG": sqlite_url}, True),
            ("eoshare on pgstac", ["eoshare.api.app:create_app", "--factory"],
             {"EOSHARE_CATALOG": pg_url}, True),
        ]  # fmt: skip
        sfp_python = Path(args.stac_fastapi_python)
        if sfp_python.exists():
            user_host, db = raw_dsn.removeprefix("postgresql://").rsplit("/", 1)
            user, hostport = user_host.split("@")
            host, port = hostport.split(":")
            env = {"PGUSER": user, "PGPASSWORD": "", "PGHOST": host, "PGPORT": port,
                   "PGDATABASE": db, "POSTGRES_USER": user, "POSTGRES_PASS": "",
                   "POSTGRES_HOST_READER": host, "POSTGRES_HOST_WRITER": host,
                   "POSTGRES_PORT": port, "POSTGRES_DBNAME": db}  # fmt: skip
            servers.append(
                ("stac-fastapi-pgstac 7.2", ["stac_fastapi.pgstac.app:create_app", "--factory"],
                 env, False)
            )  # fmt: skip
        else:
            print(f"{sfp_python} is missing: stac-fastapi-pgstac left out", flush=True)

        import httpx

        for name, app, env, tokens in servers:
            print(name, flush=True)
            python = str(sfp_python) if name.startswith("stac-fastapi") else sys.executable
            server = Uvicorn(env, app, tmp, python)
            try:
                with httpx.Client(timeout=60) as client:
                    server.wait_ready(client)
                results[name] = measure(server.base, ids, args, tokens)
            finally:
                server.stop()

    names = list(results)
    all_kinds = [k.name for k in kinds(True)]
    info = bc.machine()
    lines = [f"## pgstac side by side, {args.items // 1000}k items", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        f"- method: `python benchmarks/bench_pgstac.py --items {args.items}`; "
        f"{args.requests} requests per kind after {args.warmup} warm-up ones, sequential, one "
        "client, HTTP to one uvicorn worker on 127.0.0.1; PostgreSQL 15 from tests/pg.py "
        "(fsync off, shared_buffers 128MB)",
        "",
        "| load | seconds | items/s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {s:.1f} | {args.items / s:.0f} |" for n, s in loads.items()]
    lines += ["", "| query, p50 / p95 ms | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---:|" * len(names))
    for kind in all_kinds:
        cells = []
        for n in names:
            lat = results[n].get(kind)
            cells.append("-" if lat is None else f"{lat.pct(50):.1f} / {lat.pct(95):.1f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_results:
        bc.update_results(section, lines[0].removeprefix("## "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
