"""The ``eoshare`` command line (console script ``eoshare = eoshare.cli:main``).

Commands: ``serve`` (the HTTP API), ``ingest`` (raster files -> COG + STAC items),
``load`` (STAC documents -> the catalogue), ``demo`` (build a demo dataset and serve it).

Every command reads the settings once (``load_settings``), sets up JSON logging at
``settings.log_level`` and builds the services it needs. Errors are one readable line on
stderr (``error: <file>: <reason>``) and a non-zero exit: never a traceback. Exit codes:
0 success, 1 some input failed or an error, 2 bad usage (typer/click), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from eoshare import __version__, cli_help
from eoshare.errors import EoshareError, InvalidRequestError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from eoshare.settings import Settings

cli_help.install()  # help shows PATH..., TEXT, not <list[Path]>, <str> (eoshare.cli_help)
app = typer.Typer(
    name="eoshare",
    help="eoshare: share satellite Earth-observation data through a STAC API.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback is never the answer to bad input; unexpected bugs still show one.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class OnConflictChoice(StrEnum):
    error = "error"
    skip = "skip"
    update = "update"


# --- shared helpers -------------------------------------------------------------------
def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn the errors users cause into one line and an exit code."""
    from pydantic import ValidationError

    try:
        yield
    except EoshareError as exc:
        _fail(exc.detail)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        _fail(f"invalid setting {field}: {first.get('msg', exc)}")
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _settings(**overrides: Any) -> Settings:
    from eoshare.logs import setup_cli_logging
    from eoshare.settings import load_settings

    settings = load_settings(**overrides)
    # human output stays human: JSON logs on stderr only when asked (eoshare.logs)
    setup_cli_logging(settings.log_level, fmt=settings.log_format, file=settings.log_file)
    return settings


def _observed(settings: Settings, catalog: Any) -> Any:
    """The catalogue, telling a running server's alerts what it writes (eoshare.disaster)."""
    from eoshare.disaster.events import observe_writes

    observed, _ = observe_writes(settings, catalog)
    return observed


def _progress_wanted() -> bool:
    # Bars only for a person watching; scripts and CI logs get the summary alone.
    return sys.stderr.isatty()


@contextlib.contextmanager
def _bytes_progress(label: str, total: int | None = None) -> Iterator[Callable[[str, int], None]]:
    """A bar (or, with no total, a running count) of objects and bytes for a person
    watching; a callback that does nothing otherwise."""
    if not _progress_wanted():
        yield lambda _key, _n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TextColumn("{task.fields[objects]} objects"),
               TimeElapsedColumn()]  # fmt: skip
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=total, objects=0)
        count = 0

        def advance(_key: str, size: int) -> None:
            nonlocal count
            count += 1
            bar.update(task, advance=size, objects=count)

        yield advance


