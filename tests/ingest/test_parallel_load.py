"""``eoshare load`` with its worker processes (``ingest/parallel.py``) and its prepared-row
writer (``stacdocs._PreparedLoad``) gives exactly what the item-by-item path gives: the
same items and collections (extent and summaries too), the same one-line problems."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from eoshare.catalog import open_catalog
from eoshare.catalog.base import Catalog
from eoshare.ingest.collections import refresh_extent
from eoshare.ingest.parallel import PreparePool
from eoshare.ingest.stacdocs import DocumentLoadReport, load_documents


class _ItemByItem:
    """A catalogue without the prepared-row path: load_documents falls back to
    ``_ItemStream`` + ``upsert_items`` (as for any other backend)."""

    def __init__(self, inner: Catalog) -> None:
        self._catalog = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("write_prepared", "existing_keys"):
            raise AttributeError(name)
        return getattr(self._catalog, name)


def _lines(shared_data: Path) -> list[dict[str, Any]]:
    stac = shared_data / "stac"
    docs = []
    for name in (
        "landsat-8-c2-l2_netherlands_pc.ndjson",
        "sentinel-2-l2a_pc_and_earthsearch.ndjson",
    ):
        docs += [json.loads(line) for line in (stac / name).read_text().splitlines() if line]
    return docs


@pytest.fixture(scope="module")
def mixed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two NDJSON files with every kind of line ``eoshare load`` treats differently."""
    docs = _lines(shared_data)
    folder = tmp_path_factory.mktemp("mixed")
    first: list[str] = []
    for i, doc in enumerate(docs[:200]):
        doc = dict(doc)
        if i == 3:  # a client-sent store key: stripped
            name = next(iter(doc["assets"]))
            doc["assets"] = {**doc["assets"], name: {**doc["assets"][name], "eoshare:key": "x"}}
        if i == 5:  # invalid: refused at its line
            doc = {**doc, "properties": {**doc["properties"], "datetime": "yesterday"}}
        if i == 7:  # no bbox: computed
            doc = {k: v for k, v in doc.items() if k != "bbox"}
        if i == 9:  # a collection nobody made, with --create-collections off for it
            doc = {**doc, "collection": "no-such-collection"}
        first.append(json.dumps(doc))
        if i == 11:
            first.append("{not json")
            first.append(json.dumps({"type": "FeatureCollection", "features": []}))
            first.append("")
        if i == 20:
            first.append(json.dumps(docs[2]))  # the same item again
    a = folder / "a.ndjson"
    a.write_text("\n".join(first) + "\n")
    b = folder / "b.ndjson"
    b.write_text("\n".join(json.dumps(d) for d in docs[150:]) + "\n")  # 50 repeated
    return [a, b]


def _load(paths: list[Path], url: str, mode: str, **kw: Any) -> tuple[DocumentLoadReport, Any]:
    catalog = open_catalog(url)
    try:
        target: Any = _ItemByItem(catalog) if mode == "item-by-item" else catalog
        workers = {"item-by-item": 0, "in-process": 0, "workers": 2}[mode]
        report = load_documents(paths, catalog=target, workers=workers, batch_size=64, **kw)
        items = sorted((i["collection"], i["id"], json.dumps(i, sort_keys=True))
                       for i in catalog.iter_items())  # fmt: skip
        return report, (items, catalog.list_collections())
    finally:
        catalog.close()


