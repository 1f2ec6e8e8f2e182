"""``hdh user add|list|disable|enable|roles|password`` and ``hdh token create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh import authz
from hdh.cli import app, out, principal, print_json, state, stdin_line
from hdh.errors import NotFound
from hdh.identity.service import (
    ROLES,
    add_user,
    create_token,
    disable_user,
    enable_user,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
    set_roles,
)

user_app = typer.Typer(help="People: local accounts and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (bearer tokens for the REST API).", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


@user_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account name (e.g. alice).")],
    role: Annotated[list[str], typer.Option(help=f"A role: {', '.join(ROLES)} (repeat).")],
    display_name: Annotated[str, typer.Option(help="The person's name.")] = "",
    email: Annotated[str, typer.Option(help="Their e-mail address.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a password from standard input.")
    ] = False,
) -> None:
    """Add a user. Without a password the account signs in with API tokens only."""
    password = stdin_line("password") if password_stdin else None
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check(hub, who, "user.manage")
        info = add_user(
            hub,
            name,
            roles=role,
            actor=who.actor,
            display_name=display_name,
            email=email,
            password=password,
        )
    out().print(
        f"Added user {info.name!r} ({', '.join(info.roles)})"
        + ("" if info.has_password else ", no password: give them a token (hdh token create)")
        + "."
    )


@user_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every account, its roles and whether it is disabled."""
    with state(ctx).open_hub() as hub:
        authz.check(hub, principal(hub), "user.manage")
        users = list_users(hub)
    if as_json:
        print_json([u.__dict__ for u in users])
        return
    table = Table()
    for column in ("user", "roles", "name", "e-mail", "state", "created (UTC)"):
        table.add_column(column)
    for u in users:
        table.add_row(
            u.name,
            ", ".join(u.roles),
            u.display_name,
            u.email,
            "disabled" if u.disabled else "active",
            u.created_at[:19],
        )
    out().print(table)


@user_app.command("disable")
def disable(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The account.")]) -> None:
    """Disable an account: its password and its tokens stop working at once."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check(hub, who, "user.manage")
        disable_user(hub, name, actor=who.actor)
    out().print(f"Disabled user {name!r}; its tokens no longer work.")


@user_app.command("enable")
def enable(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The account.")]) -> None:
    """Enable a disabled account. Its tokens work again unless revoked or expired."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check(hub, who, "user.manage")
        enable_user(hub, name, actor=who.actor)
    out().print(f"Enabled user {name!r}.")


@user_app.command("roles")
def roles(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account.")],
    role: Annotated[list[str], typer.Option(help=f"A role: {', '.join(ROLES)} (repeat).")],
) -> None:
    """Replace a user's roles."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check(hub, who, "user.manage")
        info = set_roles(hub, name, role, actor=who.actor)
    out().print(f"{name!r} now has the roles: {', '.join(info.roles)}.")


@user_app.command("password")
def password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The account.")],
) -> None:
    """Set a user's password, read from standard input (one line)."""
    secret = stdin_line("password")
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check_own_or_manage(hub, who, name)
        set_password(hub, name, secret, actor=who.actor)
    out().print(f"Set the password of {name!r}.")


@token_app.command("create")
def create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Whose token.")],
    days: Annotated[int, typer.Option(help="Days until it expires (1 to 366).")] = 30,
    label: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Create a token and print it once: it cannot be shown again."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check_own_or_manage(hub, who, user)
        token, info = create_token(hub, user, actor=who.actor, days=days, label=label)
    console = out()
    console.print(f"Token {info.id} for {user!r}, valid until {info.expires_at} (UTC):")
    console.print(token)
    console.print("It is shown only now: store it in a password manager.")


@token_app.command("list")
def tokens(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Tokens (never their secret): owner, expiry, revocation, last use."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        authz.check_own_or_manage(hub, who, user)
        found = list_tokens(hub, user)
    if as_json:
        print_json([t.__dict__ for t in found])
        return
    table = Table()
    for column in ("token", "user", "label", "expires (UTC)", "revoked", "last used"):
        table.add_column(column)
    for t in found:
        table.add_row(
            t.id, t.user, t.label, t.expires_at[:19], (t.revoked_at or "")[:19],
            (t.last_used_at or "")[:19],
        )  # fmt: skip
    out().print(table)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="The token's id.")]
) -> None:
    """Revoke a token: it stops working at once."""
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        owner = next((t.user for t in list_tokens(hub) if t.id == token_id), None)
        if owner is None:
            raise NotFound(f"there is no token {token_id!r}", hint="list them with hdh token list")
        authz.check_own_or_manage(hub, who, owner)
        revoke_token(hub, token_id, actor=who.actor)
    out().print(f"Revoked token {token_id}.")
