"""``hdh policy show|set|remove``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hdh import policy
from hdh.cli import acting, app, out, print_json, state

policy_app = typer.Typer(
    help="The residency policy: which locations may hold which data.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


@policy_app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The rules, and for each location and data class whether placement is allowed."""
    with state(ctx).open_hub() as hub, hub.read() as session:
        acting(hub, "hub.operate")
        rules = [policy.describe_rule(r) for r in policy.list_rules(session)]
        placements = policy.placement_table(session)
    if as_json:
        print_json({"rules": rules, "placements": placements})
        return
    console = out()
    table = Table(title="Rules", title_justify="left")
    for column in ("rule", "data class", "countries", "certifications", "non-EU law"):
        table.add_column(column)
    for r in rules:
        table.add_row(
            r["name"],
            r["data_class"],
            ", ".join(r["countries"]) or "any",
            ", ".join(r["certifications"]) or "-",
            "forbidden" if r["forbid_extraterritorial"] else "allowed",
        )
    console.print(table)
    where = Table(title="Placements", title_justify="left")
    for column in ("location", "data class", "allowed", "why not"):
        where.add_column(column)
    for p in placements:
        where.add_row(
            p["location"], p["data_class"], "yes" if p["allowed"] else "NO", "; ".join(p["reasons"])
        )
    console.print(where)


@policy_app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The rule's name (replaced if it exists).")],
    data_class: Annotated[
        str, typer.Option("--data-class", help="health, other, or * for all.")
    ] = "health",
    country: Annotated[
        list[str] | None,
        typer.Option(help="An allowed country (ISO code, or EU); repeat. None: any country."),
    ] = None,
    certification: Annotated[
        list[str] | None, typer.Option(help="A certification required of the location; repeat.")
    ] = None,
    forbid_extraterritorial: Annotated[
        bool,
        typer.Option(
            "--forbid-extraterritorial/--allow-extraterritorial",
            help="Refuse locations exposed to non-EU law (e.g. the US CLOUD Act).",
        ),
    ] = True,
) -> None:
    """Create or replace a rule. Every rule that governs a data class must hold."""
    with state(ctx).open_hub() as hub, hub.transaction() as session:
        who = acting(hub, "hub.operate")
        rule = policy.set_rule(
            session,
            name,
            data_class=data_class,
            countries=country or [],
            certifications=certification or [],
            forbid_extraterritorial=forbid_extraterritorial,
            actor=who.actor,
        )
        described = policy.describe_rule(rule)
    out().print(
        f"Rule {described['name']!r} set for {described['data_class']} data: countries "
        f"{', '.join(described['countries']) or 'any'}; certifications "
        f"{', '.join(described['certifications']) or 'none'}; non-EU law "
        f"{'forbidden' if described['forbid_extraterritorial'] else 'allowed'}."
    )


@policy_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The rule to remove.")],
) -> None:
    """Remove a rule."""
    with state(ctx).open_hub() as hub, hub.transaction() as session:
        who = acting(hub, "hub.operate")
        policy.remove_rule(session, name, actor=who.actor)
    out().print(f"Removed rule {name!r}.")
