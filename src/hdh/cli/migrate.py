"""``hdh migrate``: plan, run, verify, cut over, roll back, report and decommission the
move of the hub between locations."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from hdh.cli import acting, app, out, print_json, state

if TYPE_CHECKING:
    from hdh.migrate.service import ProgressFn

migrate_app = typer.Typer(
    help="Move every object from one location to another, verified object by object.",
    no_args_is_help=True,
)
app.add_typer(migrate_app, name="migrate")


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


@migrate_app.command("plan")
def plan(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="The location to leave.")],
    target: Annotated[str, typer.Option("--to", help="The location to move to.")],
    rekey: Annotated[
        bool,
        typer.Option(
            "--rekey",
            help="Give the copies new keys: each object is decrypted on this machine and "
            "encrypted again, so the source's keys can be destroyed at decommission.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List what the hub holds on the source, check the policy for the target, and
    record the move in waves (datasets first, then each project). Administrators."""
    from hdh.migrate.service import plan_migration

    with state(ctx).open_hub() as hub:
        info = plan_migration(hub, acting(hub, "hub.operate"), source, target, rekey=rekey)
    if as_json:
        print_json(asdict(info))
        return
    how = "copies under new keys" if info.rekey else "ciphertext copied as it is"
    out().print(f"Migration {info.id}: {info.source} -> {info.target}, policy checked; {how}")
    table = Table("wave", "what", "objects", "size")
    for w in info.waves:
        table.add_row(str(w["wave"]), w["what"], str(w["objects"]), _mib(w["bytes"]))
    out().print(table)
    out().print(
        f"{info.objects} objects, {_mib(info.bytes)}; about {info.estimate_s:g} s at 40 MB/s. "
        f"Next: hdh migrate run {info.id}"
    )


@migrate_app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every migration planned, with where it stands."""
    from hdh.migrate.service import list_migrations

    with state(ctx).open_hub() as hub:
        infos = list_migrations(hub, acting(hub, "hub.operate"))
    if as_json:
        print_json([asdict(i) for i in infos])
        return
    table = Table("id", "from", "to", "status", "objects", "copied", "size", "planned at")
    for i in infos:
        table.add_row(
            str(i.id), i.source, i.target, i.status, str(i.objects),
            str(i.states.get("copied", 0)), _mib(i.bytes), i.created_at,
        )  # fmt: skip
    out().print(table)


@migrate_app.command("status")
def status(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where a migration stands: objects per state."""
    from hdh.migrate.service import migration_info

    with state(ctx).open_hub() as hub:
        info = migration_info(hub, acting(hub, "hub.operate"), migration_id)
    if as_json:
        print_json(asdict(info))
        return
    states = ", ".join(f"{n} {s}" for s, n in sorted(info.states.items()))
    out().print(f"Migration {info.id}: {info.source} -> {info.target}: {info.status} ({states})")
    table = Table("wave", "what", "objects", "size", "state", "cut over at")
    for w in info.waves:
        table.add_row(
            str(w["wave"]), w["what"], str(w["objects"]), _mib(w["bytes"]),
            w.get("state", "planned"), w.get("cut_over_at") or "",
        )  # fmt: skip
    out().print(table)
    if info.workers:
        out().print("Copying now: " + ", ".join(info.workers))


