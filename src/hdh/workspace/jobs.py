"""Jobs: a researcher's script run for a project in an isolated process.

``submit_job`` records a job (``queued``, audited as ``job.submit``); ``run_job`` runs it:

1. The permits are checked again, and for every dataset the project may read, the hub
   decrypts the project's extract (``hdh.workspace.extracts``) into a private folder of
   the hub (``tmp/jobs/ID/``, mode 0700) as plain Parquet: the job's data. Keys never
   enter the job's process.
2. The script runs under bubblewrap: new user, network, PID, IPC and mount namespaces;
   a file system made only of the system's and Python's read-only folders, the data
   (read-only), the script (read-only) and an empty output folder; an empty environment.
   The hub's folder, key file, database and credentials do not exist in it, and there is
   no network (not even loopback). Limits: wall-clock time, memory (address space), CPU
   time (summed over threads), size of each file written, a 1 GiB /tmp.
3. Every regular file in the output folder (symbolic links and other kinds are left) is
   stored encrypted in the project's area (``projects/PROJECT/jobs/ID/``), with the
   job's log (standard output and error, the first ``LOG_BYTES``). The private folder is
   deleted whatever happened.

Python jobs use ``hdh.workspace`` (``connect``, ``table``, ``output``); SQL jobs run their
statements on ``hdh.workspace.connect()`` and keep the last result as ``result.csv``.
When bubblewrap cannot run, jobs are refused: the hub does not run researchers' code
with its own rights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePath
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select

import hdh
from hdh import audit
from hdh.errors import ConfigError, Conflict, HubError, InvalidInput, NotFound, PermissionDenied
from hdh.governance.models import Job, Permit
from hdh.governance.projects import _project, check_in_project, project_name
from hdh.hub import Hub
from hdh.identity.service import Principal, principal_of
from hdh.storage.objects import read_object, write_object
from hdh.workspace import DATA_ENV, MEMORY_ENV, OUTPUT_ENV
from hdh.workspace.extracts import extract_for

KINDS = {".sql": "sql", ".py": "python"}
MAX_SCRIPT = 1 << 20
LOG_BYTES = 1 << 20
TIMEOUT_S = 3600
MEMORY_MB = 4096
MAX_FILE_MB = 1024
MAX_OUTPUTS = 1000
MAX_OUTPUT_BYTES = 2 << 30
MAX_DEPTH = 16
TMP_BYTES = 1 << 30
#: Inside the sandbox: a private, empty, memory-backed /tmp (not the host's).
SANDBOX_TMP = "/tmp"  # noqa: S108


class IsolationUnavailable(ConfigError):
    """Jobs need bubblewrap, and it cannot run on the hub's machine."""

    code = "isolation_unavailable"


@dataclass
class JobInfo:
    id: int
    project: str
    kind: str
    script_name: str
    script_sha256: str
    status: str
    limits: dict[str, Any]
    isolation: str
    datasets: list[str]
    outputs: list[dict[str, Any]]
    exit_code: int | None
    error: str
    submitted_by: str
    submitted_at: str
    started_at: str | None
    finished_at: str | None


def _info(job: Job, project: str) -> JobInfo:
    return JobInfo(
        job.id, project, job.kind, job.script_name, job.script_sha256, job.status,
        dict(job.limits), job.isolation, list(job.datasets), list(job.outputs),
        job.exit_code, job.error, job.submitted_by, job.submitted_at, job.started_at,
        job.finished_at,
    )  # fmt: skip


