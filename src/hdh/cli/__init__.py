"""The ``hdh`` command: parse, call one library function, render. No business logic here."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from hdh import __version__, logs
from hdh.errors import EXIT_INTERNAL, HubError
from hdh.hub import Hub

if TYPE_CHECKING:
    from hdh.identity.service import Principal

log = logging.getLogger("hdh.cli")

app = typer.Typer(
    name="hdh",
    help="hdh: a sovereign health data hub. Ingest, pseudonymise, catalogue, govern and move "
    "health data between clouds without losing or exposing it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class CliState:
    hub_dir: Path
    debug: bool

    def open_hub(self) -> Hub:
        hub = Hub.open(self.hub_dir, os.environ)
        logs.configure(hub.settings.log_path, level=hub.settings.log_level, debug=self.debug)
        return hub


def out() -> Console:
    # No markup: a type such as date32[day] or a value in brackets prints as it is.
    return Console(soft_wrap=True, highlight=False, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"hdh {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    hub: Annotated[
        Path,
        typer.Option(
            "--hub",
            envvar="HDH_HUB",
            help="The hub folder (the one holding hub.toml). Default: the current folder.",
            show_default=False,
        ),
    ] = Path(),
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="HDH_DEBUG", help="Show log lines and tracebacks on the terminal."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = CliState(hub_dir=hub, debug=debug)
    if debug:
        _debug[0] = True
        logs.configure(debug=True)


#: Set by the root callback, read by :func:`main` when an error reaches it.
_debug = [False]


def _register() -> None:
    from hdh.cli import (  # noqa: F401
        airlock,
        audit,
        catalog,
        dataset,
        demo,
        hubcmd,
        job,
        keys,
        location,
        migrate,
        objects,
        people,
        permit,
        person,
        policy,
        project,
        query,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``hdh`` with ``argv``; return the exit code instead of exiting.

    Errors the hub raises on purpose print as one ``Error: …`` line and exit with their
    own code; anything else is a bug: one line naming the log that holds the traceback,
    exit code 70.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    _debug[0] = False
    logs.configure()
    _register()
    err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
    try:
        # Typer reports usage errors itself (exit 2) and exits through SystemExit.
        app(args=args, prog_name="hdh", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except HubError as exc:
        # The log file is not the place for a refused file's values: log what the audit
        # log records (SchemaViolation's message quotes bad values for the steward).
        quiet = hasattr(exc, "audit_reason")  # its traceback would quote the message too
        log.info(
            "%s: %s", type(exc).__name__, getattr(exc, "audit_reason", exc), exc_info=not quiet
        )
        if _debug[0]:
            err.print(traceback.format_exc().rstrip())
        err.print(f"Error: {exc}")
        return exc.exit_code
    except Exception as exc:
        log.exception("internal error")
        if _debug[0]:
            err.print(traceback.format_exc().rstrip())
        err.print(
            f"Error: internal error ({type(exc).__name__}: {exc}). This is a bug in hdh; the "
            f"traceback is in {logs.current_log_path()}, or rerun with --debug to see it."
        )
        return EXIT_INTERNAL
    return 0


def principal(hub: Hub) -> Principal:
    """Who the command acts as: the user of the token in ``HDH_TOKEN`` when it is set,
    otherwise the operating-system account that runs the hub (an administrator)."""
    from hdh.hub import system_actor
    from hdh.identity.service import LocalIdentity, operator

    token = os.environ.get("HDH_TOKEN", "").strip()
    if token:
        return LocalIdentity(hub).authenticate_token(token)
    return operator(system_actor())


def acting(hub: Hub, action: str) -> Principal:
    """The principal of this command, checked for ``action`` (see ``hdh.authz``)."""
    from hdh import authz

    who = principal(hub)
    authz.check(hub, who, action)
    return who


def stdin_line(what: str) -> str:
    """One line of standard input (a password, an identifier): kept out of the command
    line, so out of the shell's history and the process list."""
    from hdh.errors import InvalidInput

    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InvalidInput(f"no {what} on standard input", hint="write it on one line")
    return line


# Every command group is registered when the package is first imported, in one order,
# whichever of its modules is asked for first (the help lists them in that order).
_register()
