"""Crash anywhere, the short version: ``scripts/crash_anywhere.py`` kills ``eoshare
ingest``, ``eoshare load`` and ``eoshare storage migrate`` ten times each at random
moments (fixed seed) and checks the node after every kill and at the end (see the
script's docstring). ``make bench`` runs the long version (100 kills each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_anywhere.py"


def test_ten_kills_each_leave_the_node_consistent(shared_data: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", "10", "--seed", "7",
         "--workdir", str(tmp_path / "work"), "--json", str(summary)],
        capture_output=True, text=True, timeout=900,
        env={"PATH": "/usr/bin:/bin", "EOSHARE_SHARED_DATA": str(shared_data)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = json.loads(summary.read_text())
    assert [o["scenario"] for o in outcomes] == ["ingest", "load", "migrate"]
    for outcome in outcomes:
        assert outcome["kills"] == 10
        # most kills must land while the command runs, or the test proves little
        assert outcome["killed_while_running"] >= 6, outcome
        assert outcome["final_ok"] and not outcome["problems"], outcome
