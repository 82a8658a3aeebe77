"""The client behind ``eoshare get``: fetch the assets of a search (or of ids) from an
eoshare node (or any STAC API) into a folder, with parallel streams, resume and sha256
checks.

Each file is written to ``<name>.part`` first; an interrupted run leaves the part and
its ETag beside it, and the next run asks only for the rest (``Range`` + ``If-Range``:
if the file changed on the server, it starts over). A finished file is checked against
the item's ``file:checksum`` before it is renamed into place; a file already there with
the right checksum is skipped.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from eoshare.errors import InvalidRequestError, UpstreamError
from eoshare.ingest.checksums import hexdigest_from_multihash

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileTask:
    url: str
    target: Path
    size: int | None
    sha256: str | None


@dataclass
class GetReport:
    downloaded: int = 0
    skipped: int = 0
    resumed: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _safe(segment: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-+" else "_" for c in segment)
    return cleaned.strip(".") or "_"


def search_items(
    client: httpx.Client, base: str, body: dict[str, Any], max_items: int = 100_000
) -> Iterator[dict[str, Any]]:
    """Every item of a POST /search, following ``next`` links."""
    url, payload = f"{base.rstrip('/')}/search", dict(body)
    method = "POST"
    seen = 0
    while True:
        r = client.post(url, json=payload) if method == "POST" else client.get(url)
        if r.status_code >= 400:
            raise UpstreamError(f"search failed ({r.status_code}): {_detail(r)}")
        page = r.json()
        for item in page.get("features", []):
            yield item
            seen += 1
            if seen >= max_items:
                return
        nxt = next((x for x in page.get("links", []) if x.get("rel") == "next"), None)
        if nxt is None or not page.get("features"):
            return
        method = str(nxt.get("method", "GET")).upper()
        url, payload = nxt["href"], nxt.get("body", payload)


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text[:200]))
    except ValueError:
        return r.text[:200]


def plan_files(
    items: Iterator[dict[str, Any]], out_dir: Path, assets: set[str] | None
) -> list[FileTask]:
    tasks = []
    for item in items:
        folder = out_dir / _safe(str(item.get("collection", "_"))) / _safe(str(item["id"]))
        for name, asset in (item.get("assets") or {}).items():
            if assets is not None and name not in assets:
                continue
            roles = asset.get("roles") or []
            if assets is None and "eoshare:key" not in asset and "data" not in roles:
                continue  # by default: files the node holds, or data; not rendered views
            href = asset.get("href", "")
            if not isinstance(href, str) or urlparse(href).scheme not in ("http", "https"):
                continue
            source = asset.get("eoshare:key") or urlparse(href).path
            ext = os.path.splitext(str(source))[1]
            sha = None
            if isinstance(asset.get("file:checksum"), str):
                try:
                    sha = hexdigest_from_multihash(asset["file:checksum"])
                except ValueError:
                    sha = None
            size = asset.get("file:size") if isinstance(asset.get("file:size"), int) else None
            tasks.append(FileTask(href, folder / f"{_safe(name)}{ext}", size, sha))
    return tasks


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(
    client: httpx.Client, task: FileTask, on_bytes: Callable[[int], None] | None = None
) -> str:
    """Download one file with resume; returns 'skipped', 'resumed' or 'downloaded'."""
    if task.target.is_file() and task.sha256 and _sha256(task.target) == task.sha256:
        return "skipped"
    task.target.parent.mkdir(parents=True, exist_ok=True)
    part = task.target.with_name(task.target.name + ".part")
    tag_file = task.target.with_name(task.target.name + ".part.etag")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Accept-Encoding": "identity"}
    if have and tag_file.is_file():
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = tag_file.read_text().strip()
    else:
        have = 0
    outcome = "downloaded"
    with client.stream("GET", task.url, headers=headers) as r:
        if r.status_code == 416 and have:
            pass  # the part is already whole; checked below
        elif r.status_code not in (200, 206):
            r.read()
            raise UpstreamError(f"HTTP {r.status_code}: {_detail(r)}")
        else:
            if r.status_code == 206:
                outcome = "resumed"
                mode = "ab"
            else:
                mode, have = "wb", 0
            if r.headers.get("etag"):
                tag_file.write_text(r.headers["etag"])
            with part.open(mode) as f:
                for chunk in r.iter_raw(_CHUNK):
                    f.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
    if task.size is not None and part.stat().st_size != task.size:
        raise UpstreamError(
            f"got {part.stat().st_size} bytes, expected {task.size}; run again to resume"
        )
    if task.sha256 and _sha256(part) != task.sha256:
        part.unlink()
        tag_file.unlink(missing_ok=True)
        raise UpstreamError("the file's sha256 does not match the catalogue; run again")
    os.replace(part, task.target)
    tag_file.unlink(missing_ok=True)
    return outcome


def get(
    base_url: str,
    out_dir: Path,
    *,
    search: dict[str, Any],
    assets: set[str] | None = None,
    parallel: int = 4,
    token: str | None = None,
    progress: bool = False,
    timeout_s: float = 60.0,
) -> GetReport:
    """Download the assets of every item the search matches; called by ``eoshare get``."""
    if parallel < 1:
        raise InvalidRequestError("--parallel must be at least 1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    report = GetReport()
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=parallel + 2)
    try:
        with httpx.Client(headers=headers, timeout=timeout_s, limits=limits,
                          follow_redirects=True) as client:  # fmt: skip
            tasks = plan_files(search_items(client, base_url, search), out_dir, assets)
            bar, task_id = _bar(progress, sum(t.size or 0 for t in tasks))

            def advance(n: int) -> None:
                with lock:
                    report.bytes += n
                if bar is not None:
                    bar.advance(task_id, n)

            with bar if bar is not None else _null(), ThreadPoolExecutor(parallel) as pool:
                futures = {pool.submit(fetch_file, client, t, advance): t for t in tasks}
                for fut in as_completed(futures):
                    t = futures[fut]
                    try:
                        outcome = fut.result()
                    except (httpx.HTTPError, UpstreamError, OSError) as exc:
                        detail = exc.detail if isinstance(exc, UpstreamError) else str(exc)
                        report.failures.append((str(t.target), detail or type(exc).__name__))
                        continue
                    if outcome == "skipped":
                        report.skipped += 1
                    else:
                        report.downloaded += 1
                        report.resumed += outcome == "resumed"
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach {base_url}: {exc}") from exc
    return report


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _bar(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), console=Console(stderr=True), transient=True)  # fmt: skip
    return bar, bar.add_task("get", total=total or None)
