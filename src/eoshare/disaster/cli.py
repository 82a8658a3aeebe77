"""The ``activations`` and ``orbits`` verbs of the command line. Registered on the main
``eoshare`` app by ``eoshare.cli`` (``register``).

They act as an operator (``cli:<login name>`` in the transition log) on the node's data
directory; a running server sees the change within 50 ms.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eoshare.access.agreements import OPERATOR
from eoshare.access.base import Principal

if TYPE_CHECKING:
    from eoshare.disaster.service import DisasterServices

# the services (shapely, numpy, the OIDC and HTTP clients) load when a command runs, not
# for `eoshare --help` or another area's command

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The node's data directory.", file_okay=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _operator() -> Principal:
    try:
        name = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        name = "cli"
    return Principal(user=name, roles=frozenset({OPERATOR}))


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], contextlib.AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    """Add the disaster commands to ``app``."""

    @contextlib.contextmanager
    def services(data_dir: Path | None) -> Iterator[DisasterServices]:
        with errors():
            s = settings(data_dir=data_dir)
            from eoshare.access.service import open_access
            from eoshare.catalog import open_catalog
            from eoshare.disaster.service import open_disaster

            access = open_access(s, with_oidc=False)
            catalog = open_catalog(s.catalog_url)
            svc = open_disaster(s, catalog, access, worker=False)
            try:
                yield svc
            finally:
                svc.close()
                catalog.close()
                access.close()

    def show(svc: DisasterServices, row: Any, as_json: bool) -> None:
        doc = svc.activations.to_doc(row)
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
            return
        typer.echo(
            f"{doc['id']}\t{doc['state']}\t{doc['hazard']}\t{doc['member']}\t"
            f"event {doc['event_time']}\twindow {doc['window']['start']} .. "
            f"{doc['window']['end']}\tgrant {'live' if doc['grant']['live'] else 'off'}"
        )

    # --- activations ------------------------------------------------------------------
    acts = typer.Typer(help="Disaster activations.", no_args_is_help=True)
    app.add_typer(acts, name="activations")

    @acts.command("list")
    def list_(
        state: Annotated[str | None, typer.Option(help="requested, approved, ...")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """List activations."""
        with services(data_dir) as svc:
            rows = svc.activations.visible_to(_operator(), state=state)
            if as_json:
                docs = [svc.activations.to_doc(r) for r in rows]
                typer.echo(json.dumps(docs, indent=2))
                return
            for r in rows:
                show(svc, r, False)

    @acts.command("request")
    def request(
        member: Annotated[str, typer.Option(help="The affected member's code.")],
        hazard: Annotated[str, typer.Option(help="flood, fire, earthquake, cyclone, ...")],
        area: Annotated[
            Path, typer.Option(help="The area: .geojson, .kml, .gpkg or zipped shapefile.")
        ],
        event_time: Annotated[str, typer.Option(help="RFC 3339, e.g. 2024-10-05T06:00Z.")],
        title: Annotated[str | None, typer.Option(help="A short title.")] = None,
        description: Annotated[str, typer.Option(help="What happened.")] = "",
        pre_days: Annotated[float | None, typer.Option(help="Days before the event.")] = None,
        post_days: Annotated[float | None, typer.Option(help="Days after the event.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Request an activation on behalf of a member (as an operator)."""
        with services(data_dir) as svc:
            from eoshare.disaster.areas import parse_area_file

            shape = parse_area_file(area.read_bytes(), area.name)
            doc: dict[str, Any] = {
                "member": member, "hazard": hazard, "area": shape,
                "event_time": event_time, "title": title, "description": description,
                "pre_days": pre_days, "post_days": post_days,
            }  # fmt: skip
            row = svc.activations.request(_operator(), doc)
            show(svc, row, as_json)

    @acts.command("approve")
    def approve(
        activation: str,
        expires: Annotated[str | None, typer.Option(help="When the grant ends (RFC 3339).")] = None,
        note: Annotated[str | None, typer.Option(help="A note for the log.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Approve a requested activation: its grant starts now."""
        with services(data_dir) as svc:
            from eoshare.disaster.activations import parse_time

            until = parse_time(expires, "--expires") if expires else None
            row = svc.activations.approve(_operator(), activation, expires=until, note=note)
            show(svc, row, as_json)

    @acts.command("reject")
    def reject(
        activation: str,
        reason: Annotated[str, typer.Option(help="Why (shown to the requester).")],
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Reject a requested activation with a reason."""
        with services(data_dir) as svc:
            show(svc, svc.activations.reject(_operator(), activation, reason=reason), as_json)

    @acts.command("close")
    def close(
        activation: str,
        note: Annotated[str | None, typer.Option(help="A note for the log.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Close an activation: its grant ends now; print its summary."""
        with services(data_dir) as svc:
            op = _operator()
            svc.activations.close(op, activation, note=note)
            summary = svc.activations.summary(op, activation)
            if as_json:
                typer.echo(json.dumps(summary, indent=2))
                return
            typer.echo(
                f"{activation}: closed; {summary['grants']} grants, {summary['bytes']} bytes, "
                f"{len(summary['scenes_delivered'])} scene deliveries"
            )
            for m in summary["bytes_by_member"]:
                typer.echo(f"  {m['member']}\t{m['bytes']} bytes\t{m['grants']} grants")

    @acts.command("show")
    def show_one(activation: str, data_dir: DataDir = None) -> None:
        """Show one activation (JSON), with its transition log and summary."""
        with services(data_dir) as svc:
            op = _operator()
            doc = svc.activations.to_doc(svc.activations.get(op, activation))
            doc["summary"] = svc.activations.summary(op, activation)
            typer.echo(json.dumps(doc, indent=2))

    @acts.command("responder")
    def responder(
        activation: str,
        member: Annotated[str | None, typer.Option(help="A responding member.")] = None,
        user: Annotated[str | None, typer.Option(help="A responding user.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Add a responder (a member or a user) to an activation's grant."""
        with services(data_dir) as svc:
            row = svc.activations.add_responder(_operator(), activation, member=member, user=user)
            show(svc, row, False)

    @acts.command("preapprove")
    def preapprove(
        member: str,
        off: Annotated[bool, typer.Option("--off", help="Withdraw it.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Give (or withdraw) a member's standing pre-approval."""
        with services(data_dir) as svc:
            svc.activations.set_preapproval(_operator(), member, on=not off)
        typer.echo(f"{member}: pre-approval {'withdrawn' if off else 'granted'}")

    @acts.command("product")
    def product(activation: str, data_dir: DataDir = None, as_json: AsJson = False) -> None:
        """Make the activation's value-added product now (map PNG, PDF report) and publish it
        in its collection ``activation-<id>``."""
        with errors():
            from eoshare.api.app import create_app

            app = create_app(settings(data_dir=data_dir))
            state = app.state
            try:
                doc = state.products.make(_operator(), activation, trigger="cli")
            finally:
                state.products.close()
                state.processing.close()
                state.disaster.close()
                state.catalog.close()
                state.access_services.close()
                state.federation.close()
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
            return
        typer.echo(f"{doc['collection']}/{doc['item']}: {', '.join(doc['scenes'])}")
        for key, value in doc["statistics"].items():
            typer.echo(f"  {key}: {value}")

    # --- orbits -----------------------------------------------------------------------
    orbits = typer.Typer(help="Orbital elements of member satellites.", no_args_is_help=True)
    app.add_typer(orbits, name="orbits")

    @orbits.command("load")
    def orbits_load(
        files: Annotated[list[Path], typer.Argument(help="TLE, OMM JSON or OMM XML files.")],
        data_dir: DataDir = None,
    ) -> None:
        """Load element sets (kept with their history)."""
        with services(data_dir) as svc:
            for path in files:
                report = svc.orbits.load(path.read_bytes(), source=path.name, now=svc.now())
                typer.echo(
                    f"{path}: {report['read']} element sets of {report['satellites']} "
                    f"satellites, {report['added']} new"
                )
                for w in report["warnings"]:
                    typer.echo(f"warning: {w}", err=True)

    @orbits.command("list")
    def orbits_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
        """The newest element set of each satellite, and its platform if it is a member's."""
        with services(data_dir) as svc:
            rows = svc.orbits.listing(svc.now())
            warnings = svc.orbits.stale_warnings(svc.now())
        if as_json:
            typer.echo(json.dumps({"satellites": rows, "warnings": warnings}, indent=2))
            return
        for r in rows:
            platform = r["platform"] or "-"
            typer.echo(f"{r['norad']}\t{r['name']}\t{r['epoch']}\t{r['age_days']} d\t{platform}")
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
