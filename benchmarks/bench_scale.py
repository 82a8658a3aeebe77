"""Scale: eoshare on SQLite, eoshare on pgstac and stac-fastapi-pgstac 7.2, side by side
at 100k and 1M items, with and without an access filter, checked against numpy/shapely.

The items (``make_items.py``: realistic copies of the shared real ones):

* **100k**: ``items-100000.ndjson``;
* **1M**: the same 100k, each acquired 10 times (revisits): copy ``k`` (0..9) of an item
  has the id ``<id>-r<k>`` and every date shifted by ``k`` x 5 days, the footprint kept.

The catalogues, built once into ``benchmarks/.work/scale/`` and reused by later runs:

* **SQLite**: through eoshare's loader (``Catalog.upsert_items``, batches of 1000, in a
  child process of its own: items/s and peak RSS);
* **pgstac**: 100k through eoshare's loader (``PgstacCatalog.upsert_items``: its load
  rate), 1M by replicating the 100k rows inside PostgreSQL (``INSERT ... SELECT``: the
  same revisits, the fastest way to a 1M pgstac database; no loader is timed there).

PostgreSQL 15 (``tests/pg.py``'s settings) runs from a data folder kept in the work folder.
stac-fastapi-pgstac 7.2 (its own venv, see ``--stac-fastapi-python``) serves the very same
pgstac database as eoshare on pgstac: same rows, same engine, same buffers.

Each server is one uvicorn worker on 127.0.0.1, one at a time. Per query kind: ``--requests``
sequential requests after a warm-up (p50/p95), without and with the access filter (for
eoshare: a member's bearer token, the node's agreements hide one collection and embargo
part of another; for stac-fastapi-pgstac, which has no access control, the same
visibility filter sent as a CQL2 ``filter`` by the client). Then throughput: 16 client
threads for ``--seconds`` over a mix of the kinds. Before timing, the first page (and
``numberMatched`` when given) of sample queries of every kind is compared with an
independent computation over the items (numpy over the facts, shapely for footprints).

    python benchmarks/bench_scale.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
SCALE = WORK / "scale"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import bench_catalog as bc  # noqa: E402

BASE_ITEMS = 100_000
COPIES = 10
STEP = timedelta(days=5)
DATE_KEYS = ("datetime", "start_datetime", "end_datetime")


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def base_path() -> Path:
    path = WORK / f"items-{BASE_ITEMS}.ndjson"
    if not path.exists():
        from make_items import write_ndjson

        write_ndjson(BASE_ITEMS, path)
    return path


def base_items() -> Iterator[dict[str, Any]]:
    with open(base_path(), "rb") as f:
        for line in f:
            yield orjson.loads(line)


def revisit(item: dict[str, Any], k: int) -> dict[str, Any]:
    """Copy ``k`` of an item: id ``<id>-r<k>``, dates ``k`` x STEP later (copy 0 is the
    item itself)."""
    if k == 0:
        return item
    props = dict(item["properties"])
    for key in DATE_KEYS:
        value = props.get(key)
        if isinstance(value, str):
            props[key] = _fmt(_parse(value) + k * STEP)
    return {**item, "id": f"{item['id']}-r{k}", "properties": props}


def items(size: int) -> Iterator[dict[str, Any]]:
    if size == BASE_ITEMS:
        yield from base_items()
        return
    if size != BASE_ITEMS * COPIES:
        raise SystemExit(f"sizes: {BASE_ITEMS} or {BASE_ITEMS * COPIES}")
    for k in range(COPIES):
        for item in base_items():
            yield revisit(item, k)


def collections() -> list[dict[str, Any]]:
    import bench_pgstac

    return bench_pgstac._collections(base_path())


# --- building the catalogues --------------------------------------------------------------
def sqlite_path(size: int) -> Path:
    return SCALE / f"catalog-{size}.db"


def build_sqlite_child(size: int) -> dict[str, Any]:
    """Load ``size`` items into a fresh SQLite catalogue with eoshare's loader; the 1M one
    starts from a copy of the 100k one and loads the 900k revisits on top. Runs in a child
    process of its own (peak RSS is this process's)."""
    import resource

    from eoshare.catalog import open_catalog

    db = sqlite_path(size)
    part = db.with_suffix(".part.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{part}{suffix}").unlink(missing_ok=True)
    start_from = 0
    if size > BASE_ITEMS:
        shutil.copyfile(sqlite_path(BASE_ITEMS), part)
        start_from = BASE_ITEMS
    catalog = open_catalog(f"sqlite:///{part}")
    if start_from == 0:
        for doc in collections():
            catalog.create_collection(doc)
    stream = (item for i, item in enumerate(items(size)) if i >= start_from)
    t0 = time.perf_counter()
    report = catalog.upsert_items(stream, on_conflict="error", batch_size=1000)
    catalog.close()
    seconds = time.perf_counter() - t0
    part.replace(db)
    return {
        "items": report.inserted,
        "seconds": seconds,
        "items_per_s": report.inserted / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "db_mb": db.stat().st_size / 2**20,
    }


def replicate_sqlite_child(size: int) -> dict[str, Any]:
    """The 1M SQLite catalogue by replicating the 100k one's rows in SQL (the revisits of
    ``revisit``), when the loader would not fit the time there is: no load rate."""
    import sqlite3

    db = sqlite_path(size)
    part = db.with_suffix(".part.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{part}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(sqlite_path(BASE_ITEMS), part)
    conn = sqlite3.connect(part, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")

    def shift(value: str | None, k: int) -> str | None:
        return None if value is None else _fmt(_parse(value) + k * STEP)

    def doc(content: str, k: int) -> str:
        return orjson.dumps(revisit(orjson.loads(content), k)).decode()

    conn.create_function("rv_dt", 2, shift, deterministic=True)
    conn.create_function("rv_doc", 2, doc, deterministic=True)
    (top,) = conn.execute("SELECT max(rowid) FROM items").fetchone()
    span = 10 ** len(str(top))
    t0 = time.perf_counter()
    for k in range(1, COPIES):
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO items (rowid, collection, id, dt_start, dt_end, minx, miny, maxx, "
            "maxy, geom, content) SELECT rowid + ?1, collection, id || '-r' || ?2, "
            "rv_dt(dt_start, ?2), rv_dt(dt_end, ?2), minx, miny, maxx, maxy, geom, "
            "rv_doc(content, ?2) FROM items WHERE rowid < ?3",
            (k * span, k, span),
        )
        conn.execute(
            "INSERT INTO items_rtree SELECT key + ?1, minx, maxx, miny, maxy, "
            "rv_dt(dt_start, ?2), rv_dt(dt_end, ?2) FROM items_rtree WHERE key < ?3",
            (2 * k * span, k, 2 * span),
        )
        conn.execute(
            "INSERT INTO items_fts (rowid, text) SELECT f.rowid + ?1, "
            "i.id || '-r' || ?2 || substr(f.text, length(i.id) + 1) FROM items_fts f "
            "JOIN items i ON i.rowid = f.rowid WHERE f.rowid < ?3",
            (k * span, k, span),
        )
        conn.execute("COMMIT")
        print(f"  copy {k} after {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    conn.execute("UPDATE collection_counts SET n = n * ?", (COPIES,))
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    part.replace(db)
    return {
        "items": size,
        "seconds": time.perf_counter() - t0,
        "replicated": True,
        "db_mb": db.stat().st_size / 2**20,
    }


def build_sqlite(size: int, replicate: bool = False) -> dict[str, Any]:
    info = SCALE / f"load-sqlite-{size}.json"
    if sqlite_path(size).exists() and info.exists():
        return dict(json.loads(info.read_text()))
    if size > BASE_ITEMS:
        build_sqlite(BASE_ITEMS)
    how = "_replicate_sqlite" if replicate and size > BASE_ITEMS else "_build_sqlite"
    print(f"[{size}] {how.strip('_')} ...", flush=True)
    out = subprocess.run(
        [sys.executable, __file__, how, str(size)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    info.write_text(json.dumps(result))
    return result


class Postgres:
    """PostgreSQL 15 on a free 127.0.0.1 port, from a data folder kept in the work folder
    (``tests/pg.py``'s settings, shared_buffers raised to ``--shared-buffers``)."""

    def __init__(self, shared_buffers: str = "1GB") -> None:
        import pwd

        from pg import PG_BIN, SETTINGS

        self.bin = PG_BIN
        self.root = SCALE / "pg"
        self.data = self.root / "data"
        self.port = bc.free_port()
        self.settings = {**SETTINGS, "shared_buffers": shared_buffers, "max_wal_size": "4GB"}
        self.runas: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            self.root.mkdir(parents=True, exist_ok=True)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.runas = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.runas, *args], check=True, capture_output=True, timeout=600)

    def start(self) -> None:
        self.owned = False
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # already running (another run of this script): shared
            lines = pid_file.read_text().splitlines()
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(lines[0]), 0)
                self.port = int(lines[3])
                return
        self.owned = True
        if not (self.data / "PG_VERSION").exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        options += f" -p {self.port} -k {self.root}"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
        )

    def stop(self) -> None:
        if not self.owned:
            return
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> Any:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else None

    def exists(self, database: str) -> bool:
        return bool(self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{database}'"))


@contextlib.contextmanager
def postgres(shared_buffers: str = "1GB") -> Iterator[Postgres]:
    pg = Postgres(shared_buffers)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def pg_db(size: int) -> str:
    return f"scale_{size}"


def build_pgstac(pg: Postgres, size: int) -> dict[str, Any]:
    """The pgstac database of ``size`` items (see the module's docstring)."""
    name = pg_db(size)
    info = SCALE / f"load-pgstac-{size}.json"
    if pg.exists(name) and info.exists():
        return dict(json.loads(info.read_text()))
    if size > BASE_ITEMS:
        build_pgstac(pg, BASE_ITEMS)
    pg.execute(f"DROP DATABASE IF EXISTS {name}_part")
    if size == BASE_ITEMS:
        print(f"[{size}] loading pgstac with eoshare's loader ...", flush=True)
        pg.execute(f"CREATE DATABASE {name}_part")
        out = subprocess.run(
            [sys.executable, __file__, "_build_pgstac", pg.url(f"{name}_part")],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        print(f"[{size}] replicating pgstac rows in SQL ...", flush=True)
        pg.execute(f"CREATE DATABASE {name}_part TEMPLATE {pg_db(BASE_ITEMS)}")
        t0 = time.perf_counter()
        result = {"items": size, "replicated": True}
        step_s = int(STEP.total_seconds())
        # the partitions' datetime ranges widened first, as pgstac's loaders do
        last = f"interval '{(COPIES - 1) * step_s} seconds'"
        spans = pg.execute(
            f"SELECT collection, tstzrange(min(datetime), max(datetime) + {last}, '[]')::text, "
            f"tstzrange(min(end_datetime), max(end_datetime) + {last}, '[]')::text "
            "FROM pgstac.items GROUP BY collection",
            f"{name}_part",
        )
        for cid, dts, edts in spans:
            pg.execute(
                f"SELECT pgstac.check_partition('{cid}', '{dts}'::tstzrange, '{edts}'::tstzrange)",
                f"{name}_part",
            )
        for k in range(1, COPIES):
            # the same revisit as revisit(): id suffixed, every date k x STEP later (the
            # columns and the dates in the stored content)
            shift = f"interval '{k * step_s} seconds'"
            dates = "content"
            for key in DATE_KEYS:
                dates = (
                    f"CASE WHEN content->'properties' ? '{key}' THEN jsonb_set({dates}, "
                    f"'{{properties,{key}}}', to_jsonb(to_char(((content->'properties'->>"
                    f"'{key}')::timestamptz + {shift}) AT TIME ZONE 'UTC', "
                    f'\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'))) ELSE {dates} END'
                )
            pg.execute(
                "INSERT INTO pgstac.items (id, geometry, collection, datetime, end_datetime, "
                f"content) SELECT id || '-r{k}', geometry, collection, datetime + {shift}, "
                f"end_datetime + {shift}, {dates} FROM pgstac.items WHERE id NOT LIKE '%-r_'",
                f"{name}_part",
            )
            print(f"  copy {k} done after {time.perf_counter() - t0:.0f} s", flush=True)
        result["seconds"] = time.perf_counter() - t0
    # partition statistics (pgstac's search() plans with them), as pypgstac's Loader ends
    pg.execute(
        "SELECT pgstac.update_partition_stats(partition::text, false, true) "
        "FROM pgstac.partitions_view",
        f"{name}_part",
    )
    pg.execute("VACUUM ANALYZE", f"{name}_part")
    pg.execute(f"ALTER DATABASE {name}_part RENAME TO {name}")
    info.write_text(json.dumps(result))
    return result


def build_pgstac_child(url: str) -> dict[str, Any]:
    import resource

    from eoshare.catalog.pgstac import PgstacCatalog

    catalog = PgstacCatalog(url)
    for doc in collections():
        catalog.create_collection(doc)
    t0 = time.perf_counter()
    report = catalog.upsert_items(base_items(), on_conflict="error", batch_size=1000)
    seconds = time.perf_counter() - t0
    catalog.close()
    return {
        "items": report.inserted,
        "seconds": seconds,
        "items_per_s": report.inserted / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- the truth: an independent computation over the items ----------------------------------
@dataclass
class Facts:
    """What the searches ask about each item, as arrays (index = position in ``items``)."""

    ids: list[str]
    collection: Any  # numpy array of str
    start: Any  # datetime64[us]
    end: Any
    cloud: Any  # float, nan where absent
    bounds: Any  # (n, 4)
    geoms: Any  # shapely geometries of the base items
    base: Any  # index into geoms


def facts(size: int) -> Facts:
    import numpy as np
    import shapely

    ids, coll, start, end, cloud, geoms = [], [], [], [], [], []
    for item in base_items():
        p = item["properties"]
        ids.append(item["id"])
        coll.append(item["collection"])
        start.append((p.get("start_datetime") or p["datetime"])[:26])
        end.append((p.get("end_datetime") or p["datetime"])[:26])
        c = p.get("eo:cloud_cover")
        cloud.append(float(c) if isinstance(c, int | float) else np.nan)
        geoms.append(item["geometry"])
    g = shapely.from_geojson([json.dumps(x) for x in geoms])
    n0 = len(ids)
    s0 = np.array(start, dtype="datetime64[us]")
    e0 = np.array(end, dtype="datetime64[us]")
    copies = size // n0
    step = np.timedelta64(int(STEP.total_seconds()), "s")
    all_ids = [i if k == 0 else f"{i}-r{k}" for k in range(copies) for i in ids]
    return Facts(
        ids=all_ids,
        collection=np.tile(np.array(coll), copies),
        start=np.concatenate([s0 + k * step for k in range(copies)]),
        end=np.concatenate([e0 + k * step for k in range(copies)]),
        cloud=np.tile(np.array(cloud), copies),
        bounds=np.tile(shapely.bounds(g), (copies, 1)),
        geoms=g,
        base=np.tile(np.arange(n0), copies),
    )


def _ts(value: str) -> Any:
    import numpy as np

    return np.datetime64(value.replace("Z", ""), "us")


def truth(f: Facts, params: list[tuple[str, str]], visible: Any) -> list[int]:
    """Positions of the items a GET /search with ``params`` matches, newest first."""
    import numpy as np
    import shapely

    p = dict(params)
    mask = np.ones(len(f.ids), dtype=bool)
    if "collections" in p:
        mask &= np.isin(f.collection, p["collections"].split(","))
    if "ids" in p:
        wanted = set(p["ids"].split(","))
        mask &= np.array([i in wanted for i in f.ids])
    if "datetime" in p:
        a, b = p["datetime"].split("/")
        mask &= (f.end >= _ts(a)) & (f.start <= _ts(b))
    shape = None
    if "bbox" in p:
        shape = shapely.box(*map(float, p["bbox"].split(",")))
    if "intersects" in p:
        shape = shapely.from_geojson(p["intersects"])
    if shape is not None:
        x0, y0, x1, y1 = shape.bounds
        b = f.bounds
        mask &= (b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)
        cand = np.flatnonzero(mask)
        hit = shapely.intersects(f.geoms[f.base[cand]], shape)
        mask[cand[~hit]] = False
    if "filter" in p:  # only the benchmark's own: eo:cloud_cover < x
        x = float(p["filter"].split("<")[1])
        with np.errstate(invalid="ignore"):
            mask &= f.cloud < x
    if visible is not None:
        mask &= _visible_mask(f, visible)
    hits = np.flatnonzero(mask)
    order = np.argsort(-f.start[hits].astype("int64"), kind="stable")
    return [int(i) for i in hits[order]]


def _visible_mask(f: Facts, expr: Any) -> Any:
    """The access module's visibility filter (collections, datetime) evaluated in numpy."""
    import numpy as np

    op, args = expr["op"], expr["args"]
    if op == "or":
        out = np.zeros(len(f.ids), dtype=bool)
        for a in args:
            out |= _visible_mask(f, a)
        return out
    if op == "and":
        out = np.ones(len(f.ids), dtype=bool)
        for a in args:
            out &= _visible_mask(f, a)
        return out
    if op == "not":
        return ~_visible_mask(f, args[0])
    prop = args[0]["property"]
    if op == "in" and prop == "collection":
        return np.isin(f.collection, args[1])
    if op == "=" and prop == "collection":
        return f.collection == args[1]
    if op in ("<=", "<") and prop == "datetime":
        t = _ts(args[1]["timestamp"])
        return f.start <= t if op == "<=" else f.start < t
    raise SystemExit(f"visibility filter not understood here: {expr}")


# --- the queries ------------------------------------------------------------------------
def _intersects(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    x, y = rng.uniform(-176, 174), rng.uniform(-76, 74)
    ring = [[x, y], [x + 3, y + 0.5], [x + 2, y + 3], [x - 0.5, y + 2], [x, y]]
    return [("intersects", json.dumps({"type": "Polygon", "coordinates": [ring]})), ("limit", "10")]


def _ids_with_collection(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
    return [
        ("ids", ",".join(rng.sample(ids, 5))),
        ("collections", "landsat-8-c2-l2,sentinel-2-l2a"),
    ]


def _page(page: int) -> Any:
    def make(rng: random.Random, ids: list[str]) -> list[tuple[str, str]]:
        params = [("collections", rng.choice(bc.COLLECTIONS)), ("limit", "10")]
        if page > 1:
            params.append(("offset", str((page - 1) * 10)))
        return params

    return make


KINDS: list[tuple[str, Any]] = [
    ("bbox+datetime", bc._bbox_datetime),
    ("CQL2 eo:cloud_cover < x", bc._cql2_cloud),
    ("ids (5)", bc._ids),
    ("ids (5) + collections", _ids_with_collection),
    ("sortby -datetime", bc._sort_desc),
    ("paged, page 1", _page(1)),
    ("paged, page 50", _page(50)),
    ("intersects", _intersects),
]


@dataclass
class Target:
    """One server to measure: how its requests are made."""

    name: str
    base: str
    offset_paging: bool  # eoshare: ?token=<offset>; stac-fastapi-pgstac: keyset only
    token: str | None = None  # bearer token of the access-filtered member (eoshare)
    operator: str | None = None  # an operator's token: no filter (eoshare)
    visible_text: str | None = None  # the filter a client adds itself (stac-fastapi)

    def request(self, params: list[tuple[str, str]], filtered: bool) -> tuple[Any, dict[str, str]]:
        from eoshare.api.params import encode_token

        out = []
        for k, v in params:
            if k == "offset":
                out.append(("token", encode_token(int(v))))
            else:
                out.append((k, v))
        headers: dict[str, str] = {}
        bearer = self.token if filtered else self.operator
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if filtered and self.visible_text:
            own = dict(out).get("filter")
            text = self.visible_text if own is None else f"({own}) AND ({self.visible_text})"
            out = [(k, v) for k, v in out if k not in ("filter", "filter-lang")]
            out += [("filter", text), ("filter-lang", "cql2-text")]
        return tuple(out), headers

    def supports(self, kind: str) -> bool:
        return self.offset_paging or kind != "paged, page 50"


def check(
    client: Any, t: Target, f: Facts, sample_ids: list[str], visible: Any, n: int, seed: int
) -> tuple[int, int, list[str]]:
    """First pages (and numberMatched when given) against ``truth``: (agreeing, checked,
    problems)."""
    ok = total = 0
    problems: list[str] = []
    for filtered in (False, True):
        for name, make in KINDS:
            if not t.supports(name):
                continue
            rng = random.Random(f"check-{seed}-{name}")
            for _ in range(n):
                params = make(rng, sample_ids)
                # the node computes the embargo's cut-off when it answers (to the
                # minute): eoshare's truth uses the filter of this minute
                now = visible() if callable(visible) else visible
                want = truth(f, params, now if filtered else None)
                offset = int(dict(params).get("offset", 0))
                limit = int(dict(params).get("limit", 10))
                req, headers = t.request(params, filtered)
                r = client.get(f"{t.base}/search", params=req, headers=headers)
                total += 1
                if r.status_code != 200:
                    problems.append(f"{name}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                got = [x["id"] for x in body["features"]]
                expected = [f.ids[i] for i in want[offset : offset + limit]]
                matched = body.get("numberMatched", body.get("context", {}).get("matched"))
                if got != expected:
                    problems.append(
                        f"{name} {'filtered' if filtered else ''}: {params} got "
                        f"{got[:3]}.. want {expected[:3]}.."
                    )
                elif matched is not None and matched != len(want):
                    problems.append(f"{name}: numberMatched {matched}, want {len(want)}")
                else:
                    ok += 1
    return ok, total, problems


def latency(
    client: Any,
    t: Target,
    sample_ids: list[str],
    filtered: bool,
    requests: int,
    warmup: int,
    seed: int,
    budget_s: float,
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, make in KINDS:
        if not t.supports(name):
            continue
        rng = random.Random(f"{seed}-{name}")
        times: list[float] = []
        for i in range(warmup + requests):
            req, headers = t.request(make(rng, sample_ids), filtered)
            t0 = time.perf_counter()
            r = client.get(f"{t.base}/search", params=req, headers=headers)
            dt = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise SystemExit(f"{t.name} {name}: HTTP {r.status_code}: {r.text[:300]}")
            if i >= warmup:
                times.append(dt)
            if i >= warmup + 5 and sum(times) > budget_s * 1000:
                break
        out[name] = times
        print(
            f"  {t.name:24s} {name:24s} {'filtered' if filtered else '        '} "
            f"p50 {pct(times, 50):7.1f} p95 {pct(times, 95):7.1f} (n={len(times)})",
            flush=True,
        )
    return out


def throughput(t: Target, sample_ids: list[str], clients: int, seconds: float, seed: int) -> float:
    import httpx

    done = [0] * clients
    stop = time.monotonic() + seconds
    kinds = [(n, m) for n, m in KINDS if t.supports(n)]

    def run(c: int) -> None:
        rng = random.Random(f"{seed}-tp-{c}")
        with httpx.Client(timeout=120) as client:
            while time.monotonic() < stop:
                _, make = rng.choice(kinds)
                req, headers = t.request(make(rng, sample_ids), False)
                if client.get(f"{t.base}/search", params=req, headers=headers).status_code == 200:
                    done[c] += 1

    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.monotonic() - t0)


def pct(values: list[float], p: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    return data[min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))]


# --- access: a member whose agreements hide part of the data ------------------------------
DECLARATIONS = """
[[members]]
code = "ke"
name = "Provider"
country = "KE"
[[members]]
code = "vn"
name = "Member"
country = "VN"
[[users]]
username = "binh"
member = "vn"
roles = ["viewer"]
[[users]]
username = "ops"
member = "ke"
roles = ["operator"]
[[agreements]]
collection = "sentinel-1-grd"
provider = "ke"
access = "provider"
[[agreements]]
collection = "landsat-8-c2-l2"
provider = "ke"
access = "partners"
partners = ["ke"]
embargo_days = 2000
[[agreements]]
collection = "sentinel-2-l2a"
provider = "ke"
access = "open"
"""


def member_filter(data_dir: Path) -> Any:
    """The member's visibility filter as the node computes it now (a callable)."""
    from eoshare.access.base import Principal
    from eoshare.access.policy import AgreementPolicy
    from eoshare.access.store import AccessStore
    from eoshare.settings import Settings

    def now() -> Any:
        store = AccessStore(Settings(data_dir=data_dir).access_db_path)
        try:
            return AgreementPolicy(store).visible_filter(Principal(user="binh", member="vn"))
        finally:
            store.close()

    return now


def access_setup(data_dir: Path) -> tuple[str, str, Any]:
    """The node's members and agreements; the member's token, an operator's token (who
    sees everything: no filter) and the member's visibility filter."""
    data_dir.mkdir(parents=True, exist_ok=True)
    decl = data_dir / "access.toml"
    decl.write_text(DECLARATIONS)
    env = {**os.environ, "EOSHARE_DATA_DIR": str(data_dir)}
    eoshare = str(Path(sys.executable).parent / "eoshare")
    subprocess.run([eoshare, "apply", str(decl)], check=True, env=env, capture_output=True)
    tokens = []
    for user in ("binh", "ops"):
        out = subprocess.run(
            [eoshare, "tokens", "create", user],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        tokens.append(out.stdout.strip().splitlines()[-1])
    from eoshare.access.base import Principal
    from eoshare.access.policy import AgreementPolicy
    from eoshare.access.store import AccessStore
    from eoshare.settings import Settings

    store = AccessStore(Settings(data_dir=data_dir).access_db_path)
    try:
        visible = AgreementPolicy(store).visible_filter(Principal(user="binh", member="vn"))
    finally:
        store.close()
    return tokens[0], tokens[1], visible


def inprocess_bbox(size: int, n: int, seed: int) -> tuple[float, float]:
    """p50/p95 ms of ``SqliteCatalog.search`` for bbox+datetime, without HTTP: the
    catalogue's own share of the request."""
    from eoshare.catalog import open_catalog
    from eoshare.catalog.base import SearchQuery

    catalog = open_catalog(f"sqlite:///{sqlite_path(size)}")
    rng = random.Random(f"{seed}-inprocess")
    times = []
    try:
        for i in range(n + 10):
            p = dict(bc._bbox_datetime(rng, []))
            a, b = p["datetime"].split("/")
            query = SearchQuery(
                bbox=tuple(float(x) for x in p["bbox"].split(",")),
                datetime_start=datetime.fromisoformat(a.replace("Z", "+00:00")),
                datetime_end=datetime.fromisoformat(b.replace("Z", "+00:00")),
                limit=int(p["limit"]),
            )
            t0 = time.perf_counter()
            catalog.search(query)
            if i >= 10:
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        catalog.close()
    return pct(times, 50), pct(times, 95)


# --- the run ------------------------------------------------------------------------------
class Uvicorn(bc.Server):
    def __init__(self, env: dict[str, str], app: list[str], python: str, workers: int) -> None:
        self.port = bc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full = {**os.environ, "EOSHARE_LOG_LEVEL": "warning", **env}
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                *app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--workers",
                str(workers),
            ],
            env=full,
            cwd=ROOT,
        )


@dataclass
class Result:
    check: tuple[int, int, list[str]] = (0, 0, [])
    plain: dict[str, list[float]] = field(default_factory=dict)
    filtered: dict[str, list[float]] = field(default_factory=dict)
    rps: float = 0.0


def run_size(size: int, args: argparse.Namespace, pg: Postgres) -> tuple[dict[str, Result], Any]:
    import cql2
    import httpx

    loads = {
        "sqlite": build_sqlite(size, replicate=args.replicate),
        "pgstac": build_pgstac(pg, size),
    }
    f = facts(size)
    rng = random.Random(args.seed)
    sample_ids = rng.sample(f.ids, 2000)
    data_dir = SCALE / f"node-{size}"
    shutil.rmtree(data_dir, ignore_errors=True)
    token, operator, visible = access_setup(data_dir)
    visible_text = cql2.Expr(visible).to_text()
    print(f"[{size}] the member's visibility filter: {visible_text}", flush=True)
    pg_url = pg.url(pg_db(size))
    eoshare_app = ["eoshare.api.app:create_app", "--factory"]
    env = {"EOSHARE_DATA_DIR": str(data_dir)}
    user_host, db = pg_url.removeprefix("postgresql://").rsplit("/", 1)
    user, hostport = user_host.split("@")
    host, port = hostport.split(":")
    sfp_env = {
        "PGUSER": user,
        "PGPASSWORD": "",
        "PGHOST": host,
        "PGPORT": port,
        "PGDATABASE": db,
        "POSTGRES_USER": user,
        "POSTGRES_PASS": "",
        "POSTGRES_HOST_READER": host,
        "POSTGRES_HOST_WRITER": host,
        "POSTGRES_PORT": port,
        "POSTGRES_DBNAME": db,
    }
    servers = [
        (
            "eoshare on SQLite",
            {**env, "EOSHARE_CATALOG": f"sqlite:///{sqlite_path(size)}"},
            eoshare_app,
            sys.executable,
            Target("eoshare on SQLite", "", True, token=token, operator=operator),
        ),
        (
            "eoshare on pgstac",
            {**env, "EOSHARE_CATALOG": pg_url},
            eoshare_app,
            sys.executable,
            Target("eoshare on pgstac", "", True, token=token, operator=operator),
        ),
    ]
    sfp_python = Path(args.stac_fastapi_python)
    if sfp_python.exists():
        servers.append(
            (
                "stac-fastapi-pgstac 7.2",
                sfp_env,
                ["stac_fastapi.pgstac.app:create_app", "--factory"],
                str(sfp_python),
                Target("stac-fastapi-pgstac 7.2", "", False, visible_text=visible_text),
            )
        )
    else:
        print(f"{sfp_python} is missing: stac-fastapi-pgstac left out", flush=True)
    results: dict[str, Result] = {}
    loads["inprocess"] = inprocess_bbox(size, 200, args.seed)
    print(f"[{size}] SQLite bbox+datetime in-process: p50/p95 {loads['inprocess']}", flush=True)
    for name, server_env, app, python, target in servers:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        server = Uvicorn(server_env, app, python, workers=1)
        target.base = server.base
        res = Result()
        try:
            with httpx.Client(timeout=120) as client:
                server.wait_ready(client, timeout=180)
                truth_filter = visible if target.visible_text else member_filter(data_dir)
                res.check = check(
                    client, target, f, sample_ids, truth_filter, args.check, args.seed
                )
                print(
                    f"[{size}] {name}: {res.check[0]}/{res.check[1]} first pages agree", flush=True
                )
                for problem in res.check[2][:5]:
                    print("   ", problem, flush=True)
                for filtered in (False, True):
                    lat = latency(
                        client,
                        target,
                        sample_ids,
                        filtered,
                        args.requests,
                        args.warmup,
                        args.seed,
                        args.budget,
                    )
                    if filtered:
                        res.filtered = lat
                    else:
                        res.plain = lat
            if args.seconds > 0:
                res.rps = throughput(target, sample_ids, args.clients, args.seconds, args.seed)
                print(f"  {name}: {res.rps:.1f} req/s at {args.clients} clients", flush=True)
        finally:
            server.stop()
        results[name] = res
    return results, loads


def render(
    size: int,
    results: dict[str, Result],
    loads: Any,
    args: argparse.Namespace,
    load_avg: list[float],
) -> str:
    names = list(results)
    sfp = "stac-fastapi-pgstac 7.2"
    lines = [f"### {bc._n(size)} items", ""]
    lines.append(
        f"- load average during the run (1 min, sampled): {min(load_avg):.1f} to "
        f"{max(load_avg):.1f}"
        if load_avg
        else "- load: ?"
    )
    for backend, r in loads.items():
        if backend == "inprocess":
            lines.append(
                f"- SQLite bbox+datetime in-process (`SqliteCatalog.search`, no HTTP), "
                f"p50 / p95: {r[0]:.1f} / {r[1]:.1f} ms"
            )
            continue
        if r.get("approx"):
            lines.append(
                f"- {backend}: loaded with eoshare's loader (`load_documents`), "
                f"{r['items']} items in about {r['seconds']:.0f} s = {r['items_per_s']:.0f} "
                "items/s (timed from outside while the load average was 15 to 24)"
            )
        elif r.get("replicated"):
            lines.append(
                f"- {backend}: built by replicating the 100k rows in SQL "
                f"({r['seconds']:.0f} s; no load rate)"
            )
        else:
            lines.append(
                f"- {backend}: loaded with eoshare's loader, {r['items']} items in "
                f"{r['seconds']:.0f} s = {r['items_per_s']:.0f} items/s, peak RSS "
                f"{r['peak_rss_mb']:.0f} MiB"
            )
    lines.append(
        "- results checked against numpy/shapely (first page, numberMatched when "
        "given; with and without the filter): "
        + "; ".join(f"{n} {r.check[0]}/{r.check[1]}" for n, r in results.items())
    )
    lines += [
        "",
        "| query, p50 / p95 ms | "
        + " | ".join(names)
        + (" | pgstac ÷ sfp (p50) |" if sfp in names and "eoshare on pgstac" in names else " |"),
        "|---|" + "---:|" * (len(names) + (1 if sfp in names else 0)),
    ]
    for filtered in (False, True):
        for kind, _ in KINDS:
            cells = []
            for n in names:
                lat = (results[n].filtered if filtered else results[n].plain).get(kind)
                cells.append("-" if not lat else f"{pct(lat, 50):.1f} / {pct(lat, 95):.1f}")
            if sfp in names and "eoshare on pgstac" in names:
                a = (
                    results["eoshare on pgstac"].filtered
                    if filtered
                    else results["eoshare on pgstac"].plain
                ).get(kind)
                b = (results[sfp].filtered if filtered else results[sfp].plain).get(kind)
                cells.append(f"{pct(a, 50) / pct(b, 50):.2f}" if a and b else "-")
            label = kind + (", access filter" if filtered else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if args.seconds > 0:
        lines.append(
            f"| throughput, {args.clients} clients (req/s, mix of the kinds) | "
            + " | ".join(f"{results[n].rps:.1f}" for n in names)
            + (" | - |" if sfp in names else " |")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=f"{BASE_ITEMS},{BASE_ITEMS * COPIES}")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per kind at most")
    parser.add_argument("--check", type=int, default=4, help="checked queries per kind")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput run (0: none)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--replicate",
        action="store_true",
        help="build the 1M SQLite catalogue by replicating rows in SQL",
    )
    parser.add_argument("--only", default="", help="comma-separated server name parts")
    parser.add_argument("--label", default="Scale: 100k and 1M side by side")
    parser.add_argument("--no-results", action="store_true")
    parser.add_argument(
        "--stac-fastapi-python",
        default=str(WORK / "sfp-venv" / "bin" / "python"),
        help="a Python with stac-fastapi-pgstac 7.2 and uvicorn (python -m venv "
        "benchmarks/.work/sfp-venv && benchmarks/.work/sfp-venv/bin/pip install "
        "stac-fastapi-pgstac==7.2.0 uvicorn)",
    )
    args = parser.parse_args(argv)
    SCALE.mkdir(parents=True, exist_ok=True)
    info = bc.machine()
    sections = []
    load_avg: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5.0):
            load_avg.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    with postgres(args.shared_buffers if hasattr(args, "shared_buffers") else "1GB") as pg:
        for size in [int(x) for x in args.sizes.split(",") if x]:
            load_avg.clear()
            load_avg.append(os.getloadavg()[0])
            results, loads = run_size(size, args, pg)
            sections.append(render(size, results, loads, args, list(load_avg)))
            print(sections[-1], flush=True)
    stop.set()
    lines = [f"## {args.label}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        f"- method: `python benchmarks/bench_scale.py --sizes {args.sizes}`; per kind "
        f"{args.requests} requests (fewer past {args.budget:.0f} s) after {args.warmup} "
        "warm-up ones, sequential, one client, HTTP to one uvicorn worker on 127.0.0.1, "
        "the three servers one after another; PostgreSQL 15 (tests/pg.py's settings, "
        "shared_buffers 1GB); stac-fastapi-pgstac serves the same pgstac database as "
        "eoshare on pgstac; access filter: eoshare gets the member's bearer token, "
        "stac-fastapi-pgstac the same visibility filter as a client-sent CQL2 filter",
        "",
    ]
    text = "\n".join(lines) + "\n" + "\n".join(sections)
    print(text)
    if not args.no_results:
        bc.update_results(text, args.label)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_build_sqlite":
        SCALE.mkdir(parents=True, exist_ok=True)
        print(json.dumps(build_sqlite_child(int(sys.argv[2]))))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "_replicate_sqlite":
        print(json.dumps(replicate_sqlite_child(int(sys.argv[2]))))
        raise SystemExit(0)
    if len(sys.argv) >= 3 and sys.argv[1] == "replicate-sqlite":
        SCALE.mkdir(parents=True, exist_ok=True)
        print(build_sqlite(int(sys.argv[2]), replicate=True))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "_build_pgstac":
        print(json.dumps(build_pgstac_child(sys.argv[2])))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "build-pgstac":
        SCALE.mkdir(parents=True, exist_ok=True)
        with postgres() as pg_:
            print(build_pgstac(pg_, int(sys.argv[2])))
        raise SystemExit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "build-sqlite":
        SCALE.mkdir(parents=True, exist_ok=True)
        print(build_sqlite(int(sys.argv[2])))
        raise SystemExit(0)
    raise SystemExit(main())