@cache
def isolation() -> str | None:
    """``"bubblewrap"`` when ``bwrap`` runs here with a new network namespace, else None."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--dev", "/dev", "true"],
        capture_output=True,
        check=False,
    )
    return "bubblewrap" if probe.returncode == 0 else None


def _check_member(hub: Hub, principal: Principal, project: str) -> None:
    status = check_in_project(hub, principal, project, "data.read")
    if status != "active":
        raise PermissionDenied(
            f"project {project!r} is {status}, not active",
            hint="jobs run only in active projects",
        )


def submit_job(
    hub: Hub,
    principal: Principal,
    project: str,
    script: Path,
    *,
    timeout_s: int = TIMEOUT_S,
    memory_mb: int = MEMORY_MB,
) -> JobInfo:
    """Record a job running the file ``script`` (``.sql`` or ``.py``) for ``project``."""
    if not script.is_file():
        raise NotFound(f"no such file: {script}", hint="give the path of the job's script")
    with script.open("rb") as fh:
        raw = fh.read(MAX_SCRIPT + 1)  # enough for submit_script to refuse a larger one
    return submit_script(hub, principal, project, script.name, raw,
                         timeout_s=timeout_s, memory_mb=memory_mb)  # fmt: skip


def submit_script(
    hub: Hub,
    principal: Principal,
    project: str,
    script_name: str,
    raw: bytes,
    *,
    timeout_s: int = TIMEOUT_S,
    memory_mb: int = MEMORY_MB,
) -> JobInfo:
    """Record a job running the script ``raw`` named ``script_name`` (its suffix says the
    kind: ``.sql`` or ``.py``) for ``project``."""
    if PurePath(script_name).name != script_name or script_name in ("", ".", ".."):
        raise InvalidInput(f"script name {script_name!r} is a path", hint="give a file name only")
    kind = KINDS.get(PurePath(script_name).suffix.lower())
    if kind is None:
        raise InvalidInput(
            f"{script_name}: a job is an SQL (.sql) or Python (.py) script",
            hint="give a .sql or .py file",
        )
    if len(raw) > MAX_SCRIPT:
        raise InvalidInput(
            f"{script_name} is larger than {MAX_SCRIPT // 1024} KiB",
            hint="keep data out of the script: jobs read the project's datasets",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{script_name} is not UTF-8 text", hint="save it as UTF-8") from None
    if not 1 <= timeout_s <= 24 * 3600:
        raise InvalidInput("--timeout must be 1 to 86400 seconds", hint="give a shorter time")
    if not 256 <= memory_mb <= 65536:
        raise InvalidInput("--memory must be 256 to 65536 MB", hint="give another amount")
    _check_member(hub, principal, project)
    if isolation() is None:
        raise IsolationUnavailable(
            "jobs need bubblewrap (bwrap) to isolate them, and it cannot run on this machine",
            hint="install Debian's bubblewrap package, allowing user namespaces",
        )
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        owner = _project(session, project)
        job = Job(
            project_id=owner.id, kind=kind, script_name=script_name, script=text,
            script_sha256=hashlib.sha256(raw).hexdigest(), status="queued",
            limits={"timeout_s": timeout_s, "memory_mb": memory_mb, "file_mb": MAX_FILE_MB},
            isolation="bubblewrap", datasets=[], outputs=[], error="",
            submitted_by=principal.actor, submitted_at=now,
        )  # fmt: skip
        session.add(job)
        session.flush()
        audit.record(
            session,
            actor=principal.actor,
            action="job.submit",
            object_type="job",
            object_id=str(job.id),
            details={"project": project, "script": script_name, "sha256": job.script_sha256},
        )
        return _info(job, project)


def _permitted(hub: Hub, project: str) -> list[str]:
    from hdh.catalog.models import Dataset

    with hub.read() as session:
        owner = _project(session, project)
        return sorted(
            set(
                session.scalars(
                    select(Dataset.name)
                    .join(Permit, Permit.dataset_id == Dataset.id)
                    .where(Permit.project_id == owner.id, Permit.status == "granted")
                )
            )
        )


def _limits(limits: dict[str, Any]) -> Any:
    memory = int(limits["memory_mb"]) << 20
    # CPU time adds up over threads: a wall-clock second may cost one per core.
    cpu = int(limits["timeout_s"]) * (os.cpu_count() or 1) + 5
    size = int(limits["file_mb"]) << 20

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _read_only_roots() -> list[Path]:
    """What the job's Python needs: the interpreter's installation, the environment's
    packages and hdh's own source when it is not installed inside them."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    roots.add(Path(hdh.__file__).resolve().parent.parent)
    return sorted(r for r in roots if not str(r).startswith("/usr/"))


def sandbox_command(work: Path, script: Path, kind: str, limits: dict[str, Any]) -> list[str]:
    """The bubblewrap command line that runs ``script`` with ``work/data`` (read-only)
    and ``work/out`` (writable) as its only data."""
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    command = [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session",
        "--uid", "65534", "--gid", "65534",
        # First: later mounts may lie under /tmp (an environment in /tmp/…) and must
        # not be hidden by it.
        "--size", str(TMP_BYTES), "--tmpfs", SANDBOX_TMP,
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    ]  # fmt: skip
    for root in _read_only_roots():
        command += ["--ro-bind", str(root), str(root)]
    command += [
        "--ro-bind", str(work / "data"), "/job/data",
        "--bind", str(work / "out"), "/job/out",
        "--ro-bind", str(script), f"/job/{script.name}",
        "--proc", "/proc", "--dev", "/dev",
        "--chdir", "/job/out", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", SANDBOX_TMP,
        "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--setenv", DATA_ENV, "/job/data", "--setenv", OUTPUT_ENV, "/job/out",
        "--setenv", MEMORY_ENV, str(limits["memory_mb"]),
        "--", sys.executable,
    ]  # fmt: skip
    if kind == "sql":
        command += ["-m", "hdh.workspace.sqljob", f"/job/{script.name}"]
    else:
        command += [f"/job/{script.name}"]
    return command


