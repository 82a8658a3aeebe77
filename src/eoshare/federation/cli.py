"""The command-line verbs of federation, registered on the main ``eoshare`` app by
``eoshare.cli``: ``peers add|list|check|trust|remove``, ``node``, ``harvest``,
``export`` and ``import``."""

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
    """Ask the peer who it is and what it holds; record the answer as its health."""
    from eoshare.errors import UpstreamError
    from eoshare.federation.client import fetch_collection_ids, fetch_node_document
    from eoshare.federation.peers import now_iso

    try:
        if peer.kind == "eoshare":
            doc = fetch_node_document(peer.url)
            if doc is None:
                raise UpstreamError("it no longer answers as an eoshare node")
            if doc.get("fingerprint") != peer.fingerprint:
                return registry.update(
                    peer.name,
                    checked=now_iso(),
                    status="key-changed",
                    detail=f"its key is now {doc.get('fingerprint')}; remove and add it again "
                    "once its operator confirms the change",
                    enabled=False,
                )
        ids = fetch_collection_ids(peer, identity)
    except UpstreamError as exc:
        return registry.update(
            peer.name, checked=now_iso(), status="unreachable", detail=exc.detail
        )
    return registry.update(
        peer.name,
        checked=now_iso(),
        status="ok",
        detail=f"{len(ids)} collection(s) visible to this node",
        collections=ids,
    )


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
        data_dir: DataDirOption = None,
    ) -> None:
        """Register a peer after checking its key fingerprint (like an SSH host key)."""
        from eoshare.errors import InvalidRequestError
        from eoshare.federation.client import fetch_node_document
        from eoshare.federation.peers import Peer

        with errors():
            s = settings(data_dir=data_dir)
            url = url.rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise InvalidRequestError(f"{url!r} is not an http(s) URL")
            if stac:
                peer = Peer(name=name or _name_from(url), url=url, kind="stac")
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
                typer.echo(f"{r['name']}\t{r['kind']}\t{r['url']}\t{state}\ttrusts:{trust}")

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
            for peer in targets:
                peer = check_peer(peer, identity, registry)
                bad += peer.status != "ok"
                typer.echo(f"{peer.name}: {peer.status} ({peer.detail})")
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
        data_dir: DataDirOption = None,
    ) -> None:
        """Pull peers' collections and items into this node's catalogue (resumable)."""
        from eoshare.catalog import open_catalog
        from eoshare.federation.harvest import Harvester

        with errors():
            s = settings(data_dir=data_dir)
            registry = _registry(s)
            peers = [registry.get(peer)] if peer else [p for p in registry.all() if p.enabled]
            # wrapped so that harvested items reach a running server's alerts
            from eoshare.disaster.service import observe_writes

            catalog, _ = observe_writes(s, open_catalog(s.catalog_url))
            try:
                harvester = Harvester(
                    catalog, registry, _identity(s), batch=s.federation.harvest_batch
                )
                failed = 0
                for p in peers:
                    r = harvester.harvest(p)
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