@contextmanager
def _bar(console: Console) -> Iterator[ProgressFn | None]:
    """Objects, bytes, rate and time left on ``console`` (standard error) while a
    terminal watches; what else is printed there meanwhile shows above the bar."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(
        TextColumn("{task.fields[objects]}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("copy", total=None, objects="")

        def update(objects: int, size: int, total_objects: int, total_bytes: int) -> None:
            progress.update(
                task, completed=size, total=total_bytes,
                objects=f"{objects}/{total_objects} objects",
            )  # fmt: skip

        yield update


@migrate_app.command("run")
def run(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    wave: Annotated[int | None, typer.Option(help="Only this wave.")] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Objects copied at once (default: [migrate] concurrency, 16)."),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker", help="Copy alongside other processes already running this migration."
        ),
    ] = False,
) -> None:
    """Copy the objects not yet copied (ciphertext as it is), each checked against the
    hub's SHA-256 as it is read and read back from the target. Run again to resume;
    run several with --worker, on one machine or several, to copy together."""
    from hdh.migrate.service import migration_info, run_migration

    said = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    stop = threading.Event()

    def ctrl_c(signum: int, frame: object) -> None:
        if not stop.is_set():  # once: Ctrl-C again while it winds down is not heeded
            stop.set()
            said.print(
                "Stopping: no copy begins, those under way end at their next part and what "
                "they did is recorded…"
            )

    with state(ctx).open_hub() as hub:
        principal = acting(hub, "hub.operate")
        previous = signal.signal(signal.SIGINT, ctrl_c)
        try:
            with _bar(said) as progress:
                result = run_migration(
                    hub, principal, migration_id, wave=wave, concurrency=concurrency,
                    join=worker, progress=progress, stop=stop,
                )  # fmt: skip
        finally:
            if previous is not None:  # (None: a handler not set from Python)
                signal.signal(signal.SIGINT, previous)
        if result.stopped:
            info = migration_info(hub, principal, migration_id)
            said.print(
                f"Stopped: {info.states.get('copied', 0)} of {info.objects} objects copied. "
                f"Run `hdh migrate run {migration_id}` again to go on: copied objects are "
                "skipped, and a large object sent to S3 in parts goes on from the parts "
                "already there."
            )
            raise typer.Exit(130)
    rate = result.bytes / result.seconds / 1e6 if result.seconds else 0.0
    out().print(
        f"Copied {result.copied} objects ({_mib(result.bytes)}, {rate:.1f} MB/s), "
        f"{result.skipped} already copied."
    )
    for key in result.corrupt:
        out().print(f"  corrupt at the source, not copied: {key}")
    for key in result.failed:
        out().print(f"  failed: {key}")
    if result.corrupt or result.failed:
        raise typer.Exit(1)


@migrate_app.command("verify")
def verify(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    full: Annotated[bool, typer.Option("--full", help="Re-read and hash every byte.")] = False,
) -> None:
    """List the target independently and compare it with the plan: missing objects,
    sizes, and with --full every SHA-256. What is wrong is copied again by the next run."""
    from hdh.migrate.service import verify_migration

    with state(ctx).open_hub() as hub:
        result = verify_migration(hub, acting(hub, "hub.operate"), migration_id, full=full)
    out().print(
        f"Checked {result.checked} objects{' byte for byte' if full else ''}: "
        f"{len(result.missing)} missing, {len(result.wrong_size)} of the wrong size, "
        f"{len(result.wrong_hash)} with another SHA-256, {len(result.extra)} not in the plan."
    )
    for key in result.missing + result.wrong_size + result.wrong_hash:
        out().print(f"  {key}")
    if not result.ok:
        raise typer.Exit(1)


_WAVE = typer.Option(help="Only this wave (default: every wave not yet switched).")


@migrate_app.command("cutover")
def cutover_(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    wave: Annotated[int | None, _WAVE] = None,
) -> None:
    """Copy what was written to the source since the plan, then switch the wave's
    objects and records to the target in one transaction. The source is left as it is."""
    from hdh.migrate.service import cutover

    with state(ctx).open_hub() as hub:
        moved = cutover(hub, acting(hub, "hub.operate"), migration_id, wave=wave)
    out().print(
        f"Cut over: {moved['delta']} change(s) on the source since the plan taken in first; "
        + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in moved.items() if what != "delta")
        + " now on the target."
    )


@migrate_app.command("rollback")
def rollback_(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    wave: Annotated[int | None, typer.Option(help="Only this wave (default: every one).")] = None,
) -> None:
    """Switch back to the source after a cutover (refused once the target holds objects
    written since in the wave's area)."""
    from hdh.migrate.service import rollback

    with state(ctx).open_hub() as hub:
        moved = rollback(hub, acting(hub, "hub.operate"), migration_id, wave=wave)
    out().print(f"Rolled back: {moved['objects']} object record(s) on the source again.")


@migrate_app.command("decommission")
def decommission_(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
) -> None:
    """Delete the source copies of a migration cut over in every wave, once the target
    is verified and the grace period ([migrate] grace_days) has passed."""
    from hdh.migrate.service import decommission

    with state(ctx).open_hub() as hub:
        done = decommission(hub, acting(hub, "hub.operate"), migration_id)
    out().print(
        f"Decommissioned: {done['deleted']} source copies deleted; "
        f"{done['kept']} object(s) the hub still keeps on the source left alone."
        + (
            f" {done['keys_destroyed']} data key(s) of the source copies destroyed."
            if done["keys_destroyed"]
            else ""
        )
    )


@migrate_app.command("report")
def report_(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the report to.")] = Path(),
    full: Annotated[
        bool, typer.Option("--full", help="Re-read and hash every byte on the target first.")
    ] = False,
) -> None:
    """Write the migration's report (Markdown and JSON): every dataset and project with
    objects, bytes and SHA-256 matched, the waves, the policy checks, a verification run
    now, and a summary signed with the hub's key."""
    from hdh.migrate.report import migration_report, to_markdown

    if not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} is not a folder", param_hint="--out")
    with state(ctx).open_hub() as hub:
        report = migration_report(hub, acting(hub, "hub.operate"), migration_id, full=full)
    base = out_dir / f"migration-{migration_id}-report"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md_path.write_text(to_markdown(report), "utf-8")
    summary = report["summary"]
    verdict = "passed" if summary["verified"]["ok"] else "FAILED"
    out().print(
        f"Migration {migration_id}: {summary['sha256_matched']} of {summary['objects']} "
        f"objects matched on the target; verification {verdict}. "
        f"Wrote {md_path} and {json_path}."
    )
    if not summary["verified"]["ok"]:
        raise typer.Exit(1)


@migrate_app.command("check-report")
def check_report_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The report's JSON file.")],
) -> None:
    """Check that a report's signed summary is unaltered and signed by this hub."""
    from hdh.errors import InvalidInput
    from hdh.migrate.report import check_report, hub_public_key

    try:
        report = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"cannot read {path} as JSON ({exc})", hint="give the JSON file of the report"
        ) from None
    with state(ctx).open_hub() as hub:
        acting(hub, "hub.operate")
        summary = check_report(report, public_key=hub_public_key(hub))
    out().print(
        f"The summary of migration {summary['migration']} ({summary['objects']} objects, "
        f"digest {summary['objects_sha256'][:16]}…) is signed by this hub and unaltered."
    )


@migrate_app.command("cancel")
def cancel_(
    ctx: typer.Context,
    migration_id: Annotated[int, typer.Argument(help="The migration.")],
) -> None:
    """Abandon a migration with no wave cut over, so that another can be planned. The
    copies already made on the target are left there."""
    from hdh.migrate.service import cancel

    with state(ctx).open_hub() as hub:
        copied = cancel(hub, acting(hub, "hub.operate"), migration_id)
    out().print(
        f"Cancelled migration {migration_id}; {copied} copies are left on its target "
        "(delete them there, or plan again to the same target)."
    )