def run_job(hub: Hub, principal: Principal, job_id: int) -> JobInfo:
    """Run a queued job to its end (see the module docstring); returns its record."""
    with hub.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"there is no job {job_id}", hint="see hdh job list PROJECT")
        if job.status != "queued":
            raise Conflict(f"job {job_id} is {job.status}, not queued", hint="submit it again")
        project = project_name(session, job.project_id)
        job.status = "running"
        job.started_at = audit.utc_timestamp()
        kind, script_name, script_text = job.kind, job.script_name, job.script
        limits = dict(job.limits)
    outcome, status, error, exit_code = "failure", "failed", "", None
    datasets: list[str] = []
    outputs: list[dict[str, Any]] = []
    location: str | None = None
    log_key: str | None = None
    details: dict[str, Any] = {}
    tmp_root = hub.settings.hub_dir / "tmp" / "jobs"
    tmp_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"job-{job_id}-", dir=tmp_root))
    try:
        _check_member(hub, principal, project)
        (work / "data").mkdir()
        (work / "out").mkdir()
        script = work / "script" / script_name
        script.parent.mkdir()
        script.write_text(script_text, encoding="utf-8")
        for name in _permitted(hub, project):
            try:
                extract = extract_for(hub, principal, project, name, purpose=f"job {job_id}")
            except PermissionDenied:
                continue  # expired or revoked since: not part of the job
            with pq.ParquetWriter(work / "data" / f"{name}.parquet", extract.scan.schema) as w:
                for batch in extract.scan.to_batches():
                    w.write_batch(batch)
            datasets.append(name)
            location = location or _location_of(hub, name)
        if not datasets:
            raise PermissionDenied(
                f"project {project!r} has no usable permit, so a job has no data",
                hint="request a permit (hdh permit request)",
            )
        log_path = work / "job.log"
        began = time.monotonic()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                sandbox_command(work, script, kind, limits),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_limits(limits),  # limits are set in the child, before bwrap
                start_new_session=True,
            )
            try:
                exit_code = process.wait(timeout=limits["timeout_s"])
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                status, error = "timed_out", f"stopped after {limits['timeout_s']} s"
        seconds = time.monotonic() - began
        if status != "timed_out":
            if exit_code == 0:
                status, outcome = "succeeded", "success"
            else:
                error = _exit_reason(exit_code)
        assert location is not None
        prefix = f"projects/{project}/jobs/{job_id}"
        outputs = _keep_outputs(hub, principal, work / "out", location, prefix)
        log_key = f"{prefix}/job.log"
        with log_path.open("rb") as fh:
            write_object(hub, location, log_key, [fh.read(LOG_BYTES)], actor=principal.actor)
        details = {"seconds": round(seconds, 3)}
    except HubError as exc:
        error = f"{type(exc).__name__}: {exc}"
        outcome = "denied" if isinstance(exc, PermissionDenied) else "failure"
        status = "failed" if status == "succeeded" else status
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        outcome, status = "failure", "failed" if status == "succeeded" else status
        raise
    finally:
        _remove(work)
        with hub.transaction() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.status = status
            job.exit_code = exit_code
            job.error = error[:4000]
            job.datasets = datasets
            job.outputs = outputs
            job.location = location
            job.log_key = log_key
            job.finished_at = audit.utc_timestamp()
            audit.record(
                session,
                actor=principal.actor,
                action="job.run",
                object_type="job",
                object_id=str(job_id),
                outcome=outcome,  # type: ignore[arg-type]
                details={
                    "project": project,
                    "status": status,
                    "exit_code": exit_code,
                    "datasets": datasets,
                    "outputs": [o["name"] for o in outputs],
                    **({"error": error[:500]} if error else {}),
                    **details,
                },
            )
    return job_info(hub, principal, job_id)


