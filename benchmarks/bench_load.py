"""Load rate side by side in one run: ``eoshare load`` into SQLite, ``eoshare load`` into
pgstac, and ``pypgstac load`` into a fresh pgstac database, the same items.

For each size, ``make_items.py`` writes N realistic items (replicas of the shared real
ones); a PostgreSQL cluster is started here (``tests/pg.py``: initdb + pg_ctl in a
temporary folder, 127.0.0.1; pgstac installed by ``pypgstac migrate``). Each loader runs
as its own command (``python -m eoshare.cli load`` / ``pypgstac load items``), into a
catalogue that has the collections already (loaded before the clock starts, the same
documents for all), so what is timed is the items. Measured: wall time of the command,
items/s, and the peak resident memory of its process tree (the command and its worker
processes, sampled every 0.2 s; the PostgreSQL server is not counted), with the median
over the first and the last third of the run to show whether memory grows.

    python benchmarks/bench_load.py --sizes 10000 100000
    python benchmarks/bench_load.py --sizes 10000 --no-results   # print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
RESULTS = HERE / "RESULTS.md"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from bench_pgstac import _collections  # noqa: E402

PYPGSTAC = Path(sys.executable).parent / "pypgstac"
TARGET_RATE = 5_000.0
TARGET_VS_PYPGSTAC = 2.0


def _tree(pid: int) -> tuple[int, dict[int, float]]:
    """Resident bytes of ``pid`` and all its descendants, and the CPU seconds (user +
    system) each of them has used so far."""
    total, todo, cpu = 0, [pid], {}
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                cpu[p] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total, cpu


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; its wall time, its CPU time (split between the command's own
    process and its child processes, eoshare load's workers) and the RSS of its
    process tree."""
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[int] = []
    children_cpu: dict[int, float] = {}  # the last CPU seconds seen of each child process

    def sample() -> None:
        while proc.poll() is None:
            rss, cpu = _tree(proc.pid)
            samples.append(rss)
            children_cpu.update((p, c) for p, c in cpu.items() if p != proc.pid)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    third = max(len(samples) // 3, 1)
    # CPU seconds of the command and its workers (not of the PostgreSQL server)
    cpu_s = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    workers_s = min(sum(children_cpu.values()), cpu_s)  # (sampled: up to 0.2 s short)
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "cpu_workers_s": workers_s,
        "cpu_main_s": cpu_s - workers_s,
        "peak_rss_mb": max(samples, default=0) / 2**20,
        "rss_first_third_mb": statistics.median(samples[:third]) / 2**20 if samples else None,
        "rss_last_third_mb": statistics.median(samples[-third:]) / 2**20 if samples else None,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "stderr_tail": err.decode()[-300:],
    }


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update({"EOSHARE_LOG_LEVEL": "warning", **extra})
    return env


LOADERS = ("sqlite", "pgstac", "pypgstac")


