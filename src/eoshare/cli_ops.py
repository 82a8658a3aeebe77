"""Operator verbs registered on the main ``eoshare`` app by ``eoshare.cli``:
``keys rotate|list|retire|remove`` (the keys that sign download links) and
``housekeeping`` (purge expired uploads, orders and stale temporary folders)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer

from eoshare.errors import InvalidRequestError

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", file_okay=False, help="The node's data folder.")
]
RESTART = "restart the node for the change to take effect"


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    keys = typer.Typer(help="Manage the keys that sign download links.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    def _key_file(data_dir: Path | None) -> Path:
        s = settings(data_dir=data_dir)
        if s.downloads.signing_keys:
            raise InvalidRequestError(
                "the signing keys are set by EOSHARE_DOWNLOADS__SIGNING_KEYS: change them there"
            )
        path: Path = s.data_dir / "signing-keys.json"
        return path

    @keys.command("list")
    def list_cmd(data_dir: DataDir = None) -> None:
        """Show every key: id, creation time and state (signing, verifying, retired)."""
        from eoshare.downloads.signing import list_keys

        with errors():
            found = list_keys(_key_file(data_dir))
        for k in found:
            typer.echo(f"{k.kid}\t{k.created or '-'}\t{k.state}")
        if not found:
            typer.echo("no signing keys yet (the node makes one when it first starts)", err=True)

    @keys.command("rotate")
    def rotate_cmd(data_dir: DataDir = None) -> None:
        """Add a new key that signs from now on; older keys still verify."""
        from eoshare.downloads.signing import rotate_keys

        with errors():
            kid = rotate_keys(_key_file(data_dir))[0][0]
        typer.echo(kid)
        typer.echo(f"key {kid} now signs new links; {RESTART}", err=True)

    @keys.command("retire")
    def retire_cmd(
        kid: Annotated[str, typer.Argument(help="The key id (see 'eoshare keys list').")],
        data_dir: DataDir = None,
    ) -> None:
        """Stop a key from signing; links it made keep working until it is removed."""
        from eoshare.downloads.signing import retire_key

        with errors():
            retire_key(_key_file(data_dir), kid)
        typer.echo(f"key {kid} is retired: it verifies but no longer signs; {RESTART}", err=True)

    @keys.command("remove")
    def remove_cmd(
        kid: Annotated[str, typer.Argument(help="The key id (see 'eoshare keys list').")],
        data_dir: DataDir = None,
    ) -> None:
        """Forget a key: every link it signed is refused (403)."""
        from eoshare.downloads.signing import remove_key

        with errors():
            remove_key(_key_file(data_dir), kid)
        typer.echo(f"key {kid} is removed: links it signed are refused; {RESTART}", err=True)

    @app.command("housekeeping")
    def housekeeping_cmd(
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
        ] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Purge expired uploads and orders and stale temporary folders (a running node
        does this every EOSHARE_HOUSEKEEPING__INTERVAL_S seconds too)."""
        from eoshare.downloads.orders import OrderBook
        from eoshare.downloads.uploads import UploadBook
        from eoshare.housekeeping import Housekeeper

        with errors():
            s = settings(data_dir=data_dir)
            if not s.data_dir.is_dir():
                raise InvalidRequestError(f"no data folder at {s.data_dir}")
            uploads = UploadBook(s.state_db(s.data_dir / "uploads.db"), s.data_dir / "uploads")
            orders = OrderBook(s.state_db(s.data_dir / "orders.db"))
            try:
                keeper = Housekeeper(
                    uploads,
                    orders,
                    lock_path=s.data_dir / "housekeeping.lock",
                    order_retention_s=s.housekeeping.order_retention_s,
                    temp_max_age_s=s.housekeeping.temp_max_age_s,
                )
                report = keeper.run(dry_run=dry_run)
            finally:
                uploads.close()
                orders.close()
        if report.skipped:
            typer.echo("error: another housekeeping pass is running; try again", err=True)
            raise typer.Exit(1)
        for line in report.lines():
            typer.echo(line)
        typer.echo(report.summary(), err=True)
