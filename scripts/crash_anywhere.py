#!/usr/bin/env python3
"""Crash anywhere: ``kill -9`` eoshare's writing commands at random moments, and check
after each kill that the node is consistent, then that repeating the command finishes.

    .venv/bin/python scripts/crash_anywhere.py --kills 100 --seed 1
    .venv/bin/python scripts/crash_anywhere.py --kills 10 --scenarios ingest,load --json out.json

Scenarios (each in a data directory of its own, real files from ../shared/data):

* ``ingest``  - ``eoshare ingest`` of six real rasters (Sentinel-2, Landsat 8) into COGs;
* ``load``    - ``eoshare load`` of 2,000 STAC items (the shared real items under new ids);
* ``migrate`` - ``eoshare storage migrate`` of the ingested store to a second local store;
* ``upload``, ``zip``, ``job``, ``harvest`` - a serving node killed in the middle of a
  resumable upload or its completion, an order's zip stream and an openEO batch job, and
  ``eoshare harvest`` killed in the middle of a pull from a live peer (``crash_serving.py``).

After every kill: ``eoshare verify``'s check (nothing missing, corrupt or orphaned), the
catalogue's ``PRAGMA integrity_check``, every catalogued item equal to its source document
(load), every migrated object whole (migrate), and no ``eoshare-*`` temporary folder left
by a killed process once the next run has started. At the end the command runs to
completion and the result is complete. A summary is printed (and written as JSON).
Exit status 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EOSHARE_SHARED_DATA", REPO.parent / "shared" / "data"))
RASTERS = [
    "S2A_29RKH_20200219_0_L2A_B04.tif",
    "S2A_29RKH_20200219_0_L2A_B08.tif",
    "S2A_29RKH_20200219_0_L2A_TCI.tif",
    "S2A_29RKH_20200219_0_L2A_SCL.tif",
    "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF",
    "LC08_L1TP_016037_20170813_20170814_01_RT_B5.TIF",
]
LOAD_ITEMS = 2000


@dataclass
class Outcome:
    scenario: str
    kills: int = 0
    killed_while_running: int = 0
    problems: list[str] = field(default_factory=list)
    full_run_s: float = 0.0
    final_ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "kills": self.kills,
            "killed_while_running": self.killed_while_running,
            "problems": self.problems,
            "full_run_s": round(self.full_run_s, 2),
            "final_ok": self.final_ok,
        }


def eoshare(*args: str, data_dir: Path, tmp: Path) -> list[str]:
    del data_dir, tmp
    return [sys.executable, "-m", "eoshare.cli", *args]


def env_for(data_dir: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    env.update(
        {"EOSHARE_DATA_DIR": str(data_dir), "TMPDIR": str(tmp), "EOSHARE_LOG_LEVEL": "error"}
    )
    return env


def run_and_kill(cmd: list[str], env: dict[str, str], after_s: float) -> bool:
    """Start ``cmd``, SIGKILL it after ``after_s`` seconds; True if it was still running."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def run_whole(cmd: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stderr.strip(), time.perf_counter() - started


def check_node(data_dir: Path, *, deep: bool = True) -> list[str]:
    """verify (missing, corrupt, orphaned) and the catalogue's integrity."""
    from eoshare.catalog import open_catalog
    from eoshare.storage import open_store
    from eoshare.storage.verify import verify

    problems: list[str] = []
    db = data_dir / "catalog.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            problems.append(f"catalogue integrity: {verdict}")
    catalog = open_catalog(f"sqlite:///{db}")
    try:
        report = verify(catalog, open_store(f"file://{data_dir / 'store'}"), deep=deep)
    finally:
        catalog.close()
    problems += [f"{f.kind}: {f.key} {f.detail}" for f in report.findings]
    return problems


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("eoshare-*"))


