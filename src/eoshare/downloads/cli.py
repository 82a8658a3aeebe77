"""The command-line verbs of this area, registered on the main ``eoshare`` app by
``eoshare.cli``: ``storage migrate``, ``verify`` and ``get``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    storage = typer.Typer(help="Move and check the asset store.", no_args_is_help=True)
    app.add_typer(storage, name="storage")

    def _store(url: str, s: Any) -> Any:
        from eoshare.storage import open_store

        return open_store(url, **s.s3.model_dump(exclude_none=True))

    @storage.command("migrate")
    def migrate_cmd(
        to: Annotated[
            str, typer.Option("--to", help="The target store URL (s3://... or file://...).")
        ],
        source: Annotated[
            str | None,
            typer.Option("--from", help="The source store URL (default: the configured one)."),
        ] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir", file_okay=False)] = None,
    ) -> None:
        """Copy every object to another store, verifying each sha256 (run again to resume)."""
        from eoshare.catalog import open_catalog
        from eoshare.storage.migrate import migrate

        with errors():
            s = settings(data_dir=data_dir)
            src = _store(source or s.storage_url, s)
            dst = _store(to, s)
            catalog = open_catalog(s.catalog_url)
            try:
                report = migrate(src, dst, catalog=catalog)
            finally:
                catalog.close()
        for key, reason in report.failures:
            typer.echo(f"error: {key}: {reason}", err=True)
        typer.echo(
            f"copied {report.copied} objects ({report.bytes} bytes), {report.skipped} already "
            f"there, {len(report.failures)} failed",
            err=not report.ok,
        )
        if report.ok:
            typer.echo(f"now set EOSHARE_STORAGE={dst.url}", err=True)
        else:
            raise typer.Exit(1)

    @app.command("verify")
    def verify_cmd(
        quick: Annotated[bool, typer.Option("--quick", help="Sizes only, no checksums.")] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per finding.")
        ] = False,
        data_dir: Annotated[Path | None, typer.Option("--data-dir", file_okay=False)] = None,
    ) -> None:
        """Compare the store with the catalogue: missing, corrupt and orphaned files."""
        from eoshare.catalog import open_catalog
        from eoshare.storage.verify import verify

        with errors():
            s = settings(data_dir=data_dir)
            catalog = open_catalog(s.catalog_url)
            try:
                report = verify(catalog, _store(s.storage_url, s), deep=not quick)
            finally:
                catalog.close()
        for f in report.findings:
            if as_json:
                typer.echo(json.dumps({k: v for k, v in vars(f).items() if v is not None}))
            else:
                where = f" ({f.collection}/{f.item} asset {f.asset})" if f.item else ""
                typer.echo(f"{f.kind}: {f.key}{where}: {f.detail}")
        counts = {k: len(report.of(k)) for k in ("missing", "corrupt", "orphaned")}
        typer.echo(
            f"checked {report.checked} files: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
            err=True,
        )
        if not report.ok:
            raise typer.Exit(1)

    @app.command("get")
    def get_cmd(
        url: Annotated[str, typer.Argument(help="The node's URL, e.g. http://127.0.0.1:8000")],
        out: Annotated[
            Path, typer.Option("--out", "-o", help="The folder to download into.")
        ] = Path("."),
        ids: Annotated[str | None, typer.Option("--ids", help="Item ids, comma-separated.")] = None,
        collections: Annotated[str | None, typer.Option("--collections", "-c")] = None,
        bbox: Annotated[str | None, typer.Option("--bbox", help="minx,miny,maxx,maxy")] = None,
        when: Annotated[str | None, typer.Option("--datetime")] = None,
        assets: Annotated[
            str | None, typer.Option("--assets", help="Asset keys, comma-separated.")
        ] = None,
        limit: Annotated[int, typer.Option("--max-items", min=1)] = 1000,
        parallel: Annotated[int, typer.Option("--parallel", "-j", min=1, max=64)] = 4,
        token: Annotated[str | None, typer.Option("--token", envvar="EOSHARE_TOKEN")] = None,
    ) -> None:
        """Download the assets of a search (or of ids) with resume and checksum checks."""
        from eoshare.downloads.client import get

        body: dict[str, Any] = {"limit": min(limit, 100)}
        if ids:
            body["ids"] = [x.strip() for x in ids.split(",") if x.strip()]
        if collections:
            body["collections"] = [x.strip() for x in collections.split(",") if x.strip()]
        if bbox:
            try:
                body["bbox"] = [float(x) for x in bbox.split(",")]
            except ValueError:
                raise typer.BadParameter("--bbox must be 4 numbers: minx,miny,maxx,maxy") from None
        if when:
            body["datetime"] = when
        with errors():
            settings()
            report = get(
                url,
                out,
                search=body,
                assets={a.strip() for a in assets.split(",")} if assets else None,
                parallel=parallel,
                token=token,
                progress=sys.stderr.isatty(),
            )
        for target, reason in report.failures:
            typer.echo(f"error: {target}: {reason}", err=True)
        typer.echo(
            f"downloaded {report.downloaded} files ({report.resumed} resumed), "
            f"{report.skipped} already there, {len(report.failures)} failed",
            err=not report.ok,
        )
        if not report.ok:
            raise typer.Exit(1)
