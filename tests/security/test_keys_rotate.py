"""``eoshare keys rotate|list|retire|remove`` against the keys of a live node, across
restarts: a link signed by a retired key still works, a link of a removed key is refused
(403), new links carry the new key."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from live import live_node

from .nodes import CID, DATA, IID, build_small_catalog

ADMIN_TOKEN = "keys-test-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("eoshare-keys")
    build_small_catalog(d)
    return d


def serve(data_dir: Path) -> contextlib.AbstractContextManager[str]:
    """A node over ``data_dir``, started afresh for each use (it reads its keys then)."""
    return live_node(data_dir, {"EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN})


def at(url: str, link: str) -> str:
    """``link`` on the node now at ``url`` (a restarted node listens on another port)."""
    parts = urlsplit(link)
    return url + parts.path + "?" + parts.query


def keys(data_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir)}
    r = subprocess.run(
        [sys.executable, "-m", "eoshare.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert (r.returncode == 0) == ok, (args, r.returncode, r.stdout, r.stderr)
    return r


def listed(data_dir: Path) -> dict[str, str]:
    rows = [line.split("\t") for line in keys(data_dir, "list").stdout.splitlines()]
    return {kid: state for kid, _created, state in rows}


def signed_link(url: str) -> str:
    r = httpx.get(
        f"{url}/collections/{CID}/items/{IID}?sign=true",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 200, r.text
    href: str = r.json()["assets"]["data"]["href"]
    assert "sig=" in href, href
    return href


def kid_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["kid"][0]


def test_rotate_retire_remove_across_restarts(data_dir: Path) -> None:
    # 1. first start: the node makes its key; a link signed by it
    with serve(data_dir) as url:
        old_link = signed_link(url)
        assert httpx.get(at(url, old_link)).content == DATA
    (first,) = listed(data_dir)
    assert kid_of(old_link) == first
    assert listed(data_dir) == {first: "signing"}
    # the only signing key can be neither retired nor removed
    r = keys(data_dir, "retire", first, ok=False)
    assert r.stderr.startswith("error:") and "rotate" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    keys(data_dir, "remove", first, ok=False)

    # 2. rotate, retire the old key, restart
    new = keys(data_dir, "rotate").stdout.strip()
    assert new and new != first
    keys(data_dir, "retire", first)
    assert listed(data_dir) == {new: "signing", first: "retired"}
    with serve(data_dir) as url:
        # the retired key still verifies; new links use the new key
        r = httpx.get(at(url, old_link))
        assert r.status_code == 200 and r.content == DATA
        new_link = signed_link(url)
        assert kid_of(new_link) == new
        assert httpx.get(at(url, new_link)).content == DATA

    # 3. remove the retired key, restart: its links are refused, the new ones work
    keys(data_dir, "remove", first)
    assert listed(data_dir) == {new: "signing"}
    with serve(data_dir) as url:
        r = httpx.get(at(url, old_link))
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "no longer has" in r.json()["detail"]
        assert httpx.get(at(url, new_link)).content == DATA
        assert kid_of(signed_link(url)) == new
    # the key file is the owner's only
    assert (data_dir / "signing-keys.json").stat().st_mode & 0o077 == 0


def test_key_commands_fail_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    r = keys(data_dir, "retire", "no-such-key", ok=False)
    assert r.stderr.startswith("error: no signing key 'no-such-key'")
    assert len(r.stderr.strip().splitlines()) == 1
    r = keys(data_dir, "remove", "no-such-key", ok=False)
    assert "no signing key" in r.stderr
    # an empty data folder: nothing to list yet
    r = keys(tmp_path, "list")
    assert r.stdout == "" and "no signing keys yet" in r.stderr
    # a damaged key file: one line, no traceback
    (tmp_path / "signing-keys.json").write_text("{not json")
    r = keys(tmp_path, "list", ok=False)
    assert r.stderr.startswith("error: cannot read the signing keys")
    assert "Traceback" not in r.stderr
    for verb in ("list", "rotate", "retire", "remove"):
        r = subprocess.run(
            [sys.executable, "-m", "eoshare.cli", "keys", verb, "--help"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0 and "Usage" in r.stdout