# --- scenarios ------------------------------------------------------------------------
def scenario_ingest(work: Path, kills: int, rng: random.Random) -> Outcome:
    data_dir, tmp = work / "ingest", work / "ingest-tmp"
    tmp.mkdir(parents=True)
    env = env_for(data_dir, tmp)
    files = [str(SHARED / "raster" / name) for name in RASTERS]
    cmd = eoshare(
        "ingest", *files, "-c", "crash", "--create-collection", data_dir=data_dir, tmp=tmp
    )
    # the uninterrupted run in a scratch folder is the truth: as many items as it made
    return _repeat("ingest", cmd, env, kills, rng, data_dir, tmp, expect=_same_items_as_probe)


def scenario_load(work: Path, kills: int, rng: random.Random) -> Outcome:
    data_dir, tmp = work / "load", work / "load-tmp"
    tmp.mkdir(parents=True)
    source = work / "items.ndjson"
    docs = _load_source(source)
    env = env_for(data_dir, tmp)
    cmd = eoshare(
        "load", str(source), "--on-conflict", "skip", "--create-collections",
        "--batch-size", "100", data_dir=data_dir, tmp=tmp,
    )  # fmt: skip

    def same_documents() -> list[str]:
        from eoshare.catalog import open_catalog

        catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
        try:
            bad = []
            for item in catalog.iter_items():
                want = docs.get(item["id"])
                if want is None or item.get("properties") != want["properties"]:
                    bad.append(f"half-written or foreign item {item['id']}")
            return bad[:5]
        finally:
            catalog.close()

    return _repeat(
        "load", cmd, env, kills, rng, data_dir, tmp,
        expect=_expect_items(LOAD_ITEMS), extra=same_documents,
    )  # fmt: skip


def scenario_migrate(work: Path, kills: int, rng: random.Random) -> Outcome:
    """Migrate the ingest scenario's store (run it first) to a second local store."""
    data_dir, tmp = work / "ingest", work / "migrate-tmp"
    tmp.mkdir(parents=True)
    target = work / "migrated"
    env = env_for(data_dir, tmp)
    cmd = eoshare("storage", "migrate", "--to", f"file://{target}", data_dir=data_dir, tmp=tmp)

    def whole_objects() -> list[str]:
        from eoshare.catalog import open_catalog

        catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
        bad = []
        try:
            for item in catalog.iter_items():
                for asset in item["assets"].values():
                    key = asset.get("eoshare:key")
                    path = target / key if key else None
                    if path is None or not path.exists():
                        continue
                    original = data_dir / "store" / key
                    if path.read_bytes() != original.read_bytes():
                        bad.append(f"migrated object {key} is not whole")
        finally:
            catalog.close()
        return bad

    def all_there(_: Path) -> list[str]:
        from eoshare.catalog import open_catalog
        from eoshare.storage import open_store
        from eoshare.storage.verify import verify

        catalog = open_catalog(f"sqlite:///{data_dir / 'catalog.db'}")
        try:
            report = verify(catalog, open_store(f"file://{target}"))
        finally:
            catalog.close()
        return [f"after migrate: {f.kind} {f.key}" for f in report.findings]

    # timed by a whole migrate of the same store to a scratch target
    probe = eoshare(
        "storage", "migrate", "--to", f"file://{work / 'migrate-probe'}", data_dir=data_dir, tmp=tmp
    )
    return _repeat(
        "migrate", cmd, env, kills, rng, data_dir, tmp,
        expect=all_there, extra=whole_objects, probe=probe,
    )  # fmt: skip


def _same_items_as_probe(data_dir: Path) -> list[str]:
    probe = data_dir.parent / f"{data_dir.name}-probe" / "catalog.db"
    with sqlite3.connect(probe) as conn:
        n = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    return _expect_items(n)(data_dir)


def _expect_items(n: int) -> Callable[[Path], list[str]]:
    def check(data_dir: Path) -> list[str]:
        with sqlite3.connect(data_dir / "catalog.db") as conn:
            count = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        return [] if count == n else [f"{count} items after the full run, expected {n}"]

    return check


