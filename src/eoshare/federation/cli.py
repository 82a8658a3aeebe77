"""The command-line verbs of federation, registered on the main ``eoshare`` app by
``eoshare.cli``: ``peers add|list|check|trust|remove``, ``node``, ``harvest``,
``mirror add|list|run|status|remove``, ``export`` and ``import``."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from eoshare.federation.identity import NodeIdentity
    from eoshare.federation.peers import Peer, PeerRegistry
    from eoshare.settings import Settings

HarvestEveryOption = Annotated[
    str | None,
    typer.Option(
        "--harvest-every",
        help="Harvest it on a schedule: 90s, 15m, 1h, 1d (off: by hand only).",
    ),
]
HarvestWindowOption = Annotated[
    str | None,
    typer.Option(
        "--harvest-window",
        help="Only within these UTC hours, HH:MM-HH:MM (e.g. 22:00-06:00; any: always).",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the node's data lives (default: EOSHARE_DATA_DIR or ./eoshare-data).",
        file_okay=False,
    ),
]


def _identity(s: Settings) -> NodeIdentity:
    from eoshare.federation.identity import load_or_create_identity

    return load_or_create_identity(s.node_key_path, name=s.node_name, member=s.federation.member)


def _registry(s: Settings) -> PeerRegistry:
    from eoshare.federation.peers import PeerRegistry

    return PeerRegistry(s.state_db(s.federation_db_path))


def check_peer(peer: Peer, identity: NodeIdentity, registry: PeerRegistry) -> Peer:
    """Ask the peer who it is and what it holds; record the answer as its health
    (``eoshare.federation.health``, the check the operators' peers page runs too)."""
    from eoshare.federation.health import check_peer as check

    return check(peer, identity, registry).peer


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    peers = typer.Typer(help="Peer nodes: register, check, trust, remove.", no_args_is_help=True)
    app.add_typer(peers, name="peers")

    @peers.command("add")
    def peers_add(
        url: Annotated[str, typer.Argument(help="The peer's root URL.")],
        fingerprint: Annotated[
            str | None,
            typer.Option(help="The key fingerprint its operator gave you (SHA256:...)."),
        ] = None,
        name: Annotated[
            str | None, typer.Option(help="A short name (default: the name the peer gives).")
        ] = None,
        trust: Annotated[
            list[str] | None,
            typer.Option(
                help="A member whose users this peer may vouch for when it asks as a hub "
                "(repeatable; '*' for every member).",
            ),
        ] = None,
        stac: Annotated[
            bool, typer.Option("--stac", help="A plain STAC API: read-only and unsigned.")
        ] = False,
        harvest_every: HarvestEveryOption = None,
        harvest_window: HarvestWindowOption = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Register a peer after checking its key fingerprint (like an SSH host key)."""
        from eoshare.errors import InvalidRequestError
        from eoshare.federation.client import fetch_node_document
        from eoshare.federation.peers import Peer
        from eoshare.federation.schedule import check_window, parse_every

        with errors():
            s = settings(data_dir=data_dir)
            schedule: dict[str, Any] = {
                "harvest_every_s": parse_every(harvest_every) if harvest_every else None,
                "harvest_window": check_window(harvest_window),
            }
            url = url.rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise InvalidRequestError(f"{url!r} is not an http(s) URL")
            if stac:
                peer = Peer(name=name or _name_from(url), url=url, kind="stac", **schedule)
            else:
                doc = fetch_node_document(url)
                if doc is None:
                    raise InvalidRequestError(
                        f"{url} is not an eoshare node; add a plain STAC API with --stac"
                    )
                if fingerprint is None:
                    raise InvalidRequestError(
                        f"{url} presents key {doc['fingerprint']}: check it with its operator, "
                        "then run again with --fingerprint"
                    )
                if doc.get("fingerprint") != fingerprint:
                    raise InvalidRequestError(
                        f"{url} presents key {doc.get('fingerprint')}, not {fingerprint}: not added"
                    )
                peer = Peer(
                    name=name or str(doc.get("name") or _name_from(url)),
                    url=url,
                    kind="eoshare",
                    fingerprint=fingerprint,
                    public_key=str(doc["public_key"]["raw"]),
                    member=doc.get("member"),
                    trusted_members=frozenset(trust or ()),
                    **schedule,
                )
            registry = _registry(s)
            peer = registry.add(peer)
            peer = check_peer(peer, _identity(s), registry)
            typer.echo(f"added peer {peer.name} ({peer.kind}, {peer.url}): {peer.status}")

    @peers.command("list")
    def peers_list(
        as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """The peers, their kind, trust and last health check."""
        with errors():
            s = settings(data_dir=data_dir)
            registry = _registry(s)
            rows = [p.to_dict() for p in registry.all()]
            for row in rows:
                row["harvest"] = registry.last_harvest(row["name"])
            if as_json:
                typer.echo(json.dumps(rows, indent=2))
                return
            if not rows:
                typer.echo("no peers")
            for r in rows:
                trust = ",".join(r["trusted_members"]) or "-"
                state = r["status"] or "unchecked"
                every = r["harvest_every_s"]
                plan = f"harvest:every {every}s" if every else "harvest:by hand"
                if every and r["harvest_window"]:
                    plan += f" in {r['harvest_window']} UTC"
                typer.echo(f"{r['name']}\t{r['kind']}\t{r['url']}\t{state}\ttrusts:{trust}\t{plan}")

    @peers.command("check")
    def peers_check(
        name: Annotated[str | None, typer.Argument(help="One peer (default: all).")] = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Ask each peer who it is (key unchanged?) and which collections it shows."""
        with errors():
            s = settings(data_dir=data_dir)
            registry = _registry(s)
            identity = _identity(s)
            targets = [registry.get(name)] if name else registry.all()
            bad = 0
            from eoshare.federation.health import check_peer as check

            for peer in targets:
                result = check(peer, identity, registry)
                peer = result.peer
                bad += peer.status != "ok"
                timing = ""
                if result.latency_ms is not None:
                    timing = f"; {result.latency_ms:.0f} ms"
                if result.clock_skew_s is not None:
                    timing += f", clock {result.clock_skew_s:+.0f} s"
                typer.echo(f"{peer.name}: {peer.status} ({peer.detail}{timing})")
            if bad:
                raise typer.Exit(1)

    @peers.command("trust")
    def peers_trust(
        name: Annotated[str, typer.Argument(help="The peer.")],
        members: Annotated[
            list[str] | None,
            typer.Argument(help="Members whose users it may vouch for ('*': all; none: no one)."),
        ] = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Set for which members this node believes the peer's word, when it asks as a hub."""
        with errors():
            s = settings(data_dir=data_dir)
            peer = _registry(s).update(name, trusted_members=frozenset(members or ()))
            typer.echo(f"{peer.name} trusts: {', '.join(sorted(peer.trusted_members)) or '-'}")

    @peers.command("set")
    def peers_set(
        name: Annotated[str, typer.Argument(help="The peer.")],
        harvest_every: HarvestEveryOption = None,
        harvest_window: HarvestWindowOption = None,
        enabled: Annotated[
            bool | None,
            typer.Option("--enable/--disable", help="Ask it in searches and harvests, or not."),
        ] = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Change a peer's harvest schedule or switch it on or off."""
        from eoshare.federation.schedule import check_window, parse_every

        with errors():
            s = settings(data_dir=data_dir)
            changes: dict[str, Any] = {}
            if harvest_every is not None:
                changes["harvest_every_s"] = parse_every(harvest_every)
            if harvest_window is not None:
                changes["harvest_window"] = check_window(harvest_window)
            if enabled is not None:
                changes["enabled"] = enabled
            peer = _registry(s).update(name, **changes)
            every = f"every {peer.harvest_every_s} s" if peer.harvest_every_s else "by hand"
            window = f" in {peer.harvest_window} UTC" if peer.harvest_window else ""
            state = "enabled" if peer.enabled else "disabled"
            typer.echo(f"{peer.name}: {state}, harvested {every}{window}")

    @peers.command("remove")
    def peers_remove(
        name: Annotated[str, typer.Argument(help="The peer.")],
        data_dir: DataDirOption = None,
    ) -> None:
        """Forget a peer (its harvested records stay until deleted)."""
        with errors():
            s = settings(data_dir=data_dir)
            _registry(s).remove(name)
            typer.echo(f"removed peer {name}")

    @app.command("harvest")
    def harvest_cmd(
        peer: Annotated[str | None, typer.Argument(help="One peer (default: every peer).")] = None,
        due: Annotated[
            bool,
            typer.Option(
                "--due",
                help="Only the peers whose schedule says a harvest is due (for cron); "
                "nothing when another process is running them.",
            ),
        ] = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """Pull peers' collections and items into this node's catalogue (resumable)."""
        from eoshare.catalog import open_catalog
        from eoshare.errors import InvalidRequestError
        from eoshare.federation.harvest import Harvester, HarvestReport

        with errors():
            s = settings(data_dir=data_dir)
            registry = _registry(s)
            if due and peer:
                raise InvalidRequestError("give either a peer or --due, not both")
            peers = [registry.get(peer)] if peer else [p for p in registry.all() if p.enabled]
            # wrapped so that harvested items reach a running server's alerts
            from eoshare.disaster.events import observe_writes

            catalog, _ = observe_writes(s, open_catalog(s.catalog_url))
            try:
                harvester = Harvester(
                    catalog, registry, _identity(s), batch=s.federation.harvest_batch
                )
                failed = 0
                reports: list[tuple[Peer, HarvestReport]] = []
                if due:
                    from eoshare.federation.schedule import Lease, run_due_harvests
                    from eoshare.leases import Leases, lease_location

                    leases = Leases(lease_location(s))
                    try:
                        ran = run_due_harvests(
                            registry,
                            lambda p: reports.append((p, harvester.harvest(p))),
                            lease=Lease(leases),
                        )
                    finally:
                        leases.close()
                    if ran is None:
                        typer.echo("another process is running the scheduled harvests")
                    elif not ran:
                        typer.echo("no harvest is due")
                else:
                    reports = [(p, harvester.harvest(p)) for p in peers]
                for p, r in reports:
                    failed += bool(r.errors)
                    rate = r.written / r.seconds if r.seconds else 0.0
                    typer.echo(
                        f"{p.name}: {r.collections} collection(s), {r.written} written, "
                        f"{r.deleted} deleted in {r.seconds:.1f} s ({rate:.0f} items/s)"
                        + (f"; errors: {'; '.join(r.errors)}" if r.errors else "")
                    )
            finally:
                catalog.close()
            if failed:
                raise typer.Exit(1)

    register_mirror(app, errors=errors, settings=settings)

    @app.command("export")
    def export_cmd(
        target: Annotated[Path, typer.Argument(help="A new, empty folder.", file_okay=False)],
        collection: Annotated[
            list[str], typer.Option("--collection", "-c", help="A collection (repeatable).")
        ],
        data_dir: DataDirOption = None,
    ) -> None:
        """Write collections, their files, checksums and agreements to an offline bundle."""
        from eoshare.access.store import AccessStore
        from eoshare.catalog import open_catalog
        from eoshare.federation.bundle import export_bundle
        from eoshare.storage import open_store

        with errors():
            s = settings(data_dir=data_dir)
            catalog = open_catalog(s.catalog_url)
            access = AccessStore(s.state_db(s.access_db_path))
            try:
                store = open_store(s.storage_url, **s.s3.model_dump(exclude_none=True))
                r = export_bundle(catalog, store, access, collection, target)
            finally:
                catalog.close()
                access.close()
            typer.echo(
                f"exported {len(r.collections)} collection(s), {r.items} item(s), "
                f"{r.files} file(s), {r.bytes} bytes to {target}"
            )

    @app.command("import")
    def import_cmd(
        source: Annotated[Path, typer.Argument(help="A bundle made by eoshare export.")],
        data_dir: DataDirOption = None,
    ) -> None:
        """Verify an offline bundle's checksums, then load it into this node."""
        from eoshare.access.store import AccessStore
        from eoshare.catalog import open_catalog
        from eoshare.federation.bundle import import_bundle
        from eoshare.storage import open_store

        with errors():
            s = settings(data_dir=data_dir)
            catalog = open_catalog(s.catalog_url)
            access = AccessStore(s.state_db(s.access_db_path))
            try:
                store = open_store(s.storage_url, **s.s3.model_dump(exclude_none=True))
                r = import_bundle(catalog, store, access, source)
            finally:
                catalog.close()
                access.close()
            typer.echo(
                f"imported {len(r.collections)} collection(s), {r.items} item(s), "
                f"{r.files} file(s) after checking every checksum"
            )

    @app.command("node")
    def node_cmd(data_dir: DataDirOption = None) -> None:
        """This node's name, member and key fingerprint (made on first use)."""
        with errors():
            s = settings(data_dir=data_dir)
            identity = _identity(s)
            typer.echo(f"{identity.name}\t{identity.member or '-'}\t{identity.fingerprint}")


def _name_from(url: str) -> str:
    from urllib.parse import urlsplit

    host = urlsplit(url).netloc.lower()
    return "".join(c if c.isalnum() else "-" for c in host).strip("-")[:60] or "peer"


def _mirrorer(s: Settings, catalog: Any, access: Any) -> Any:
    from eoshare.federation.mirror import Mirrorer, open_mirrors
    from eoshare.storage import open_store

    store = open_store(s.storage_url, **s.s3.model_dump(exclude_none=True))
    return Mirrorer(open_mirrors(s), _registry(s), _identity(s), catalog, store, access)


def _status_table(rows: list[dict[str, Any]]) -> list[str]:
    from eoshare.federation.mirror import format_bytes

    head = ("ID", "PEER", "STATE", "FILES", "BYTES", "WINDOW", "LAST RUN", "LAST ERROR")
    table = [head]
    for r in rows:
        table.append(
            (
                r["id"],
                r["peer"],
                r["state"],
                f"{r['files_done']}/{r['files_total']}",
                f"{format_bytes(r['bytes_done'])}/{format_bytes(r['bytes_total'])}",
                r["window"] or "any time",
                r["last_run"] or "never",
                (r["last_error"] or "-")[:60],
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in table]  # fmt: skip


def register_mirror(
    app: typer.Typer,
    *,
    errors: Callable[[], AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    """``eoshare mirror add|list|run|status|remove`` (``eoshare.federation.mirror``)."""
    mirror = typer.Typer(
        help="Local copies of a peer's assets: resumable, verified, rate-limited, scheduled.",
        no_args_is_help=True,
    )
    app.add_typer(mirror, name="mirror")

    @mirror.command("add")
    def mirror_add(
        peer: Annotated[str, typer.Argument(help="A registered eoshare peer.")],
        collection: Annotated[
            list[str],
            typer.Option("--collection", "-c", help="A collection of the peer (repeatable)."),
        ],
        bbox: Annotated[
            str | None, typer.Option(help="Only items in this area: west,south,east,north.")
        ] = None,
        datetime_: Annotated[
            str | None,
            typer.Option("--datetime", help="Only items of this period (STAC: start/end, '..')."),
        ] = None,
        window: Annotated[
            str | None,
            typer.Option(
                help="Run only in this daily window, e.g. '22:00-06:00' (UTC) or "
                "'22:00-06:00 Asia/Ho_Chi_Minh'."
            ),
        ] = None,
        as_user: Annotated[
            str | None,
            typer.Option(
                "--as",
                help="The local user it acts for; the peer decides what that user may get "
                "(default: this node itself, the peer's public view).",
            ),
        ] = None,
        limit_rate: Annotated[
            str | None, typer.Option(help="Bandwidth limit, e.g. 500K or 2M (bytes/s).")
        ] = None,
        mirror_id: Annotated[
            str | None, typer.Option("--id", help="Its name (default: <peer>-<n>).")
        ] = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Mirror collections (optionally an area and a period) of a peer's assets."""
        from eoshare.access.store import AccessStore
        from eoshare.errors import InvalidRequestError
        from eoshare.federation.mirror import (
            Mirror,
            Window,
            check_bbox,
            check_datetime_interval,
            open_mirrors,
            parse_rate,
        )

        with errors():
            s = settings(data_dir=data_dir)
            from eoshare.access.egress import check_segment

            for c in collection:
                check_segment(c, "collection id")
            target = _registry(s).get(peer)
            if target.kind != "eoshare":
                raise InvalidRequestError(f"peer {peer!r} is a plain STAC API: it cannot mirror")
            box = None
            if bbox is not None:
                try:
                    numbers = [float(x) for x in bbox.split(",")]
                except ValueError as exc:
                    raise InvalidRequestError(f"bbox {bbox!r} is not four numbers") from exc
                box = check_bbox(numbers)
            if datetime_ is not None:
                check_datetime_interval(datetime_)
            text_window = str(Window.parse(window)) if window is not None else None
            if as_user is not None:
                access = AccessStore(s.state_db(s.access_db_path))
                try:
                    access.get_user(as_user)
                finally:
                    access.close()
            book = open_mirrors(s)
            m = book.add(
                Mirror(
                    id=mirror_id or book.next_id(target.name),
                    peer=target.name,
                    collections=tuple(dict.fromkeys(collection)),
                    bbox=box,
                    datetime=datetime_,
                    window=text_window,
                    as_user=as_user,
                    limit_rate=parse_rate(limit_rate) or None,
                )
            )
            typer.echo(
                f"added mirror {m.id} of {m.peer}: {', '.join(m.collections)}"
                + (f", window {m.window}" if m.window else "")
            )

    @mirror.command("list")
    def mirror_list(
        as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """The mirrors and what each copies."""
        from eoshare.federation.mirror import format_bytes, open_mirrors

        with errors():
            s = settings(data_dir=data_dir)
            mirrors = open_mirrors(s).all()
            if as_json:
                rows = [{**m.status(), "as": m.as_user, "limit_rate": m.limit_rate}
                        for m in mirrors]  # fmt: skip
                typer.echo(json.dumps(rows, indent=2))
                return
            if not mirrors:
                typer.echo("no mirrors")
            for m in mirrors:
                scope = ",".join(m.collections)
                if m.bbox:
                    scope += f" bbox={','.join(f'{x:g}' for x in m.bbox)}"
                if m.datetime:
                    scope += f" datetime={m.datetime}"
                rate = f"{format_bytes(m.limit_rate)}/s" if m.limit_rate else "unlimited"
                typer.echo(
                    f"{m.id}\t{m.peer}\t{scope}\twindow:{m.window or 'any'}\t"
                    f"as:{m.as_user or '-'}\trate:{rate}"
                )

    @mirror.command("run")
    def mirror_run(
        mirror_id: Annotated[
            str | None, typer.Argument(help="One mirror (default: every mirror).")
        ] = None,
        now: Annotated[
            bool, typer.Option("--now", help="Run even outside the mirror's time window.")
        ] = False,
        limit_rate: Annotated[
            str | None,
            typer.Option(help="Bandwidth limit for this run, e.g. 2M (bytes/s); 0: none."),
        ] = None,
        loop: Annotated[
            bool,
            typer.Option("--loop", help="Keep running the mirrors whose window is open."),
        ] = False,
        interval: Annotated[
            float | None,
            typer.Option(help="Seconds between two passes of --loop (default: the setting)."),
        ] = None,
        progress: Annotated[
            bool | None,
            typer.Option("--progress/--no-progress", help="A progress bar (default: on a tty)."),
        ] = None,
        data_dir: DataDirOption = None,
    ) -> None:
        """Copy what is missing (resuming partial files), verify it, and serve it here."""
        import signal
        import sys

        from eoshare.access.store import AccessStore
        from eoshare.catalog import open_catalog
        from eoshare.disaster.events import observe_writes
        from eoshare.federation.mirror import parse_rate

        with errors():
            s = settings(data_dir=data_dir)
            rate = parse_rate(limit_rate)
            catalog, _ = observe_writes(s, open_catalog(s.catalog_url))
            access = AccessStore(s.state_db(s.access_db_path))
            try:
                runner = _mirrorer(s, catalog, access)
                if loop:
                    every = interval if interval is not None else s.federation.mirror_interval_s
                    every = every if every > 0 else 60.0

                    def stop(*_: Any) -> None:
                        runner.stop.set()

                    signal.signal(signal.SIGTERM, stop)
                    signal.signal(signal.SIGINT, stop)
                    while not runner.stop.is_set():
                        for r in runner.run_due():
                            typer.echo(r.summary())
                        runner.stop.wait(every)
                    return
                ids = [mirror_id] if mirror_id else [m.id for m in runner.book.all()]
                if not ids:
                    typer.echo("no mirrors")
                failed: list[str] = []
                show = progress if progress is not None else sys.stderr.isatty()
                for mid in ids:
                    with _bar(show, mid) as on_progress:
                        r = runner.run(mid, now=now, limit_rate=rate, progress=on_progress)
                    typer.echo(r.summary())
                    failed += [f"mirror {mid}: {e}" for e in r.errors]
            finally:
                catalog.close()
                access.close()
            if failed:
                typer.echo(f"error: {failed[0]}", err=True)
                raise typer.Exit(1)

    @mirror.command("status")
    def mirror_status(
        mirror_id: Annotated[str | None, typer.Argument(help="One mirror (default: all).")] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="The JSON of GET /admin/mirrors.")
        ] = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """State and progress of each mirror (as GET /admin/mirrors shows operators)."""
        from eoshare.federation.mirror import open_mirrors

        with errors():
            s = settings(data_dir=data_dir)
            book = open_mirrors(s)
            if mirror_id is not None:
                rows = [book.get(mirror_id).status(book.running(mirror_id))]
            else:
                rows = book.statuses()
            if as_json:
                typer.echo(json.dumps({"mirrors": rows}, indent=2))
                return
            if not rows:
                typer.echo("no mirrors")
                return
            for line in _status_table(rows):
                typer.echo(line)

    @mirror.command("remove")
    def mirror_remove(
        mirror_id: Annotated[str, typer.Argument(help="The mirror.")],
        data_dir: DataDirOption = None,
    ) -> None:
        """Forget a mirror and its partial files (mirrored items and files stay)."""
        from eoshare.federation.mirror import open_mirrors

        with errors():
            s = settings(data_dir=data_dir)
            open_mirrors(s).remove(mirror_id)
            typer.echo(f"removed mirror {mirror_id}")


class _bar:
    """A rich progress bar over a mirror run's bytes (or nothing)."""

    def __init__(self, enabled: bool, name: str) -> None:
        self.enabled = enabled
        self.name = name
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Callable[[str, int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn(f"mirror {self.name}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
            transient=True,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(self.name, total=None)

        def on_progress(kind: str, n: int) -> None:
            if kind == "plan":
                self.bar.update(self.task, total=n or None)
            elif kind in ("bytes", "skip"):
                self.bar.advance(self.task, n)

        return on_progress

    def __exit__(self, *args: object) -> None:
        if self.bar is not None:
            self.bar.stop()