def start_cost(cmd: list[str], env: dict[str, str], runs: int = 3) -> float:
    """The loader's fixed cost: the median wall time of ``cmd``, the same command given
    an empty NDJSON file (interpreter start, imports, opening the database, closing)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _drop(cluster: Any, url: str) -> None:
    """A measured database is dropped at once: three copies of 1M items would not fit."""
    cluster.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")


def run_size(
    n: int, cluster: Any, tmp: Path, workers: int | None, loaders: tuple[str, ...] = LOADERS
) -> dict[str, dict[str, Any]]:
    items = WORK / f"items-{n}.ndjson"
    if not items.exists():
        subprocess.run(
            [sys.executable, str(HERE / "make_items.py"), str(n), str(items)], check=True
        )
    collections = _collections(items)
    coll_json = tmp / f"collections-{n}.json"
    coll_json.write_text(json.dumps({"collections": collections}))
    coll_ndjson = tmp / f"collections-{n}.ndjson"
    coll_ndjson.write_text("".join(json.dumps(c) + "\n" for c in collections))
    empty = tmp / "empty.ndjson"
    empty.write_text("")
    eoshare = [sys.executable, "-m", "eoshare.cli", "load"]
    extra = [] if workers is None else ["--workers", str(workers)]
    out: dict[str, dict[str, Any]] = {}

    # eoshare -> SQLite
    if "sqlite" in loaders:
        data = tmp / f"sqlite-{n}"
        env = _env(EOSHARE_DATA_DIR=str(data))
        subprocess.run([*eoshare, str(coll_json)], env=env, check=True, capture_output=True)
        start = start_cost([*eoshare, str(empty), *extra], env)
        out["eoshare load → SQLite"] = timed([*eoshare, str(items), *extra], env)
        out["eoshare load → SQLite"]["start_s"] = start
        print(f"  SQLite: {n / out['eoshare load → SQLite']['seconds']:.0f} items/s", flush=True)
        with sqlite3.connect(data / "catalog.db") as conn:
            out["eoshare load → SQLite"]["loaded"] = conn.execute(
                "SELECT count(*) FROM items"
            ).fetchone()[0]
        out["eoshare load → SQLite"]["catalog_mb"] = sum(
            p.stat().st_size for p in data.glob("catalog.db*")
        ) / (1024 * 1024)
        shutil.rmtree(data, ignore_errors=True)

    # eoshare -> pgstac
    if "pgstac" in loaders:
        url = cluster.new_catalog_url()
        env = _env(EOSHARE_DATA_DIR=str(tmp / f"pg-{n}"), EOSHARE_CATALOG=url)
        subprocess.run([*eoshare, str(coll_json)], env=env, check=True, capture_output=True)
        start = start_cost([*eoshare, str(empty), *extra], env)
        out["eoshare load → pgstac"] = timed([*eoshare, str(items), *extra], env)
        out["eoshare load → pgstac"]["start_s"] = start
        out["eoshare load → pgstac"]["loaded"] = _pg_count(url)
        _drop(cluster, url)

    # pypgstac -> pgstac (its own fresh database)
    if "pypgstac" in loaders:
        dsn = cluster.url(cluster.new_database())
        env = _env()
        subprocess.run(
            [str(PYPGSTAC), "load", "collections", str(coll_ndjson), "--dsn", dsn],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        start = start_cost(
            [str(PYPGSTAC), "load", "items", str(empty), "--dsn", dsn, "--method", "insert"], env
        )
        out["pypgstac load → pgstac"] = timed(
            [str(PYPGSTAC), "load", "items", str(items), "--dsn", dsn, "--method", "insert"], env
        )
        out["pypgstac load → pgstac"]["start_s"] = start
        out["pypgstac load → pgstac"]["loaded"] = _pg_count(dsn)
        _drop(cluster, dsn)
    for r in out.values():
        r["items"] = n
        r["items_per_s"] = n / r["seconds"]
        r["items_per_s_net"] = n / max(r["seconds"] - r["start_s"], 1e-9)
    return out


def _pg_count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
        return int(row[0]) if row else 0


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def render(results: dict[int, dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    loads = [
        run[k]
        for row in results.values()
        for run in row.values()
        for k in ("load_before", "load_after")
    ]
    lines = [
        f"## Load rate ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, bench_load.py)",
        "",
        f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"{platform.platform()}, python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}",
        f"- commit: {_commit()}",
        f"- load average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f} "
        "(a shared machine: other jobs ran beside)",
        "- method: `python benchmarks/bench_load.py --sizes "
        + " ".join(str(s) for s in results)
        + "`; each loader is its own command (`python -m eoshare.cli load ITEMS.ndjson"
        + (f" --workers {args.workers}" if args.workers is not None else "")
        + "`, `pypgstac load items ITEMS.ndjson --method insert`), timed from start to "
        "exit (interpreter start included), the collections loaded before the clock "
        "starts; PostgreSQL 15 from tests/pg.py (fsync off) for both pgstac databases; "
        "peak RSS of the command's process tree (its workers included, sampled every "
        "0.2 s), and its median in the first / last third of the run; *start s*: the "
        "median wall time of the same command given an empty file (interpreter, imports, "
        "opening and closing the database), subtracted for *items/s without start*",
        "",
        "| items | loader | seconds | items/s | vs pypgstac | start s | items/s without "
        "start | vs pypgstac | CPU s | CPU µs/item (main + workers) | peak RSS MiB "
        "| RSS 1st / last third |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, row in results.items():
        ref = row.get("pypgstac load → pgstac", {}).get("items_per_s")
        ref_net = row.get("pypgstac load → pgstac", {}).get("items_per_s_net")
        for name, r in row.items():
            first, last = r["rss_first_third_mb"] or 0, r["rss_last_third_mb"] or 0
            versus = f"{r['items_per_s'] / ref:.2f}x" if ref else "n/a"
            versus_net = f"{r['items_per_s_net'] / ref_net:.2f}x" if ref_net else "n/a"
            per_item = 1e6 / n
            split = (
                f"{r['cpu_s'] * per_item:.0f} ({r['cpu_main_s'] * per_item:.0f} + "
                f"{r['cpu_workers_s'] * per_item:.0f})"
                if r["cpu_workers_s"]
                else f"{r['cpu_s'] * per_item:.0f}" + (" (+ server)" if "pgstac" in name else "")
            )
            lines.append(
                f"| {n:,} | {name} | {r['seconds']:.1f} | {r['items_per_s']:,.0f} | "
                f"{versus} | {r['start_s']:.2f} | {r['items_per_s_net']:,.0f} | {versus_net} | "
                f"{r['cpu_s']:.1f} | {split} | {r['peak_rss_mb']:.0f} | "
                f"{first:.0f} / {last:.0f} |"
            )
    lines += ["", "Targets (issues 14, 11): eoshare → SQLite ≥ 5,000 items/s and ≥ 2x pypgstac; "
              "eoshare → pgstac ≥ 1x pypgstac; memory flat.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=None, help="eoshare load --workers")
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--loaders", nargs="+", choices=LOADERS, default=list(LOADERS),
        help="which loaders to run (default: all three)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)

    from pg import pg_cluster

    results: dict[int, dict[str, dict[str, Any]]] = {}
    with pg_cluster() as cluster, tempfile.TemporaryDirectory(prefix="bench-load-") as t:
        os.chmod(t, 0o755)
        for n in args.sizes:
            print(f"[{n}] loading ...", flush=True)
            results[n] = run_size(n, cluster, Path(t), args.workers, tuple(args.loaders))
            for name, r in results[n].items():
                print(
                    f"  {name:24s} {r['seconds']:7.1f} s {r['items_per_s']:8.0f} items/s "
                    f"peak {r['peak_rss_mb']:5.0f} MiB  cpu {r['cpu_s']:.1f} s "
                    f"(main {r['cpu_main_s']:.1f} + workers {r['cpu_workers_s']:.1f})  "
                    f"loaded {r['loaded']}  "
                    f"load avg {r['load_before']:.1f}->{r['load_after']:.1f}",
                    flush=True,
                )
    (WORK / "bench-load.json").write_text(json.dumps(results, indent=1))
    section = render(results, args)
    print(section)
    if not args.no_results:
        with open(RESULTS, "a") as f:
            f.write("\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
