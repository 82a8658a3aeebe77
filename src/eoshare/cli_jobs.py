"""``eoshare jobs list|logs|cancel|results``: the openEO batch jobs of a node, read from
its jobs database (``<data_dir>/processing.db``). Registered by ``eoshare.cli``.

``cancel`` marks the job cancelled; the node that runs it sees the mark within a second
and stops the job's process."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", file_okay=False, help="The node's data directory."),
]


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    jobs = typer.Typer(help="openEO batch jobs: list, logs, cancel, results.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")

    def _store(data_dir: Path | None) -> Any:
        from eoshare.processing.jobs import JobStore

        s = settings(data_dir=data_dir)
        db = Path(s.processing.db) if s.processing.db else Path(s.data_dir) / "processing.db"
        return JobStore(s.state_db(db))

    @jobs.command("list")
    def list_cmd(
        user: Annotated[str | None, typer.Option("--user", help="Only this user's jobs.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """The jobs, newest first: id, owner, status, progress, title."""
        with errors():
            store = _store(data_dir)
            try:
                found = store.list_jobs(user, limit=1000)
            finally:
                store.close()
        for job in found:
            if as_json:
                typer.echo(json.dumps({**job.summary(), "owner": job.owner}))
            else:
                typer.echo(
                    f"{job.id}  {job.owner:<16} {job.status:<9} {job.progress:5.1f}%  "
                    f"{job.created}  {job.title or ''}"
                )

    @jobs.command("logs")
    def logs_cmd(
        job_id: Annotated[str, typer.Argument(help="The job id.")],
        data_dir: DataDir = None,
    ) -> None:
        """The log of one job."""
        with errors():
            store = _store(data_dir)
            try:
                store.get_job(job_id)
                entries = store.logs(job_id)
            finally:
                store.close()
        for e in entries:
            typer.echo(f"{e['time']}  {e['level']:<7} {e['message']}")

    @jobs.command("cancel")
    def cancel_cmd(
        job_id: Annotated[str, typer.Argument(help="The job id.")],
        data_dir: DataDir = None,
    ) -> None:
        """Cancel a queued or running job."""
        with errors():
            store = _store(data_dir)
            try:
                job = store.get_job(job_id)
                if store.set_status(job_id, "canceled", only_from=("queued", "running")):
                    store.log(job_id, "warning", "canceled")
                    typer.echo(f"job {job_id} canceled")
                else:
                    typer.echo(f"job {job_id} is {job.status}: nothing to cancel")
            finally:
                store.close()

    @jobs.command("results")
    def results_cmd(
        job_id: Annotated[str, typer.Argument(help="The job id.")],
        data_dir: DataDir = None,
    ) -> None:
        """Where a finished job's results were published: collection, item, files."""
        from eoshare.catalog import open_catalog
        from eoshare.errors import InvalidRequestError

        with errors():
            store = _store(data_dir)
            try:
                job = store.get_job(job_id)
            finally:
                store.close()
            if job.status != "finished" or not job.result:
                raise InvalidRequestError(f"job {job_id} is {job.status}: no results yet")
            s = settings(data_dir=data_dir)
            catalog = open_catalog(s.catalog_url)
            try:
                item = catalog.get_item(job.result["collection"], job.result["item"])
            finally:
                catalog.close()
        typer.echo(f"collection {item['collection']}  item {item['id']}")
        for name, asset in item.get("assets", {}).items():
            typer.echo(f"  {name}: {asset.get('eoshare:key')}  ({asset.get('file:size')} bytes)")