def start_in_background(hub_dir: Path, job_id: int) -> None:
    """Start ``hdh job run ID`` detached: it runs the queued job as its submitter (see
    ``run_queued``), so it must not inherit the caller's token."""
    env = {k: v for k, v in os.environ.items() if k != "HDH_TOKEN"}
    runner = subprocess.Popen(
        [sys.executable, "-m", "hdh", "--hub", str(hub_dir), "job", "run", str(job_id)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # A long-running caller (the API server) reaps it when it ends; a command that exits
    # first leaves it to the system.
    threading.Thread(target=runner.wait, name=f"hdh-job-{job_id}", daemon=True).start()


def run_queued(hub: Hub, job_id: int) -> JobInfo:
    """Run a queued job as the user who submitted it (the background runner)."""
    with hub.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"there is no job {job_id}", hint="see hdh job list PROJECT")
        actor = job.submitted_by
    return run_job(hub, principal_of(hub, actor), job_id)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "the job did not finish"
    if code < 0:
        name = signal.Signals(-code).name
        why = {
            "SIGXCPU": "its CPU time limit",
            "SIGXFSZ": "its file size limit",
            "SIGKILL": "it was killed (memory?)",
        }.get(name, name)
        return f"the job was stopped by {why}"
    return f"the job exited with status {code}"


def _location_of(hub: Hub, dataset: str) -> str:
    from hdh.ingest.service import version_info

    return version_info(hub, dataset, None).location


class OutputsRefused(InvalidInput):
    """The job's output folder holds what the hub does not keep."""

    code = "outputs_refused"


def _listing(out: Path) -> list[tuple[str, Path]]:
    """The regular files under ``out`` (name relative to it, path), never following
    links; refused when there are too many, too much, too deep or with names that are
    not text."""
    found: list[tuple[str, Path]] = []
    total = 0
    stack: list[tuple[Path, int]] = [(out, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise OutputsRefused(
                f"the output folder {folder.name!r} cannot be read ({exc.strerror})",
                hint="leave outputs readable",
            ) from None
        for entry in entries:
            name = Path(entry.path).relative_to(out).as_posix()
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise OutputsRefused(
                    "an output's name is not text", hint="name outputs in UTF-8"
                ) from None
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    raise OutputsRefused(
                        f"outputs nest deeper than {MAX_DEPTH} folders", hint="flatten them"
                    )
                stack.append((Path(entry.path), depth + 1))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
                found.append((name, Path(entry.path)))
        if len(found) > MAX_OUTPUTS or total > MAX_OUTPUT_BYTES:
            raise OutputsRefused(
                f"the job wrote more than {MAX_OUTPUTS} files or "
                f"{MAX_OUTPUT_BYTES >> 30} GiB in its output folder",
                hint="write fewer, aggregated outputs",
            )
    return sorted(found)


def _keep_outputs(
    hub: Hub, principal: Principal, out: Path, location: str, prefix: str
) -> list[dict[str, Any]]:
    """Store every regular file the job wrote (never following a link)."""
    kept: list[dict[str, Any]] = []
    for name, path in _listing(out):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise OutputsRefused(
                f"output {name!r} cannot be read ({exc.strerror})", hint="leave outputs readable"
            ) from None
        with os.fdopen(fd, "rb") as fh:
            digest = hashlib.sha256()

            def chunks(fh: Any = fh, digest: Any = digest) -> Any:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    yield chunk

            record = write_object(
                hub, location, f"{prefix}/outputs/{name}", chunks(), actor=principal.actor
            )
        kept.append(
            {
                "name": name,
                "key": f"{prefix}/outputs/{name}",
                "size": record.plain_size,
                "sha256": digest.hexdigest(),
            }
        )
    return kept


def _remove(work: Path) -> None:
    """Delete the job's private folder, whatever modes the job left in it."""

    for folder, subfolders, _ in os.walk(work):
        for sub in subfolders:  # before os.walk goes into them
            path = Path(folder) / sub
            if not path.is_symlink():  # a link's target is not the job's to change
                with contextlib.suppress(OSError):
                    path.chmod(0o700)
    shutil.rmtree(work, ignore_errors=True)


def _load(hub: Hub, principal: Principal, job_id: int) -> tuple[Job, str]:
    with hub.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"there is no job {job_id}", hint="see hdh job list PROJECT")
        project = project_name(session, job.project_id)
        session.expunge(job)
    _check_member(hub, principal, project)
    return job, project


def job_info(hub: Hub, principal: Principal, job_id: int) -> JobInfo:
    job, project = _load(hub, principal, job_id)
    return _info(job, project)


def list_jobs(hub: Hub, principal: Principal, project: str) -> list[JobInfo]:
    _check_member(hub, principal, project)
    with hub.read() as session:
        owner = _project(session, project)
        return [
            _info(job, project)
            for job in session.scalars(
                select(Job).where(Job.project_id == owner.id).order_by(Job.id)
            )
        ]


def job_log(hub: Hub, principal: Principal, job_id: int) -> str:
    """The job's standard output and error (empty before it ran)."""
    job, _ = _load(hub, principal, job_id)
    if job.log_key is None or job.location is None:
        return ""
    data = b"".join(bytes(c) for c in read_object(hub, job.location, job.log_key))
    return data.decode("utf-8", errors="replace")


def read_output(hub: Hub, principal: Principal, job_id: int, name: str) -> bytes:
    """One output file of a job, for the project's members (it leaves the project only
    through the airlock)."""
    job, _ = _load(hub, principal, job_id)
    found = next((o for o in job.outputs if o["name"] == name), None)
    if found is None or job.location is None:
        names = ", ".join(o["name"] for o in job.outputs) or "none"
        raise NotFound(f"job {job_id} has no output {name!r}", hint=f"its outputs: {names}")
    return b"".join(bytes(c) for c in read_object(hub, job.location, found["key"]))
