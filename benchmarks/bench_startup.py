"""Start-up cost of eoshare: the CLI's own commands and `eoshare serve` to its first 200.

For each case, ``--runs`` fresh processes (median reported): wall time, CPU time of the
process (user+sys), and which heavy libraries the process imported. Cases:

* ``eoshare --help``, ``eoshare serve --help``, ``eoshare members list`` and
  ``eoshare usage`` (commands that talk to the catalogue or the access database only);
* ``eoshare serve`` on an empty data directory: time from the start of the process to the
  first 200 of ``GET /health``, then SIGTERM.

Prints one table (markdown) with the load average before and after the run. The heavy
libraries are those a request that reads the catalogue never needs (rasterio, rio-tiler,
xarray, dask, pandas, openeo, matplotlib, pyproj, shapely, numpy), read from each
process's ``sys.modules`` at exit by a ``sitecustomize`` hook of this script.

    .venv/bin/python benchmarks/bench_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HEAVY = (
    "rasterio",
    "rio_tiler",
    "xarray",
    "dask",
    "pandas",
    "openeo",
    "openeo_pg_parser_networkx",
    "matplotlib",
    "pyproj",
    "shapely",
    "numpy",
    "morecantile",
)
PY = sys.executable

# the modules a process has imported at exit, written by a tiny site hook
_PROBE = """
import atexit, json, os, sys
def _dump():
    heavy = sorted(m for m in {heavy!r} if m in sys.modules)
    with open(os.environ["EOSHARE_BENCH_MODULES"], "w") as f:
        json.dump(heavy, f)
atexit.register(_dump)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(data_dir: Path, probe_dir: Path, src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env["EOSHARE_DATA_DIR"] = str(data_dir)
    # the probe first; then, with --before, that checkout's eoshare instead of this one
    env["PYTHONPATH"] = os.pathsep.join([str(probe_dir), *([str(src)] if src else [])])
    env["EOSHARE_BENCH_MODULES"] = str(probe_dir / "modules.json")
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _command(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    cpu0 = _cpu_children()
    t0 = time.perf_counter()
    subprocess.run(
        [PY, "-m", "eoshare.cli", *args], env=env, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - t0, _cpu_children() - cpu0


def _serve(env: dict[str, str]) -> tuple[float, float]:
    port = _free_port()
    cpu0 = _cpu_children()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "eoshare.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("eoshare serve exited before answering")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    # CPU of the whole life of the process (start, one request, a clean stop)
    return wall, _cpu_children() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--before",
        type=Path,
        help="the src/ folder of another checkout (e.g. a `git worktree` of the commit "
        "before a change): each run of it is interleaved with one of this checkout",
    )
    args = parser.parse_args()
    cases: list[tuple[str, list[str] | None]] = [
        ("eoshare --help", ["--help"]),
        ("eoshare serve --help", ["serve", "--help"]),
        ("eoshare members list", ["members", "list"]),
        ("eoshare usage", ["usage"]),
        ("eoshare serve: first 200 of /health", None),
    ]
    sides: list[tuple[str, Path | None]] = [("this", None)]
    if args.before:
        sides.insert(0, ("before", args.before.resolve()))
    load_before = os.getloadavg()
    # (case, side) -> walls, cpus, heavy modules
    results: dict[tuple[str, str], tuple[list[float], list[float], list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="eoshare-bench-startup-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        envs = {}
        for side, src in sides:
            probe_dir = Path(tmp) / f"probe-{side}"
            probe_dir.mkdir()
            (probe_dir / "sitecustomize.py").write_text(_PROBE.format(heavy=HEAVY))
            envs[side] = (_env(data_dir, probe_dir, src), probe_dir)
        _serve(envs["this"][0])  # the databases made once, outside the timing
        for name, argv in cases:
            for _ in range(args.runs):
                for side, _src in sides:
                    env, probe_dir = envs[side]
                    wall, cpu = _serve(env) if argv is None else _command(argv, env)
                    walls, cpus, _ = results.setdefault((name, side), ([], [], []))
                    walls.append(wall)
                    cpus.append(cpu)
                    heavy = json.loads((probe_dir / "modules.json").read_text())
                    results[(name, side)] = (walls, cpus, heavy)
    load_after = os.getloadavg()
    print(f"runs per case: {args.runs} (median), interleaved; python {sys.version.split()[0]}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print()
    head = "| case | side | wall s | CPU s | wall s of each run | heavy modules imported |"
    if args.before:
        head += " CPU this / before |"
    print(head)
    print("|---|---|---:|---:|---|---|" + ("---:|" if args.before else ""))
    for name, _argv in cases:
        for side, _src in sides:
            walls, cpus, heavy = results[(name, side)]
            each = " ".join(f"{w:.2f}" for w in walls)
            line = (
                f"| {name} | {side} | {statistics.median(walls):.2f} "
                f"| {statistics.median(cpus):.2f} | {each} | {', '.join(heavy) or '—'} |"
            )
            if args.before:
                ratio = statistics.median(cpus) / statistics.median(results[(name, "before")][1])
                line += f" {ratio:.2f} |" if side == "this" else " |"
            print(line)


if __name__ == "__main__":
    main()
