"""``hdh job submit|list|status|logs|outputs``: scripts run for a project, isolated."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hdh.cli import acting, app, out, principal, print_json, state
from hdh.errors import HubError, InvalidInput

if TYPE_CHECKING:
    from hdh.workspace.jobs import JobInfo

# Job limits' defaults, repeated here so that the command line loads no data libraries
# until a command runs (hdh.workspace.jobs checks they agree).
TIMEOUT_S = 3600
MEMORY_MB = 4096

job_app = typer.Typer(
    help="Jobs: SQL or Python scripts run on a project's permitted data, isolated.",
    no_args_is_help=True,
)
app.add_typer(job_app, name="job")

FINISHED = ("succeeded", "failed", "timed_out")


def _show(job: JobInfo) -> None:
    out().print(f"Job {job.id} of project {job.project}: {job.status}")
    out().print(f"  script:    {job.script_name} ({job.kind}, sha256 {job.script_sha256[:12]}…)")
    out().print(f"  submitted: {job.submitted_at} by {job.submitted_by}")
    if job.started_at:
        out().print(f"  ran:       {job.started_at} to {job.finished_at or '…'}")
    limits = job.limits
    out().print(
        f"  limits:    {limits['timeout_s']} s, {limits['memory_mb']} MB, files up to "
        f"{limits['file_mb']} MB; isolation: {job.isolation}"
    )
    if job.datasets:
        out().print(f"  datasets:  {', '.join(job.datasets)}")
    if job.exit_code is not None:
        out().print(f"  exit code: {job.exit_code}")
    if job.error:
        out().print(f"  error:     {job.error}")
    if job.outputs:
        out().print(f"  outputs:   {', '.join(o['name'] for o in job.outputs)}")


@job_app.command("submit")
def submit(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project the job works in.")],
    script: Annotated[Path, typer.Argument(help="The script: FILE.sql or FILE.py.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Run it now and wait for its end (print its log).")
    ] = False,
    timeout: Annotated[int, typer.Option(help="Wall-clock limit, in seconds.")] = TIMEOUT_S,
    memory: Annotated[int, typer.Option(help="Memory limit, in MB.")] = MEMORY_MB,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Submit a script to run on the project's permitted data in an isolated process: no
    network, no hub files, a read-only copy of the data, an output folder. Audited."""
    from hdh.workspace.jobs import job_log, run_job, start_in_background, submit_job

    hub_dir = state(ctx).hub_dir
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        job = submit_job(hub, who, project, script, timeout_s=timeout, memory_mb=memory)
        if wait:
            try:
                job = run_job(hub, who, job.id)
            finally:
                with contextlib.suppress(HubError):
                    sys.stdout.write(job_log(hub, who, job.id))
    if not wait:
        start_in_background(hub_dir, job.id)
    if as_json:
        print_json(asdict(job))
    elif wait:
        _show(job)
    else:
        out().print(
            f"Job {job.id} submitted for project {project}: see hdh job status {job.id}, "
            f"hdh job logs {job.id}"
        )
    if job.status in ("failed", "timed_out"):
        raise typer.Exit(1)


@job_app.command("run", hidden=True)
def run(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The queued job.")],
) -> None:
    """Run a queued job (started by hdh job submit; operators only)."""
    from hdh.workspace.jobs import run_queued

    with state(ctx).open_hub() as hub:
        acting(hub, "hub.operate")
        run_queued(hub, job_id)


@job_app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="The project.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The project's jobs, oldest first."""
    from hdh.workspace.jobs import list_jobs

    with state(ctx).open_hub() as hub:
        jobs = list_jobs(hub, principal(hub), project)
    if as_json:
        print_json([asdict(j) for j in jobs])
        return
    table = Table("id", "script", "status", "submitted", "by", "outputs")
    for j in jobs:
        table.add_row(
            str(j.id), j.script_name, j.status, j.submitted_at, j.submitted_by, str(len(j.outputs))
        )
    out().print(table)


@job_app.command("status")
def status(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job.")],
    wait: Annotated[
        float, typer.Option(help="Wait up to this many seconds for the job to finish.")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A job's state, limits, datasets, exit code and outputs."""
    from hdh.workspace.jobs import job_info

    if wait < 0:
        raise InvalidInput("--wait must be zero or more seconds", hint="give a duration")
    deadline = time.monotonic() + wait
    with state(ctx).open_hub() as hub:
        who = principal(hub)
        job = job_info(hub, who, job_id)
        while job.status not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.5)
            job = job_info(hub, who, job_id)
    if as_json:
        print_json(asdict(job))
    else:
        _show(job)


@job_app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job.")],
) -> None:
    """What the job printed (standard output and error), once it has finished."""
    from hdh.workspace.jobs import job_log

    with state(ctx).open_hub() as hub:
        sys.stdout.write(job_log(hub, principal(hub), job_id))


@job_app.command("outputs")
def outputs(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job.")],
    show: Annotated[
        str | None, typer.Option(help="Print this output file's content (inside the project).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The files the job wrote, kept encrypted in the project. They leave it only through
    the airlock."""
    from hdh.workspace.jobs import job_info, read_output

    with state(ctx).open_hub() as hub:
        who = principal(hub)
        if show is not None:
            sys.stdout.buffer.write(read_output(hub, who, job_id, show))
            return
        job = job_info(hub, who, job_id)
    if as_json:
        print_json(job.outputs)
        return
    table = Table("name", "bytes", "sha256")
    for o in job.outputs:
        table.add_row(o["name"], str(o["size"]), o["sha256"])
    out().print(table)
