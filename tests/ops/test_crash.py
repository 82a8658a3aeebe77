"""Crash anywhere, the short version: ``scripts/crash_anywhere.py`` kills ``eoshare
ingest``, ``eoshare load``, ``eoshare storage migrate`` and ``eoshare harvest`` ten times
each, and a serving node five times each in the middle of a resumable upload, an order's
zip stream and a processing job, at random moments (fixed seed); it checks the node after
every kill and at the end (see the script's docstring). ``make bench`` runs the long
version (100 kills each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_anywhere.py"


@pytest.mark.parametrize(
    ("scenarios", "kills"),
    [("ingest,load,migrate,harvest", 10), ("upload,zip,job", 5)],
    ids=["commands", "serving"],
)
def test_kills_leave_the_node_consistent(
    scenarios: str, kills: int, shared_data: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", str(kills), "--seed", "7",
         "--scenarios", scenarios, "--workdir", str(tmp_path / "work"),
         "--json", str(summary)],
        capture_output=True, text=True, timeout=1500,
        env={"PATH": "/usr/bin:/bin", "EOSHARE_SHARED_DATA": str(shared_data)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = json.loads(summary.read_text())
    assert [o["scenario"] for o in outcomes] == scenarios.split(",")
    for outcome in outcomes:
        assert outcome["kills"] == kills
        # most kills must land while the work runs, or the test proves little
        assert outcome["killed_while_running"] >= kills * 0.6, outcome
        assert outcome["final_ok"] and not outcome["problems"], outcome