def _version(value: bool) -> None:
    if value:
        typer.echo(f"eoshare {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """eoshare: share satellite Earth-observation data through a STAC API."""


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the catalogue and the store live "
        "(default: EOSHARE_DATA_DIR or ./eoshare-data).",
        file_okay=False,
    ),
]


AllowDemoUsers = Annotated[
    bool,
    typer.Option(
        "--allow-demo-users",
        help="Serve demo users (whose password is published) on a non-loopback address.",
    ),
]


# --- serve ----------------------------------------------------------------------------
def _app_from_env() -> FastAPI:
    """The app factory uvicorn imports in --reload mode (settings come from the env)."""
    from eoshare.api.app import create_app
    from eoshare.settings import load_settings

    return create_app(load_settings())


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _prepare_sqlite_files(settings: Settings) -> None:
    """The node's SQLite files made (in WAL mode) before its worker processes start, so
    that they do not race each other to create them (eoshare.sqlitewal)."""
    from eoshare.leases import lease_location
    from eoshare.sqlitewal import prepare

    processing = settings.processing.db
    state = [
        settings.access_db_path, settings.disaster_db_path, settings.federation_db_path,
        settings.data_dir / "uploads.db", settings.data_dir / "orders.db",
        Path(processing) if processing else settings.data_dir / "processing.db",
    ]  # fmt: skip
    files = [p for p in (settings.state_db(path) for path in state) if isinstance(p, Path)]
    if settings.catalog_url.startswith("sqlite:///"):
        files.append(Path(settings.catalog_url.removeprefix("sqlite:///")))
    leases = lease_location(settings)
    if "://" not in leases:
        files.append(Path(leases))
    prepare(files)


def _run_server(
    settings: Settings,
    *,
    reload: bool = False,
    workers: int = 1,
    allow_demo_users: bool = False,
    ready: str | None = None,
) -> None:
    """Serve until stopped; ``ready`` is printed once the socket accepts connections
    (never before: a browser opened on it earlier would find nothing)."""
    import signal

    import uvicorn

    from eoshare.access.demo import check_demo_exposure, users_with_demo_password
    from eoshare.api.zerocopy import protocol as server_protocol

    # demo users' password is published: never on an address others can reach, unasked
    allowed = allow_demo_users or settings.security.allow_demo_users
    if not allowed:
        check_demo_exposure(
            settings.host,
            users_with_demo_password(settings.state_db(settings.access_db_path)),
            allowed=False,
        )
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the
    # handler that was there before it: this one, so that a clean stop exits 0 (service
    # managers read anything else as a failure)
    signal.signal(signal.SIGTERM, _exit_cleanly)

    if reload or workers > 1:
        # uvicorn's reloader and its worker processes import the app themselves, so the
        # settings go there through the environment (SQLite's WAL lets several worker
        # processes share one catalogue).
        os.environ["EOSHARE_DATA_DIR"] = str(settings.data_dir)
        _prepare_sqlite_files(settings)
        if ready:
            _announce_when_listening(settings.host, settings.port, ready)
        # /metrics adds up every worker's counts (eoshare.api.observability)
        with _metrics_dir(workers > 1 and not reload):
            uvicorn.run(
                "eoshare.cli:_app_from_env",
                factory=True,
                host=settings.host,
                port=settings.port,
                reload=reload,
                workers=None if reload else workers,
                log_config=None,
                timeout_graceful_shutdown=settings.api.shutdown_grace_s,
                http=server_protocol(),
            )
        return
    from eoshare.api.app import create_app

    app = create_app(settings)
    if ready:
        _announce_when_listening(settings.host, settings.port, ready)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=settings.api.shutdown_grace_s,
        http=server_protocol(),
    )


@contextlib.contextmanager
def _metrics_dir(on: bool) -> Iterator[None]:
    """Prometheus multiprocess mode for the workers of this run: a fresh folder of its own
    (``eoshare-metrics-<pid>-*``: folders of earlier runs that were killed are swept
    first), named in ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, removed at
    the end."""
    if not on:
        yield
        return
    from eoshare.workdirs import sweep, workdir

    sweep(METRICS_PREFIX)
    with workdir(METRICS_PREFIX) as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        try:
            yield
        finally:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


METRICS_PREFIX = "eoshare-metrics-"


def _announce_when_listening(host: str, port: int, message: str) -> None:
    """Print ``message`` once the server accepts connections on host:port: uvicorn says
    nothing a person can act on, and its worker and reloader processes start the server
    out of our reach, so the port itself is asked. When the port is already taken, the
    server will fail to bind and say why; nothing is announced."""
    import socket
    import threading
    import time

    probe = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)

    def listening() -> bool:
        try:
            with socket.create_connection((probe, port), timeout=0.5):
                return True
        except OSError:
            return False

    if listening():  # someone else holds the port: the server will say why it fails
        return

    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if listening():
                typer.echo(message, err=True)
                return
            time.sleep(0.2)

    threading.Thread(target=wait, daemon=True).start()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes (e.g. one per core).")
    ] = 1,
    allow_demo_users: AllowDemoUsers = False,
) -> None:
    """Serve the STAC API (and the web UI) over HTTP."""
    with _errors():
        settings = _settings(host=host, port=port, data_dir=data_dir)
        _run_server(
            settings,
            reload=reload,
            workers=workers,
            allow_demo_users=allow_demo_users,
            ready=f"eoshare is serving http://{settings.host}:{settings.port}/",
        )


# --- ingest ---------------------------------------------------------------------------
def _parse_datetime(value: str) -> datetime:
    from eoshare.catalog.validate import parse_datetime

    with contextlib.suppress(ValueError):
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    try:
        return parse_datetime(value, what="--datetime")
    except InvalidRequestError as exc:
        raise typer.BadParameter(exc.detail) from exc


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Raster files (GeoTIFF, COG...).")],
    collection: Annotated[
        str, typer.Option("--collection", "-c", help="The collection to add items to.")
    ],
    when: Annotated[
        str | None,
        typer.Option(
            "--datetime",
            help="Acquisition time (RFC 3339 or YYYY-MM-DD) when the files do not say.",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Regex matched in file names: the matched text (its 'asset' group) is the "
            "asset key, the rest the item id. Default: a band suffix like _B04, _SCL, _TCI.",
        ),
    ] = None,
    one_item: Annotated[
        bool, typer.Option("--one-item", help="Put all the files into one item.")
    ] = False,
    item_id: Annotated[
        str | None, typer.Option("--id", help="The item id (one item only).")
    ] = None,
    create_collection: Annotated[
        bool,
        typer.Option("--create-collection", help="Create the collection if it does not exist."),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Ingest raster files: convert to COG, store, and catalogue them as STAC items."""
    if group is not None and one_item:
        raise typer.BadParameter("use either --group or --one-item, not both")
    dt = _parse_datetime(when) if when is not None else None
    with _errors():
        from eoshare.catalog import open_catalog
        from eoshare.ingest.raster import ingest_rasters
        from eoshare.ingest.safe_open import RasterLimits
        from eoshare.storage import open_store

        settings = _settings(data_dir=data_dir)
        catalog = _observed(settings, open_catalog(settings.catalog_url))
        try:
            report = ingest_rasters(
                paths,
                catalog=catalog,
                store=open_store(settings.storage_url),
                collection_id=collection,
                group=group,
                one_item=one_item,
                datetime=dt,
                item_id=item_id,
                create_collection=create_collection,
                progress=_progress_wanted(),
                limits=RasterLimits.from_settings(settings.ingest),
            )
        finally:
            catalog.close()
    for failure in report.failures:
        typer.echo(f"error: {failure.path}: {failure.reason}", err=True)
    items = len(report.item_ids)
    summary = f"ingested {items} item{'s' * (items != 1)}"
    if report.updated:
        summary += f" ({report.inserted} new, {report.updated} updated)"
    failed = len({f.path for f in report.failures})
    if failed:
        summary += f", {failed} file{'s' * (failed != 1)} failed"
    typer.echo(summary, err=bool(failed))
    if failed:
        raise typer.Exit(1)


# --- load -----------------------------------------------------------------------------
@app.command()
def load(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="STAC files: .json (Item, Collection, ItemCollection), "
            ".ndjson/.jsonl, .parquet (stac-geoparquet)."
        ),
    ],
    on_conflict: Annotated[
        OnConflictChoice,
        typer.Option("--on-conflict", help="What to do with an item that already exists."),
    ] = OnConflictChoice.error,
    create_collections: Annotated[
        bool,
        typer.Option(
            "--create-collections", help="Create collections that items name but no file defines."
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Items per database transaction.")
    ] = 1000,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="Processes that parse and check NDJSON items beside the one that writes "
            "(default: one per CPU for 8 MB of NDJSON or more; 0: none).",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Load STAC Items and Collections into the catalogue."""
    with _errors():
        from eoshare.catalog import open_catalog
        from eoshare.ingest.stacdocs import DocumentLimits, load_documents

        settings = _settings(data_dir=data_dir)
        catalog = _observed(settings, open_catalog(settings.catalog_url))
        try:
            report = load_documents(
                files,
                catalog=catalog,
                on_conflict=on_conflict.value,
                create_collections=create_collections,
                batch_size=batch_size,
                workers=workers,
                progress=_progress_wanted(),
                limits=DocumentLimits(
                    max_json_bytes=settings.ingest.max_json_bytes,
                    max_line_bytes=settings.ingest.max_ndjson_line_bytes,
                ),
            )
        finally:
            catalog.close()
    for problem in report.problems:
        typer.echo(f"error: {problem.location}: {problem.reason}", err=True)
    if report.problem_count > len(report.problems):
        typer.echo(f"error: ... and {report.problem_count - len(report.problems)} more", err=True)
    parts = [f"loaded {report.inserted + report.updated} items"]
    detail = [f"{report.inserted} new"]
    if report.updated:
        detail.append(f"{report.updated} updated")
    if report.skipped:
        detail.append(f"{report.skipped} skipped")
    parts[0] += f" ({', '.join(detail)})"
    if report.collections_created or report.collections_updated:
        n = len(report.collections_created) + len(report.collections_updated)
        parts.append(f"{n} collection{'s' * (n != 1)} written")
    if report.problem_count:
        parts.append(
            f"{report.problem_count} document{'s' * (report.problem_count != 1)} not loaded"
        )
    if report.files_failed:
        parts.append(f"{report.files_failed} file{'s' * (report.files_failed != 1)} failed")
    typer.echo(", ".join(parts), err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


# --- demo -----------------------------------------------------------------------------
@app.command()
def demo(
    data_dir: DataDir = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the demo once it is built.")
    ] = True,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    allow_demo_users: AllowDemoUsers = False,
) -> None:
    """Build a synthetic demo dataset, then serve it."""
    with _errors():
        settings = _settings(data_dir=data_dir, host=host, port=port)
        if serve_after:
            # the demo's users get the published password: refuse before building anything
            from eoshare.access.demo import check_demo_exposure, demo_usernames

            check_demo_exposure(
                settings.host,
                demo_usernames(),
                allowed=allow_demo_users or settings.security.allow_demo_users,
            )
        # Imported here: the demo builder pulls in heavy modules that the other
        # commands do not need.
        import importlib

        build_demo = importlib.import_module("eoshare.demo.build").build_demo
        build_demo(settings.data_dir, progress=_progress_wanted())
        # members, users and one collection under each kind of agreement
        # (eoshare/demo/agreements.toml; see README "Demo users")
        from eoshare.access.demo import apply_demo_agreements
        from eoshare.catalog import open_catalog

        demo_catalog = open_catalog(settings.catalog_url)
        try:
            apply_demo_agreements(
                settings.data_dir,
                demo_catalog,
                access_db=settings.state_db(settings.access_db_path),
            )
        finally:
            demo_catalog.close()
        typer.echo(f"demo data ready in {settings.data_dir}", err=True)
        if serve_after:
            # the web UI (eoshare.web): search, preview and download on a map; said only
            # once the server listens
            _run_server(
                settings,
                allow_demo_users=allow_demo_users,
                ready=f"open http://{settings.host}:{settings.port}/ in a web browser for the map",
            )


# --- access: members, users, tokens, agreements, apply, usage (eoshare.access.cli) ----
def _register_access() -> None:
    from eoshare.access.cli import register

    register(app, errors=_errors, settings=_settings)


_register_access()


# --- downloads and storage: storage migrate, verify, get (eoshare.downloads.cli) ------
def _register_downloads() -> None:
    from eoshare.downloads.cli import register

    register(app, errors=_errors, settings=_settings)


_register_downloads()


# --- disaster: activations, orbits (eoshare.disaster.cli) -------------------------------
def _register_disaster() -> None:
    from eoshare.disaster.cli import register

    register(app, errors=_errors, settings=_settings)


_register_disaster()


# --- backup and restore (eoshare.backup) ---------------------------------------------
@app.command("backup")
def backup_cmd(
    dest: Annotated[Path, typer.Argument(help="A new folder for the backup.", file_okay=False)],
    store: Annotated[
        bool,
        typer.Option(
            "--store/--no-store",
            help="Copy the asset objects too (--no-store: list them with checksums only).",
        ),
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Back up a node while it serves: every database (a consistent snapshot), its key
    files and the asset objects the catalogue refers to, with a manifest of checksums."""
    with _errors():
        from eoshare.backup import backup
        from eoshare.storage import open_store

        settings = _settings(data_dir=data_dir)
        with _bytes_progress("backing up objects") as on_object:
            report = backup(
                data_dir=settings.data_dir,
                catalog_url=settings.catalog_url,
                access_db=settings.access_db_path,
                store=open_store(settings.storage_url, **settings.s3.model_dump(exclude_none=True)),
                dest=dest,
                with_store=store,
                on_object=on_object,
                database=settings.database,
            )
    for key in report.missing:
        typer.echo(f"warning: {key}: in the catalogue but not in the store", err=True)
    typer.echo(
        f"backup written to {report.dest}: {len(report.databases)} databases, "
        f"{len(report.files)} state files, {report.objects} objects ({report.object_bytes} bytes"
        f"{'' if store else ', listed only'})",
        err=True,
    )


def _backup_bytes(source: Path) -> int | None:
    """The bytes of the objects a backup holds (for the bar), or None when unreadable
    (restore itself then says what is wrong)."""
    try:
        from eoshare.backup import read_manifest

        objects = read_manifest(source)["store"]["objects"].values()
        return sum(int(entry["size"]) for entry in objects)
    except Exception:
        return None


@app.command("restore")
def restore_cmd(
    source: Annotated[
        Path, typer.Argument(help="A folder written by 'eoshare backup'.", file_okay=False)
    ],
    data_dir: DataDir = None,
) -> None:
    """Bring a node back from a backup into an empty data directory (every checksum is
    checked first; the store is checked against the catalogue at the end)."""
    with _errors():
        from eoshare.backup import restore
        from eoshare.storage import open_store

        settings = _settings(data_dir=data_dir)
        with _bytes_progress("restoring objects", _backup_bytes(source)) as on_object:
            report = restore(
                source=source,
                data_dir=settings.data_dir,
                store=open_store(settings.storage_url, **settings.s3.model_dump(exclude_none=True)),
                catalog_url=settings.catalog_url,
                on_object=on_object,
                database=settings.database,
            )
    for problem in report.problems:
        typer.echo(f"error: {problem}", err=True)
    typer.echo(
        f"restored {len(report.databases)} databases, {len(report.files)} state files and "
        f"{report.objects} objects ({report.object_bytes} bytes) into {settings.data_dir}",
        err=not report.ok,
    )
    if not report.ok:
        raise typer.Exit(1)


# --- moving a node to another backend (eoshare.catalog.migrate, eoshare.state_migrate) ---
@app.command("migrate")
def migrate_cmd(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Where the node moves: postgresql://user@host:port/db (catalogue in pgstac, "
            "state in its schemas), or back: sqlite (this data folder), "
            "sqlite:///path/catalog.db or a folder. Run again to resume.",
        ),
    ],
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Put the state (access, orders, jobs...) in this PostgreSQL database "
            "instead of the --to one.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Also copy the archive to this store (s3://...)."),
    ] = None,
    catalog_only: Annotated[
        bool, typer.Option("--catalog-only", help="Move the catalogue only, not the state.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Copy this node's catalogue and all its state (and, with --storage, its archive) to
    PostgreSQL/S3, or back to SQLite files; then compare counts and checksums of every
    collection and table. Point EOSHARE_CATALOG/EOSHARE_DATABASE (and EOSHARE_STORAGE) at
    the new place afterwards."""
    problems: list[str] = []
    lines: list[str] = []
    with _errors():
        from eoshare.catalog import open_catalog
        from eoshare.catalog.migrate import migrate_catalog
        from eoshare.state_migrate import migrate_state, resolve_target, state_sources

        settings = _settings(data_dir=data_dir)
        target = resolve_target(to, data_dir=settings.data_dir, database=database)
        sources = state_sources(settings)
        same_state = (
            catalog_only
            or target.state is None
            or str(sources("access.db")) == str(target.locate("access.db"))
        )
        same_catalog = target.catalog == settings.catalog_url
        if same_catalog and same_state:
            raise InvalidRequestError("--to names the catalogue and state this node already uses")
        source = open_catalog(settings.catalog_url)
        try:
            if not same_catalog:
                dest = open_catalog(target.catalog)
                try:
                    report = migrate_catalog(
                        source,
                        dest,
                        progress=lambda cid, n: typer.echo(f"{cid}: {n} items", err=True),
                    )
                finally:
                    dest.close()
                problems += report.problems
                lines.append(
                    f"catalogue: {report.collections} collections, {report.items} items: "
                    f"{report.copied} copied, {report.skipped} already there; checksums "
                    f"{'match' if report.ok else 'DIFFER'}"
                )
            if not same_state:
                state = migrate_state(
                    sources,
                    target.locate,
                    progress=lambda table, n: typer.echo(f"{table}: {n} rows", err=True),
                )
                problems += state.problems
                lines.append(
                    f"state: {len(state.tables)} tables, {state.rows} rows ({state.copied} "
                    f"copied); counts and checksums {'match' if state.ok else 'DIFFER'}"
                )
            if storage:
                from eoshare.storage import open_store
                from eoshare.storage.migrate import migrate as migrate_store

                s3 = settings.s3.model_dump(exclude_none=True)
                moved = migrate_store(
                    open_store(settings.storage_url, **s3),
                    open_store(storage, **s3),
                    catalog=source,
                )
                problems += [f"{key}: {reason}" for key, reason in moved.failures]
                lines.append(
                    f"archive: {moved.copied} objects copied ({moved.bytes} bytes), "
                    f"{moved.skipped} already there, {len(moved.failures)} failed"
                )
        finally:
            source.close()
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    for line in lines:
        typer.echo(line, err=bool(problems))
    if problems:
        raise typer.Exit(1)
    hints = [f"EOSHARE_CATALOG={target.catalog}"]
    if not same_state:
        hints.append(
            f"EOSHARE_DATABASE={target.state}"
            if isinstance(target.state, str) or target.state is None
            else f"EOSHARE_DATA_DIR={target.state} (and EOSHARE_DATABASE unset)"
        )
    if storage:
        hints.append(f"EOSHARE_STORAGE={storage}")
    typer.echo("now set " + ", ".join(hints), err=True)


# --- operators: keys rotate|list|retire|remove, housekeeping (eoshare.cli_ops) --------
def _register_ops() -> None:
    from eoshare.cli_ops import register

    register(app, errors=_errors, settings=_settings)


_register_ops()


# --- processing: jobs list|logs|cancel|results (eoshare.cli_jobs) -----------------------
def _register_jobs() -> None:
    from eoshare.cli_jobs import register

    register(app, errors=_errors, settings=_settings)


# --- federation: peers, node, harvest, export, import (eoshare.federation.cli) -----------
def _register_federation() -> None:
    from eoshare.federation.cli import register

    register(app, errors=_errors, settings=_settings)


_register_jobs()
_register_federation()


def main() -> None:
    """The console script."""
    app()


if __name__ == "__main__":
    main()
