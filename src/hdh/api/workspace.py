"""``/api/v1``: a project's jobs, and the airlock through which its results leave, as
``hdh job`` and ``hdh airlock`` do it. Files (job outputs, files under review, released
files) are answered as bytes (``application/octet-stream``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from hdh.airlock import service as airlock
from hdh.api.deps import Id, Limit, Offset, Page, Who, hub_of, page
from hdh.errors import NotFound
from hdh.workspace import jobs

router = APIRouter(prefix="/api/v1")

_BYTES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The file."}
}


class NewJob(BaseModel):
    #: The script's file name: it says the kind (``.sql`` or ``.py``).
    script_name: str = Field(min_length=4, max_length=200)
    script: str = Field(max_length=1024 * 1024)
    timeout_s: int = Field(default=jobs.TIMEOUT_S, ge=1, le=24 * 3600)
    memory_mb: int = Field(default=jobs.MEMORY_MB, ge=256, le=65536)


class NewExport(BaseModel):
    #: ``JOB/NAME``: outputs of the project's jobs.
    files: list[str] = Field(min_length=1, max_length=50)
    note: str = Field(default="", max_length=2000)


class Review(BaseModel):
    decision: Literal["approve", "reject", "return"]
    comment: str = Field(default="", max_length=2000)
    #: A comment per file, by name.
    file_comments: dict[str, str] = Field(default_factory=dict)


@router.post("/projects/{name}/jobs", response_model=jobs.JobInfo, status_code=202, tags=["jobs"])
def submit(request: Request, who: Who, name: str, body: NewJob) -> jobs.JobInfo:
    """Submit a script to run on the project's permitted data in an isolated process;
    it starts at once, in the background. Follow it with ``GET /api/v1/jobs/{id}``."""
    hub = hub_of(request)
    job = jobs.submit_script(
        hub, who, name, body.script_name, body.script.encode("utf-8"),
        timeout_s=body.timeout_s, memory_mb=body.memory_mb,
    )  # fmt: skip
    jobs.start_in_background(hub.settings.hub_dir, job.id)
    return job


@router.get("/projects/{name}/jobs", response_model=Page[jobs.JobInfo], tags=["jobs"])
def project_jobs(
    request: Request, who: Who, name: str, offset: Offset = 0, limit: Limit = 50
) -> Any:
    """The project's jobs, oldest first (its members)."""
    return page(jobs.list_jobs(hub_of(request), who, name), offset, limit)


@router.get("/jobs/{job_id}", response_model=jobs.JobInfo, tags=["jobs"])
def job(request: Request, who: Who, job_id: Id) -> jobs.JobInfo:
    return jobs.job_info(hub_of(request), who, job_id)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, tags=["jobs"])
def job_log(request: Request, who: Who, job_id: Id) -> str:
    """The job's standard output and error (empty before it ran)."""
    return jobs.job_log(hub_of(request), who, job_id)


@router.get("/jobs/{job_id}/outputs/{name:path}", response_class=Response, responses=_BYTES,
            tags=["jobs"])  # fmt: skip
def job_output(request: Request, who: Who, job_id: Id, name: str) -> Response:
    """One output file of a job, for the project's members."""
    data = jobs.read_output(hub_of(request), who, job_id, name)
    return Response(data, media_type="application/octet-stream")


@router.post(
    "/projects/{name}/exports",
    response_model=airlock.RequestInfo,
    status_code=201,
    tags=["airlock"],
)
def request_export(request: Request, who: Who, name: str, body: NewExport) -> airlock.RequestInfo:
    """Ask for files to leave the project: they are copied, checked for disclosure risk
    (verdict and report per file) and wait for reviewers."""
    return airlock.request_export(hub_of(request), who, name, body.files,
                                  note=body.note)  # fmt: skip


@router.get("/exports", response_model=Page[airlock.RequestInfo], tags=["airlock"])
def exports(
    request: Request,
    who: Who,
    project: str | None = None,
    status: str | None = Query(default=None, description=", ".join(airlock.STATUSES)),
    offset: Offset = 0,
    limit: Limit = 50,
) -> Any:
    """The export requests the caller may see (reviewers, administrators and auditors:
    all; members: their projects'), oldest first."""
    found = airlock.list_requests(hub_of(request), who, project=project, status=status)
    return page(found, offset, limit)


@router.get("/exports/{request_id}", response_model=airlock.RequestInfo, tags=["airlock"])
def export(request: Request, who: Who, request_id: Id) -> airlock.RequestInfo:
    return airlock.show_request(hub_of(request), who, request_id)


@router.get("/exports/{request_id}/files/{name:path}", response_class=Response, responses=_BYTES,
            tags=["airlock"])  # fmt: skip
def export_file(request: Request, who: Who, request_id: Id, name: str) -> Response:
    """A file as it was asked for (what the checks ran on), for reviewers and members."""
    data = airlock.read_file(hub_of(request), who, request_id, name)
    return Response(data, media_type="application/octet-stream")


@router.post("/exports/{request_id}/review", response_model=airlock.RequestInfo, tags=["airlock"])
def review(request: Request, who: Who, request_id: Id, body: Review) -> airlock.RequestInfo:
    """A reviewer's decision; enough approvals release the files (suppressed where the
    checks said so)."""
    return airlock.review(
        hub_of(request), who, request_id, body.decision, comment=body.comment,
        file_comments=body.file_comments,
    )  # fmt: skip


@router.get("/exports/{request_id}/released/{name:path}", response_class=Response,
            responses=_BYTES, tags=["airlock"])  # fmt: skip
def released(request: Request, who: Who, request_id: Id, name: str) -> Response:
    """A released file, checked against the SHA-256 recorded when it left (the
    project's lead). Audited as a download."""
    files = airlock.released_files(hub_of(request), who, request_id)
    if name not in files:
        raise NotFound(
            f"export request {request_id} released no file {name!r}",
            hint=f"its files: {', '.join(files) or 'none'}",
        )
    return Response(files[name], media_type="application/octet-stream")
