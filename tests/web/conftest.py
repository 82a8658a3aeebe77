"""A live eoshare node and Debian's Chromium, for the browser tests.

The node is the small demo (``build_demo(scale="small")``) with real members, users and
agreements applied through the access layer (``apply_declarations``), served by uvicorn
on a free port of 127.0.0.1 in a subprocess. Chromium is ``/usr/bin/chromium`` (or
``EOSHARE_CHROMIUM``), installed by ``scripts/install-browser.sh``, driven by Playwright
headless. Every test leaves a screenshot in ``.artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("EOSHARE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "web-test-admin-token"
MEMBER_USER = "amina"
MEMBER_PASSWORD = "kestrel-and-monsoon"

# Who may get what on the test node: the radar collection is for member agencies only
# (the public sees its metadata and coarse previews, and may not download it); the rest
# is open. The same declarations format as 'eoshare apply'.
DECLARATIONS: dict[str, Any] = {
    "members": [
        {"code": "bd-dra", "name": "Delta Radar Agency", "country": "BD"},
        {"code": "ke-ssa", "name": "Savanna Space Agency", "country": "KE"},
    ],
    "users": [
        {
            "username": MEMBER_USER,
            "member": "ke-ssa",
            "roles": ["analyst"],
            "password": MEMBER_PASSWORD,
        },
    ],
    "agreements": [
        {
            "collection": "monsoon-sar-grd",
            "provider": "bd-dra",
            "access": "members",
            "reduced_resolution_m": 120,
            "licence": "CC-BY-4.0",
        },
        {
            "collection": "kestrel-msi-l2a",
            "provider": "ke-ssa",
            "access": "open",
            "licence": "CC-BY-4.0",
        },
    ],
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    url: str
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)


def _wait_until_up(node: Node, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(
                f"eoshare exited with {node.process.returncode}:\n{node.log.read_text()[-3000:]}"
            )
        try:
            response = httpx.get(f"{node.url}/conformance", timeout=5.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise RuntimeError(f"eoshare did not start in {timeout_s} s ({last})")


@pytest.fixture(scope="session")
def web_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The small demo with agreements, served on 127.0.0.1 by a real uvicorn."""
    from eoshare.access.apply import apply_declarations
    from eoshare.access.store import AccessStore
    from eoshare.demo.build import build_demo

    data_dir = tmp_path_factory.mktemp("web-node")
    build_demo(data_dir, progress=False, scale="small")
    store = AccessStore(data_dir / "access.db")
    try:
        apply_declarations(store, DECLARATIONS, who="tests", allow_passwords=True)
    finally:
        store.close()

    port = _free_port()
    env = {
        **os.environ,
        "EOSHARE_DATA_DIR": str(data_dir),
        "EOSHARE_API__ADMIN_TOKEN": ADMIN_TOKEN,
        # a session cookie over http://127.0.0.1 (tests only; production runs https)
        "EOSHARE_ACCESS__COOKIE_SECURE": "false",
        "EOSHARE_LOG_LEVEL": "warning",
    }
    env.pop("EOSHARE_CONFIG", None)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "eoshare.api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = Node(f"http://127.0.0.1:{port}", data_dir, log, process)
    try:
        _wait_until_up(node, timeout_s=90.0)
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="session")
def member_token(web_node: Node) -> str:
    """A bearer token of a member user, made in the node's access store."""
    from eoshare.access.store import AccessStore

    store = AccessStore(web_node.data_dir / "access.db")
    try:
        _, secret = store.create_token(MEMBER_USER, days=1, label="web tests", who="tests")
    finally:
        store.close()
    return secret


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never Playwright's own builds)."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-browser.sh (make test does)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageProblems:
    errors: list[str] = field(default_factory=list)


def _screenshot_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)


@pytest.fixture
def open_page(browser: Any, web_node: Node, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open_page(viewport=..., locale=...)`` -> a page on the node's UI, ready to use.

    Uncaught script errors and Content-Security-Policy violations fail the test; the last
    state of each page is saved as a screenshot."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    contexts: list[Any] = []
    problems = PageProblems()

    def _open(
        *,
        viewport: tuple[int, int] = (1280, 800),
        locale: str = "en-GB",
        path: str = "/",
        wait_ready: bool = True,
    ) -> Any:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale=locale,
            accept_downloads=True,
        )
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                problems.errors.append(f"console: {msg.text}")
                if "Content Security Policy" in msg.text or "eoshare:" in msg.text
                else None
            ),
        )
        page.goto(f"{web_node.url}{path}")
        if wait_ready:
            # selectors, not wait_for_function: the UI's CSP forbids eval, which that uses
            page.wait_for_selector("body[data-ready]", state="attached")
            assert page.get_attribute("body", "data-ready") == "true", problems.errors
        return page

    yield _open
    name = _screenshot_name(request)
    for i, context in enumerate(contexts):
        for j, page in enumerate(context.pages):
            suffix = "" if i == j == 0 else f"-{i}-{j}"
            try:
                page.screenshot(path=str(SCREENSHOTS / f"{name}{suffix}.png"), full_page=False)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"screenshot of {name} failed: {exc}", file=sys.stderr)
        context.close()
    assert not problems.errors, problems.errors