def _load_source(path: Path) -> dict[str, dict[str, Any]]:
    originals = []
    for name in (
        "landsat-8-c2-l2_netherlands_pc.ndjson",
        "sentinel-2-l2a_pc_and_earthsearch.ndjson",
    ):
        with (SHARED / "stac" / name).open() as f:
            originals += [json.loads(line) for line in f if line.strip()]
    docs: dict[str, dict[str, Any]] = {}
    with path.open("w") as out:
        for n in range(LOAD_ITEMS):
            doc = json.loads(json.dumps(originals[n % len(originals)]))
            doc["id"] = f"crash-{n:05d}"
            doc["collection"] = "crash-load"
            doc["links"] = []
            doc["properties"]["crash:n"] = n
            docs[doc["id"]] = doc
            out.write(json.dumps(doc) + "\n")
    return docs


def _repeat(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    kills: int,
    rng: random.Random,
    data_dir: Path,
    tmp: Path,
    *,
    expect: Callable[..., list[str]],
    extra: Callable[[], list[str]] | None = None,
    probe: list[str] | None = None,
) -> Outcome:
    outcome = Outcome(name)
    # how long a whole run takes: measured once, uninterrupted, into a scratch folder (the
    # kills then land at random moments within that time)
    if probe is None:
        probe = cmd
        probe_env = dict(env, EOSHARE_DATA_DIR=str(data_dir.parent / f"{name}-probe"))
    else:
        probe_env = env
    code, err, probe_s = run_whole(probe, probe_env)
    if code != 0:
        outcome.problems.append(f"the uninterrupted run failed: {err[-300:]}")
        return outcome
    for _ in range(kills):
        after = rng.uniform(0.0, probe_s * 0.9)
        outcome.kills += 1
        if run_and_kill(cmd, env, after):
            outcome.killed_while_running += 1
        found = check_node(data_dir) if (data_dir / "catalog.db").exists() else []
        if extra is not None and (data_dir / "catalog.db").exists():
            found += extra()
        outcome.problems += [f"kill {outcome.kills} at {after:.2f}s: {p}" for p in found]
    code, err, outcome.full_run_s = run_whole(cmd, env)
    if code != 0:
        outcome.problems.append(f"the run after the kills failed: {err[-300:]}")
    final = check_node(data_dir) + expect(data_dir)
    stale = leftovers(tmp)
    if stale:
        final.append(f"temporary folders left by killed runs: {stale[:3]}")
    outcome.problems += [f"final: {p}" for p in final]
    outcome.final_ok = code == 0 and not final
    return outcome


SCENARIOS = {"ingest": scenario_ingest, "load": scenario_load, "migrate": scenario_migrate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="kills per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scenarios",
        default="ingest,load,migrate,upload,zip,job,harvest",
        help="comma-separated: ingest, load, migrate, upload, zip, job, harvest",
    )
    parser.add_argument("--workdir", type=Path, help="where the data folders go (default: temp)")
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args()
    if not (SHARED / "PROVENANCE.md").is_file():
        print(f"error: the shared test data is missing: {SHARED}", file=sys.stderr)
        return 1
    import tempfile

    work = args.workdir or Path(tempfile.mkdtemp(prefix="crash-anywhere-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    from crash_serving import SERVING_SCENARIOS  # the node-serving scenarios

    scenarios = {**SCENARIOS, **SERVING_SCENARIOS}
    outcomes = []
    for name in args.scenarios.split(","):
        if name not in scenarios:
            print(f"error: unknown scenario {name!r} ({', '.join(scenarios)})", file=sys.stderr)
            return 2
        started = time.perf_counter()
        outcome = scenarios[name](work, args.kills, rng)
        outcomes.append(outcome)
        state = "ok" if outcome.final_ok and not outcome.problems else "PROBLEMS"
        print(
            f"{name:8} {outcome.kills} kills ({outcome.killed_while_running} mid-run), "
            f"{len(outcome.problems)} problems, full run {outcome.full_run_s:.1f}s, "
            f"{time.perf_counter() - started:.0f}s in all: {state}"
        )
        for problem in outcome.problems[:10]:
            print(f"    {problem}")
    if args.json:
        args.json.write_text(json.dumps([o.as_dict() for o in outcomes], indent=1))
    return 0 if all(o.final_ok and not o.problems for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
