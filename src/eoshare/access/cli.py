"""The admin verbs of the command line: ``members``, ``users``, ``tokens``,
``agreements``, ``apply FILE`` and ``usage``. Registered on the main ``eoshare`` app by
``eoshare.cli`` (``register``), which passes in its error and settings helpers.

They write straight to ``<data_dir>/access.db`` as the operator running them (the
history records ``cli:<login name>``); a running server sees the change at once.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eoshare.access.agreements import Member, agreement_from_dict

if TYPE_CHECKING:
    from eoshare.access.service import AccessServices

# the services (the OIDC client, the policy) and `apply` load when a command runs, not for
# `eoshare --help` or another area's command
from eoshare.errors import NotFoundError

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The node's data directory.", file_okay=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def register(
    app: typer.Typer,
    *,
    errors: Callable[[], contextlib.AbstractContextManager[None]],
    settings: Callable[..., Any],
) -> None:
    """Add the access commands to ``app``."""

    @contextlib.contextmanager
    def services(data_dir: Path | None, *, create: bool = False) -> Iterator[AccessServices]:
        """The access services of the node's data folder. Only the commands that declare
        things (members add, users add, agreements set, apply) may start an access
        database; the others, run from the wrong folder, would silently make an empty
        one there (a token for nobody), so they refuse instead."""
        with errors():
            chosen = settings(data_dir=data_dir)
            if not create and not chosen.database and not chosen.access_db_path.exists():
                catalogue = chosen.data_dir / "catalog.db"
                where = "" if catalogue.exists() else " and no catalogue"
                raise NotFoundError(
                    f"{chosen.data_dir} has no access database{where}: run this where the "
                    "node's data is, or pass --data-dir (or set EOSHARE_DATA_DIR)"
                )
            from eoshare.access.service import open_access

            svc = open_access(chosen, with_oidc=False)
            try:
                yield svc
            finally:
                svc.close()

    def out(doc: Any, as_json: bool, lines: list[str]) -> None:
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
        else:
            for line in lines:
                typer.echo(line)

    # --- members ----------------------------------------------------------------------
    members = typer.Typer(help="Member agencies.", no_args_is_help=True)
    app.add_typer(members, name="members")

    @members.command("list")
    def members_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
        """List the members."""
        with services(data_dir) as svc:
            ms = svc.store.list_members()
        out([m.to_dict() for m in ms], as_json, [f"{m.code}\t{m.country}\t{m.name}" for m in ms])

    @members.command("add")
    def members_add(
        code: str,
        country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2, e.g. KE.")],
        name: Annotated[str | None, typer.Option(help="The agency's name.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Add or change a member."""
        with services(data_dir, create=True) as svc:
            m = Member.from_dict({"code": code, "name": name or code, "country": country})
            svc.store.put_member(m, who=_who())
        typer.echo(f"member {m.code} ({m.country}) saved")

    @members.command("remove")
    def members_remove(code: str, data_dir: DataDir = None) -> None:
        """Remove a member that has no users left."""
        with services(data_dir) as svc:
            svc.store.delete_member(code, who=_who())
        typer.echo(f"member {code} removed")

    # --- users ------------------------------------------------------------------------
    users = typer.Typer(help="Users and their roles.", no_args_is_help=True)
    app.add_typer(users, name="users")

    @users.command("list")
    def users_list(
        member: Annotated[str | None, typer.Option(help="Only this member's users.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """List users."""
        with services(data_dir) as svc:
            us = svc.store.list_users(member)
        out(
            [u.to_dict() for u in us],
            as_json,
            [f"{u.username}\t{u.member or '-'}\t{','.join(sorted(u.roles))}" for u in us],
        )

    @users.command("add")
    def users_add(
        username: str,
        member: Annotated[
            str | None, typer.Option(help="The user's member (none: public).")
        ] = None,
        roles: Annotated[
            str, typer.Option(help="Comma-separated: viewer, analyst, provider-admin, operator.")
        ] = "viewer",
        password: Annotated[
            bool, typer.Option("--password", help="Ask for a password (browser sign-in).")
        ] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Add or change a user."""
        secret = None
        if password:
            secret = os.environ.get("EOSHARE_NEW_PASSWORD") or typer.prompt(
                "password", hide_input=True, confirmation_prompt=True
            )
        with services(data_dir, create=True) as svc:
            u = svc.store.put_user(
                username, member=member, roles=roles, password=secret, who=_who()
            )
        typer.echo(f"user {u.username} saved ({u.member or 'public'}: {','.join(sorted(u.roles))})")

    @users.command("unlock")
    def users_unlock(username: str, data_dir: DataDir = None) -> None:
        """Lift a sign-in lockout (after too many wrong passwords)."""
        with services(data_dir) as svc:
            lifted = svc.guard.unlock(username)
        typer.echo(f"unlocked {username}" if lifted else f"{username} was not locked")

    @users.command("remove")
    def users_remove(username: str, data_dir: DataDir = None) -> None:
        """Remove a user (their tokens are revoked, their sessions ended)."""
        with services(data_dir) as svc:
            svc.store.delete_user(username, who=_who())
        typer.echo(f"user {username} removed")

    # --- tokens -----------------------------------------------------------------------
    tokens = typer.Typer(help="API tokens (shown once, stored as hashes).", no_args_is_help=True)
    app.add_typer(tokens, name="tokens")

    @tokens.command("create")
    def tokens_create(
        username: str,
        days: Annotated[float, typer.Option(help="Lifetime in days.")] = 90,
        label: Annotated[str | None, typer.Option(help="What it is for.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Create a token and print it (on stdout, alone, so that scripts can capture it)."""
        with services(data_dir) as svc:
            info, secret = svc.store.create_token(username, days=days, label=label, who=_who())
        typer.echo(f"token {info.id} for {username}, expires {info.expires}", err=True)
        typer.echo(secret)

    @tokens.command("list")
    def tokens_list(
        username: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """List tokens (never their secrets)."""
        with services(data_dir) as svc:
            ts = svc.store.list_tokens(username)
        out(
            [t.to_dict() for t in ts],
            as_json,
            [
                f"{t.id}\t{t.username}\texpires {t.expires}"
                + (f"\trevoked {t.revoked}" if t.revoked else "")
                for t in ts
            ],
        )

    @tokens.command("revoke")
    def tokens_revoke(token_id: str, data_dir: DataDir = None) -> None:
        """Revoke a token by its id."""
        with services(data_dir) as svc:
            svc.store.revoke_token(token_id, who=_who())
        typer.echo(f"token {token_id} revoked")

    # --- agreements -------------------------------------------------------------------
    agreements = typer.Typer(help="Sharing agreements of collections.", no_args_is_help=True)
    app.add_typer(agreements, name="agreements")

    @agreements.command("list")
    def agreements_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
        """List agreements, in plain words."""
        with services(data_dir) as svc:
            items = svc.store.list_agreements()
        out(
            [a.to_dict() for a in items],
            as_json,
            [f"{a.collection}\t{a.access}\t{a.summary()}" for a in items],
        )

    @agreements.command("set")
    def agreements_set(
        collection: str,
        provider: Annotated[str, typer.Option(help="The owning member's code.")],
        access: Annotated[str, typer.Option(help="open, members, partners or provider.")],
        partners: Annotated[str, typer.Option(help="Comma-separated member codes.")] = "",
        embargo_days: Annotated[int | None, typer.Option(help="Opens N days after.")] = None,
        embargo_opens_to: Annotated[str, typer.Option(help="public or members.")] = "public",
        reduced_resolution_m: Annotated[float | None, typer.Option(help="e.g. 100.")] = None,
        licence: Annotated[str | None, typer.Option(help="SPDX id or text.")] = None,
        terms: Annotated[str | None, typer.Option(help="Terms to accept once.")] = None,
        disaster_release: Annotated[
            bool, typer.Option(help="An approved disaster activation may release it.")
        ] = False,
        quota_user: Annotated[int | None, typer.Option(help="Bytes/day per user.")] = None,
        quota_member: Annotated[int | None, typer.Option(help="Bytes/day per member.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Set (replace) the agreement of a collection."""
        with services(data_dir, create=True) as svc:
            a = agreement_from_dict(
                {
                    "collection": collection,
                    "provider": provider,
                    "access": access,
                    "partners": [p for p in partners.split(",") if p],
                    "embargo_days": embargo_days,
                    "embargo_opens_to": embargo_opens_to,
                    "reduced_resolution_m": reduced_resolution_m,
                    "licence": licence,
                    "terms": terms,
                    "disaster_release": disaster_release,
                    "quota_user_bytes_per_day": quota_user,
                    "quota_member_bytes_per_day": quota_member,
                }
            )
            svc.store.put_agreement(a, who=_who())
        typer.echo(f"{collection}: {a.summary()}")

    @agreements.command("remove")
    def agreements_remove(collection: str, data_dir: DataDir = None) -> None:
        """Remove a collection's agreement."""
        with services(data_dir) as svc:
            svc.store.delete_agreement(collection, who=_who())
        typer.echo(f"agreement of {collection} removed")

    @agreements.command("history")
    def agreements_history(
        subject: Annotated[str | None, typer.Argument(help="A collection, user...")] = None,
        limit: int = 50,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Who changed what, when (newest first)."""
        with services(data_dir) as svc:
            rows = svc.store.history(subject=subject, limit=limit)
        out(rows, as_json, [f"{r['at']}\t{r['who']}\t{r['what']}\t{r['subject']}" for r in rows])

    @agreements.command("accept")
    def agreements_accept(username: str, collection: str, data_dir: DataDir = None) -> None:
        """Record that a user accepted a collection's terms."""
        with services(data_dir) as svc:
            svc.store.accept_terms(username, collection)
        typer.echo(f"{username} accepted the terms of {collection}")

    # --- apply ------------------------------------------------------------------------
    @app.command("apply")
    def apply_file(
        file: Annotated[Path, typer.Argument(help="A .toml/.yaml declarations file.")],
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, change nothing.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Apply members, users and agreements declared in a reviewable file."""
        with services(data_dir, create=True) as svc:
            from eoshare.access.apply import apply_declarations, read_declarations

            doc = read_declarations(file)
            report = apply_declarations(svc.store, doc, who=_who(), dry_run=dry_run)
        for change in report.changes:
            typer.echo(("would change " if dry_run else "changed ") + change)
        typer.echo(
            f"{len(report.changes)} change(s){' planned' if dry_run else ''}, "
            f"{report.unchanged} unchanged",
            err=True,
        )

    # --- usage ------------------------------------------------------------------------
    @app.command("usage")
    def usage(
        member: Annotated[str | None, typer.Option(help="Only this member's use.")] = None,
        since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
        until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
        data_dir: DataDir = None,
        as_json: AsJson = False,
    ) -> None:
        """Grants of bytes by member, country, collection and day."""
        with services(data_dir) as svc:
            report = svc.store.usage(member=member, since=since, until=until)
        lines = [
            f"{report['grants']} grants, {report['bytes']} bytes, "
            f"reached {report['countries_reached']} countries",
            "top collections: "
            + (", ".join(f"{r['key']} ({r['bytes']} B)" for r in report["top_collections"]) or "-"),
        ]
        for key in ("by_member", "by_country"):
            lines.append(
                f"{key.replace('_', ' ')}: "
                + (", ".join(f"{r['key'] or 'public'} {r['bytes']} B" for r in report[key]) or "-")
            )
        out(report, as_json, lines)
