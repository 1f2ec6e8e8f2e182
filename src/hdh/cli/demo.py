"""``hdh demo``: build and serve the demonstration hub (see ``hdh.demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hdh.cli import app, out


@app.command("demo")
def demo(
    target: Annotated[Path, typer.Argument(help="The folder to create the hub in.")] = Path(
        "demo-hub"
    ),
    data: Annotated[
        Path | None,
        typer.Option(help="The public data folder (default: HDH_DEMO_DATA, or ../shared/data)."),
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Serve the API at the end (--no-serve stops before).")
    ] = True,
    port: Annotated[int, typer.Option(help="The port to serve on.")] = 8000,
) -> None:
    """Start Azurite and SeaweedFS, build a hub on Azure with real public health data,
    run a project through a query, a job and the airlock, migrate everything to the
    sovereign location with a signed report, tighten the policy, and serve it."""
    from hdh.demo import check_inputs, run_demo
    from hdh.devservers import AzuriteServer, SeaweedFSServer

    folder = data or Path(os.environ.get("HDH_DEMO_DATA", "../shared/data"))
    check_inputs(target.resolve(), folder.resolve())  # before any server starts
    console = out()
    with AzuriteServer() as azure, SeaweedFSServer() as s3:
        console.print(
            f"Started Azurite (Azure Blob) at {azure.endpoint} and SeaweedFS (S3) at {s3.endpoint}"
        )
        result = run_demo(target.resolve(), folder.resolve(), azure, s3, console.print)
        accounts = target / "demo-accounts.txt"
        fd = os.open(accounts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# name\trole\tpassword (web pages)\tAPI token\n")
            for name, (role, password, token) in result.accounts.items():
                fh.write(f"{name}\t{role}\t{password}\t{token}\n")
        console.print(f"Demo accounts: name, role, password for the pages, API token "
                      f"(also in {accounts}):")  # fmt: skip
        for name, (role, password, token) in result.accounts.items():
            console.print(f"  {name:<5} {role:<10} {password}  {token}")
        if not serve:
            console.print("Done (--no-serve): the servers stop now, and their data with them.")
            return
        from hdh.api import serve as serve_hub
        from hdh.hub import Hub

        with Hub.open(target, os.environ) as hub:
            console.print(
                f"Serving the pages on http://127.0.0.1:{port} (sign in with an account "
                "above) and the API under /api/v1 (OpenAPI at /docs); Ctrl-C stops it "
                "and the servers"
            )
            serve_hub(hub, "127.0.0.1", port, log_level="warning")