@pytest.mark.parametrize(
    ("backend", "on_conflict"),
    [("sqlite", "error"), ("sqlite", "skip"), ("sqlite", "update"),
     ("pgstac", "error"), ("pgstac", "update")],
)  # fmt: skip
def test_workers_load_what_the_item_by_item_path_loads(
    mixed: list[Path], tmp_path: Path, backend: str, on_conflict: str, request: Any
) -> None:
    results = {}
    for mode in ("item-by-item", "in-process", "workers"):
        # the missing collection: refused the same way by all (create_collections would
        # make it), so make only the two real ones first through a first small load
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'{mode}.db'}"
        else:
            url = request.getfixturevalue("pg").new_catalog_url()
        catalog = open_catalog(url)
        for cid in ("landsat-8-c2-l2", "sentinel-2-l2a"):
            seed = tmp_path / f"{mode}-{cid}.ndjson"
            doc = next(
                json.loads(line)
                for path in mixed
                for line in path.read_text().splitlines()
                if line.startswith('{"') and json.loads(line).get("collection") == cid
            )
            seed.write_text(json.dumps({**doc, "id": f"seed-{cid}"}) + "\n")
            load_documents([seed], catalog=catalog, create_collections=True, workers=0)
        catalog.close()
        report, state = _load(mixed, url, mode, on_conflict=on_conflict)
        results[mode] = (
            sorted((p.location.replace(str(tmp_path), ""), p.reason) for p in report.problems),
            report.problem_count,
            (report.inserted, report.updated, report.skipped, report.files_failed),
            state,
        )
    base = results["item-by-item"]
    assert base[2][0] > 200, base[2]  # most items loaded
    reasons = " | ".join(r for _, r in base[0])
    assert "not valid JSON" in reasons and "yesterday" in reasons, reasons
    assert "no-such-collection" in reasons and "FeatureCollection" in reasons, reasons
    if on_conflict == "error":
        assert "already exists" in reasons, reasons
    for mode in ("in-process", "workers"):
        assert results[mode][0] == base[0], mode
        assert results[mode][1:3] == base[1:3], mode
        assert results[mode][3] == base[3], mode
    items = base[3][0]
    assert not any("eoshare:key" in doc for _, _, doc in items)


def test_extent_and_summaries_built_while_loading_equal_a_rebuild(
    mixed: list[Path], tmp_path: Path
) -> None:
    """--create-collections: the extent and summaries kept during the load are what
    reading every item back (refresh_extent) gives."""
    db = tmp_path / "made.db"
    report, (_, collections) = _load(
        mixed, f"sqlite:///{db}", "workers", on_conflict="skip", create_collections=True
    )
    assert set(report.collections_created) >= {"landsat-8-c2-l2", "sentinel-2-l2a"}
    catalog = open_catalog(f"sqlite:///{db}")
    try:
        for before in collections:
            assert before.get("summaries"), before["id"]
            refresh_extent(catalog, before["id"])
            assert catalog.get_collection(before["id"]) == before
    finally:
        catalog.close()


def test_workers_stop_with_the_pool(mixed: list[Path]) -> None:
    with PreparePool(2) as pool:
        pids = [p.pid for p in pool._procs]
        chunks = pool.prepare_file(mixed[0], 1 << 20)
        next(chunks)
        chunks.close()  # stopped early: drained, the workers are still usable
        assert sum(len(c[1]) for c in pool.prepare_file(mixed[0], 1 << 20)) > 200
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_listeners_hear_the_prepared_batches(mixed: list[Path], tmp_path: Path) -> None:
    from eoshare.catalog.observed import ObservedCatalog

    heard: list[tuple[str, str]] = []
    catalog = ObservedCatalog(open_catalog(f"sqlite:///{tmp_path / 'c.db'}"), [heard.extend])
    try:
        report = load_documents(mixed, catalog=catalog, create_collections=True, workers=2)
    finally:
        catalog.close()
    assert report.inserted > 200
    assert len(set(heard)) == report.inserted


@pytest.mark.parametrize("workers", [0, 2])
def test_a_named_pipe_is_read_as_a_stream(mixed: list[Path], tmp_path: Path, workers: int) -> None:
    """A file that cannot be read in byte ranges (a named pipe) is read line by line,
    with the same outcomes and the same line numbers as the regular file."""
    import threading

    fifo = tmp_path / "items.ndjson"
    os.mkfifo(fifo)
    data = mixed[0].read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)  # (never a hung test run)
    writer.start()
    with PreparePool(workers) as pool:
        piped = list(pool.prepare_file(fifo, 1 << 20))
        regular = list(pool.prepare_file(mixed[0], 1 << 20))
    writer.join(timeout=10)

    def placed(chunks: list[tuple[int, list[Any]]]) -> list[tuple[Any, ...]]:
        out, base = [], 0
        for lines, outcomes in chunks:
            out += [(o[0], base + o[1], *o[2:]) for o in outcomes]
            base += lines
        return out

    assert len(piped) > 1  # (in chunks, not held whole)
    assert placed(piped) == placed(regular)
    assert sum(n for n, _ in piped) == sum(n for n, _ in regular) == data.count(b"\n")
