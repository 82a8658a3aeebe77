"""What a newcomer meets on the command line (issue 12, item 8): help that names values
as people read them, human output without JSON log lines (JSON only when asked),
"serving"/"open" lines only once the server listens, and access commands that refuse a
folder that is not a node's instead of starting an empty access database there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import typer
from typer.testing import CliRunner

from eoshare.cli import app
from live import free_port

PYTHON_TYPES = re.compile(r"<(list\[|bool|str|int|float|Path|path|dir|file|datetime)")


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, sub in getattr(command, "commands", {}).items():  # groups (Typer's or click's)
        out += _commands(sub, (*path, name))
    return out


def test_help_shows_no_python_type_names() -> None:
    runner = CliRunner()
    paths = _commands(typer.main.get_command(app))
    assert ("ingest",) in paths and ("tokens", "create") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (path, result.output)
        assert not PYTHON_TYPES.search(result.output), (path, result.output)
    ingest = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "100"}).output
    assert "PATH..." in ingest and "TEXT" in ingest


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    return subprocess.run(
        [sys.executable, "-m", "eoshare.cli", *args],
        capture_output=True, text=True, timeout=300, env={**clean, **(env or {})},
    )  # fmt: skip


def _json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_cli_output_stays_human_unless_json_is_asked(tmp_path: Path, shared_data: Path) -> None:
    raster = shared_data / "raster" / "LC08_L1TP_016037_20170813_20170814_01_RT_B4.TIF"
    args = ["ingest", str(raster), "-c", "l8", "--create-collection"]
    plain = _cli(*args, "--data-dir", str(tmp_path / "a"), env={"EOSHARE_LOG_LEVEL": "debug"})
    assert plain.returncode == 0, plain.stderr
    assert _json_lines(plain.stdout + plain.stderr) == [], plain.stderr
    asked = _cli(
        *args, "--data-dir", str(tmp_path / "b"),
        env={"EOSHARE_LOG_LEVEL": "debug", "EOSHARE_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert _json_lines(asked.stderr), asked.stderr
    assert _json_lines(asked.stdout) == []  # stdout is the command's own output
    # or every record to a file, the terminal staying human
    log = tmp_path / "eoshare.log"
    to_file = _cli(
        *args, "--data-dir", str(tmp_path / "c"),
        env={"EOSHARE_LOG_LEVEL": "debug", "EOSHARE_LOG_FILE": str(log)},
    )  # fmt: skip
    assert to_file.returncode == 0, to_file.stderr
    assert _json_lines(to_file.stderr) == []
    assert _json_lines(log.read_text())


def test_serving_is_announced_once_listening(tmp_path: Path) -> None:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EOSHARE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "eoshare.cli", "serve", "--port", str(port),
         "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**clean, "EOSHARE_LOG_LEVEL": "warning"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, f"the server exited: {seen}"
            seen.append(line)
            if "eoshare is serving" in line:
                break
        assert f"http://127.0.0.1:{port}/" in seen[-1]
        # no waiting, no retry: it already answers
        assert httpx.get(f"http://127.0.0.1:{port}/conformance", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_access_commands_refuse_a_folder_that_is_not_a_node(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-node"
    elsewhere.mkdir()
    for args in (["tokens", "create", "amina", "--days", "1"], ["tokens", "list"], ["usage"]):
        r = _cli(*args, "--data-dir", str(elsewhere))
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
        assert "no access database and no catalogue" in lines[0]
        assert "--data-dir" in lines[0]
    assert list(elsewhere.iterdir()) == []  # nothing was made there
    # declaring members is how a node's access database starts: allowed anywhere
    r = _cli(
        "members", "add", "ke-ssa", "--name", "Savanna Space Agency", "--country", "KE",
        "--data-dir", str(elsewhere),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _cli("tokens", "list", "--data-dir", str(elsewhere)).returncode == 0
