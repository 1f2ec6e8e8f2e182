"""The pages, one group per role's work: the catalogue, projects and permits, the
workspace (queries, saved tables, jobs), the airlock, migrations, the audit trail, and
locations with the residency policy. Each calls the library as the signed-in person, so
what a page shows or refuses is what ``hdh`` would; errors come back as a page saying
what went wrong and what to do."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hdh import audit, authz, policy
from hdh.airlock import service as airlock
from hdh.api.deps import Id, authorise
from hdh.api.signin import sign_in
from hdh.catalog.profile import THRESHOLD
from hdh.catalog.service import get_metadata, get_schema, search
from hdh.errors import HubError, InvalidInput, NotFound
from hdh.governance import permits as permit_service
from hdh.governance import projects as project_service
from hdh.identity.service import AuthenticationFailed, TooManyAttempts, revoke_token
from hdh.ingest.service import list_datasets, version_info, versions
from hdh.migrate import report as reports
from hdh.migrate import service as migrations
from hdh.storage.locations import describe_location, list_locations
from hdh.web import (
    COOKIE,
    LANG_COOKIE,
    PAGE_HEADERS,
    STATIC,
    Viewer,
    check_csrf,
    format_number,
    htmx,
    htmx_script,
    hub_of,
    i18n,
    language,
    render,
    shared_part,
    viewer_now,
)
from hdh.web.charts import bars
from hdh.workspace import jobs
from hdh.workspace.tables import list_tables

router = APIRouter(include_in_schema=False)

PAGE = 25
ProjectMove = Literal[
    "submit", "approve", "reject", "activate", "suspend", "close", "archive", "revise"
]
Csrf = Annotated[str, Form()]


SESSION_TOKEN = re.compile(r"hdh_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def _local(target: str | None, default: str = "/catalogue") -> str:
    """Where to go after signing in: a path of this site only."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limiter(request: Request) -> Any:
    return request.app.state.login_limiter


# --- Frame ----------------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return _see("/catalogue")


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name == "htmx.min.js" and (script := htmx_script()) is not None:
        return Response(
            script.read_bytes(),
            media_type="text/javascript",
            headers={"Cache-Control": "max-age=3600"},
        )
    if name == "hdh.css":
        return Response(
            (STATIC / name).read_bytes(),
            media_type="text/css",
            headers={"Cache-Control": "max-age=300"},
        )
    raise NotFound(f"no static file {name!r}", hint="the pages use hdh.css and htmx.min.js")


@router.get("/lang/{code}")
def choose_language(code: str, next: str = "/") -> RedirectResponse:
    answer = _see(_local(next))
    if code in i18n.LANGUAGES:
        answer.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
    return answer


@router.get("/login")
def login_page(request: Request, next: str = "/catalogue") -> HTMLResponse:
    return render(request, "login.html", after=_local(next), problem=None, name="")


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form(max_length=2000)] = "/catalogue",
) -> Response:
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        return render(
            request,
            "login.html",
            status=403,
            after=_local(next),
            name=name,
            problem="this sign-in form was sent from another site",
        )
    try:
        token, _ = sign_in(
            hub_of(request), _limiter(request), name, password, client=_client(request)
        )
    except (AuthenticationFailed, TooManyAttempts) as exc:
        return render(
            request,
            "login.html",
            status=exc.http_status,
            after=_local(next),
            name=name,
            problem=str(exc),
        )
    _end_session(request)  # a sign-in replaces the browser's session, never piles up
    answer = _see(_local(next))
    answer.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
        max_age=86400,
    )
    return answer


def _end_session(request: Request) -> None:
    """Revoke the token in the session cookie, if it is a live one."""
    token = request.cookies.get(COOKIE, "")
    found = SESSION_TOKEN.fullmatch(token)
    if found is None:
        return
    with contextlib.suppress(HubError):
        holder = viewer_now(request)
        revoke_token(hub_of(request), found.group(1), actor=holder.actor)


@router.post("/logout")
def logout(request: Request, who: Viewer, csrf: Csrf) -> RedirectResponse:
    check_csrf(request, csrf)
    _end_session(request)
    answer = _see("/login")
    answer.delete_cookie(COOKIE, path="/")
    return answer


# --- Catalogue ------------------------------------------------------------------------


@router.get("/catalogue")
async def catalogue(
    request: Request,
    who: Viewer,
    q: Annotated[str, Query(max_length=200)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    hub = hub_of(request)
    await authorise(hub, who, "catalog.read")
    words = q.strip()

    def context() -> dict[str, Any]:
        if words:
            found = search(hub, words, limit=offset + PAGE + 1)
            return {"items": found[offset : offset + PAGE], "more": len(found) > offset + PAGE}
        every = list_datasets(hub)
        return {"items": every[offset : offset + PAGE], "more": len(every) > offset + PAGE}

    results = await shared_part(request, ("catalogue", words, offset), "catalogue_results.html",
                          lazy=context, q=words, offset=offset, page=PAGE)  # fmt: skip
    if htmx(request):
        return HTMLResponse(results, headers=PAGE_HEADERS)
    return render(request, "catalogue.html", who=who, q=words, results=results)


@router.get("/catalogue/{name}")
async def dataset_page(
    request: Request,
    who: Viewer,
    name: str,
    version: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    hub = hub_of(request)
    await authorise(hub, who, "catalog.read")
    lang = language(request)
    said = i18n.translator(lang)

    def context() -> dict[str, Any]:
        metadata = get_metadata(hub, name)
        chosen = version_info(hub, name, version)
        profile = chosen.manifest.get("profile", {})
        profiles = {c["name"]: c for c in profile.get("columns", [])}
        rules = chosen.manifest.get("rules", {})
        columns = []
        for column in chosen.manifest["schema"]:
            seen = profiles.get(column["name"], {})
            columns.append({
                "name": column["name"], "type": column["type"],
                "rule": rules.get(column["name"], "keep"), "profile": seen,
                "chart": _profile_chart(seen, column["name"], said("suppressed"), lang),
            })  # fmt: skip
        schema = None
        if metadata.get("schema"):
            with contextlib.suppress(NotFound):
                schema = get_schema(hub, metadata["schema"]).schema
        return {
            "metadata": metadata, "chosen": chosen, "every": versions(hub, name),
            "columns": columns, "schema": schema,
            "threshold": profile.get("threshold", THRESHOLD),
        }  # fmt: skip

    body = await shared_part(request, ("dataset", name, version), "dataset_body.html", lazy=context)
    return render(request, "dataset.html", who=who, body=body, title=name)


def _profile_chart(profile: dict[str, Any], name: str, suppressed: str, lang: str) -> str | None:
    """A column's histogram or top categories as an SVG bar chart (suppressed bars drawn
    hatched, with no height: their count is not known here)."""
    if profile.get("histogram"):
        data = [
            (f"{_short(b['from'])}\u2013{_short(b['to'])}", b["count"], b["suppressed"])
            for b in profile["histogram"]
        ]
        return bars(data, label=name, suppressed_word=suppressed,
                    number=lambda value: format_number(value, lang))  # fmt: skip
    if profile.get("top"):
        return bars(
            [(str(t["value"]), t["count"], False) for t in profile["top"]],
            label=name,
            horizontal=True,
            suppressed_word=suppressed,
            number=lambda value: format_number(value, lang),
        )
    return None


def _short(value: Any) -> str:
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.3g}"
    return str(value)


# --- Projects and permits -------------------------------------------------------------


@router.get("/projects")
def projects_page(request: Request, who: Viewer) -> HTMLResponse:
    found = project_service.list_projects(hub_of(request), who)
    return render(request, "projects.html", who=who, projects=found)


@router.post("/projects")
def new_project(
    request: Request,
    who: Viewer,
    csrf: Csrf,
    name: Annotated[str, Form(max_length=64)],
    title: Annotated[str, Form(max_length=300)],
    purpose: Annotated[str, Form(max_length=5000)] = "",
    legal_basis: Annotated[str, Form(max_length=500)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    made = project_service.create_project(
        hub_of(request), who, name.strip(), title=title, purpose=purpose, legal_basis=legal_basis
    )
    return _see(f"/projects/{made.name}")


@router.get("/projects/{name}")
def project_page(request: Request, who: Viewer, name: str) -> HTMLResponse:
    hub = hub_of(request)
    project = project_service.get_project(hub, who, name)
    permits = permit_service.list_permits(hub, who, name)
    history = project_service.project_history(hub, who, name)
    moves = sorted(project_service.TRANSITIONS.get(project.status, {}))
    datasets = [d["name"] for d in list_datasets(hub)]
    return render(
        request,
        "project.html",
        who=who,
        project=project,
        permits=permits,
        history=[_event(e) for e in history],
        moves=moves,
        datasets=datasets,
        can_decide=authz.can(who, "permit.decide", None),
    )


def _event(event: Any) -> dict[str, Any]:
    record = audit.event_record(event)
    return {**record, "object": f"{record['object_type']}:{record['object_id']}"}


@router.post("/projects/{name}/transitions")
def move_project(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    action: Annotated[ProjectMove, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
    approval_ref: Annotated[str, Form(max_length=200)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    project_service.transition(
        hub_of(request), who, name, action, note=note, approval_ref=approval_ref or None
    )
    return _see(f"/projects/{name}")


@router.post("/projects/{name}/members")
def set_member(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    user: Annotated[str, Form(max_length=64)],
    role: Annotated[Literal["analyst", "viewer", "none"], Form()],
) -> RedirectResponse:
    check_csrf(request, csrf)
    project_service.set_member(hub_of(request), who, name, user.strip(),
                               None if role == "none" else role)  # fmt: skip
    return _see(f"/projects/{name}")


@router.post("/projects/{name}/permits")
def ask_permit(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    dataset: Annotated[str, Form(max_length=200)],
    columns: Annotated[str, Form(max_length=5000)],
    row_filter: Annotated[str, Form(max_length=2000)] = "",
    until: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    if not wanted:
        raise InvalidInput(
            "the permit request names no column",
            hint="list the columns the project needs, separated by commas",
        )
    permit_service.request_permit(
        hub_of(request),
        who,
        name,
        dataset,
        columns=wanted,
        row_filter=row_filter,
        until=until or None,
        note=note,
    )
    return _see(f"/projects/{name}#permits")


@router.post("/permits/{permit_id}/decision")
def decide_permit(
    request: Request,
    who: Viewer,
    permit_id: Id,
    csrf: Csrf,
    action: Annotated[Literal["grant", "refuse", "revoke"], Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    decided = permit_service.decide(hub_of(request), who, permit_id, action, note=note)
    return _see(f"/projects/{decided.project}#permits")


# --- Workspace ------------------------------------------------------------------------


def _workspace(request: Request, who: Any, name: str, **context: Any) -> HTMLResponse:
    hub = hub_of(request)
    project = project_service.get_project(hub, who, name)
    project_service.check_in_project(hub, who, name, "data.read")
    found = jobs.list_jobs(hub, who, name)
    outputs = [
        (job, output["name"])
        for job in found
        if job.status == "succeeded"
        for output in job.outputs
        if airlock.chosen_on_its_own(output["name"])
    ]
    context.setdefault("result", None)
    context.setdefault("sql", "")
    context.setdefault("save", "")
    return render(
        request,
        "workspace.html",
        who=who,
        project=project,
        jobs=found,
        tables=list_tables(hub, name),
        outputs=outputs,
        **context,
    )


@router.get("/projects/{name}/workspace")
def workspace(request: Request, who: Viewer, name: str) -> HTMLResponse:
    return _workspace(request, who, name)


@router.post("/projects/{name}/query")
def run_query(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    sql: Annotated[str, Form(max_length=20_000)],
    offset: Annotated[int, Form(ge=0, le=10**12)] = 0,
    save: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    from hdh.workspace.governed import run_query as governed_query

    check_csrf(request, csrf)
    hub = hub_of(request)
    outcome = governed_query(
        hub, who, name, sql, max_rows=PAGE, offset=offset, save=save.strip() or None
    )
    columns = [column.to_pylist() for column in outcome.table.columns]
    rows = [list(row) for row in zip(*columns, strict=True)]
    result = {
        "columns": outcome.table.column_names,
        "rows": rows,
        "offset": offset,
        "more": outcome.truncated,
        "datasets": outcome.datasets,
        "seconds": round(outcome.seconds, 3),
    }
    if htmx(request):
        # A saved table also refreshes the list of saved tables (out of band).
        tables = list_tables(hub, name) if save.strip() else None
        return render(
            request, "query_result.html", who=who, result=result, sql=sql, project_name=name,
            tables=tables,
        )  # fmt: skip
    return _workspace(request, who, name, result=result, sql=sql, save=save)


@router.post("/projects/{name}/jobs")
def submit_job(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    script_name: Annotated[str, Form(max_length=200)],
    script: Annotated[str, Form(max_length=1024 * 1024)],
) -> RedirectResponse:
    check_csrf(request, csrf)
    hub = hub_of(request)
    job = jobs.submit_script(hub, who, name, script_name.strip(), script.encode("utf-8"))
    jobs.start_in_background(hub.settings.hub_dir, job.id)
    return _see(f"/jobs/{job.id}")


@router.get("/jobs/{job_id}")
def job_page(request: Request, who: Viewer, job_id: Id) -> HTMLResponse:
    hub = hub_of(request)
    job = jobs.job_info(hub, who, job_id)
    log = jobs.job_log(hub, who, job_id)
    template = "job_status.html" if htmx(request) else "job.html"
    return render(
        request, template, who=who, job=job, log=log, running=job.status in ("queued", "running")
    )


@router.get("/jobs/{job_id}/outputs/{name:path}")
def job_output(request: Request, who: Viewer, job_id: Id, name: str) -> Response:
    data = jobs.read_output(hub_of(request), who, job_id, name)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{_ascii(name)}"'},
    )


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


# --- Airlock --------------------------------------------------------------------------


@router.post("/projects/{name}/exports")
def ask_export(
    request: Request,
    who: Viewer,
    name: str,
    csrf: Csrf,
    files: Annotated[list[str], Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    made = airlock.request_export(hub_of(request), who, name, files, note=note)
    return _see(f"/airlock/{made.id}")


@router.get("/airlock")
def airlock_page(request: Request, who: Viewer, status: str = "") -> HTMLResponse:
    found = airlock.list_requests(hub_of(request), who, status=status or None)
    return render(
        request, "airlock.html", who=who, requests=found, wanted=status, statuses=airlock.STATUSES
    )


@router.get("/airlock/{request_id}")
def export_page(request: Request, who: Viewer, request_id: Id) -> HTMLResponse:
    hub = hub_of(request)
    shown = airlock.show_request(hub, who, request_id)
    grids = {}
    for item in shown.files:
        if "cells" in item.report and "hidden" in item.report:
            data = airlock.read_file(hub, who, request_id, item.name)
            grids[item.name] = _grid(data, item.report)
    # What left, from the request's record: the files themselves are read (checked and
    # audited as a download) only when one is asked for.
    released = [f.name for f in shown.files if f.released_sha256]
    return render(
        request,
        "export.html",
        who=who,
        shown=shown,
        grids=grids,
        released=released,
        can_review=authz.can(who, "airlock.review", None) and shown.status == "checked",
    )


def _grid(data: bytes, report: dict[str, Any]) -> dict[str, Any]:
    """A checked table laid out for review: its labels, and per cell the value, the
    reasons it was flagged and whether it leaves blank."""
    table = airlock.read_checked_table(data, report)
    rows: list[dict[str, Any]] = []
    for i, label in enumerate(table.index):
        cells = []
        for j, value in enumerate(table.iloc[i]):
            found = report["cells"][i][j] if i < len(report["cells"]) else []
            reasons = ", ".join(found) if isinstance(found, list) else str(found or "")
            hidden = bool(report["hidden"][i][j]) if i < len(report["hidden"]) else False
            shown = "" if isinstance(value, float) and math.isnan(value) else _exact(value)
            cells.append(
                {
                    "value": shown,
                    "reasons": reasons or "",
                    "hidden": hidden,
                    "at": f"{_label(label)} \u00d7 {_label(table.columns[j])}",
                }
            )
        rows.append({"label": _label(label), "cells": cells})
    # Flagged by a check, or hidden only to protect a flagged one (secondary suppression).
    flagged = [c for r in rows for c in r["cells"] if c["reasons"] or c["hidden"]]
    return {
        "columns": [_label(c) for c in table.columns],
        "rows": rows,
        "index_name": ", ".join(str(n) for n in table.index.names if n is not None),
        "flagged": flagged,
    }


def _exact(value: Any) -> str:
    """A table's value as the reviewer must read it: whole numbers whole, others to six
    significant digits (never in exponent form for counts)."""
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _label(value: Any) -> str:
    return " / ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


@router.post("/airlock/{request_id}/review")
def review_export(
    request: Request,
    who: Viewer,
    request_id: Id,
    csrf: Csrf,
    decision: Annotated[Literal["approve", "reject", "return"], Form()],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    check_csrf(request, csrf)
    airlock.review(hub_of(request), who, request_id, decision, comment=comment)
    return _see(f"/airlock/{request_id}")


@router.get("/airlock/{request_id}/released/{name:path}")
def released_file(request: Request, who: Viewer, request_id: Id, name: str) -> Response:
    files = airlock.released_files(hub_of(request), who, request_id)
    if name not in files:
        raise NotFound(
            f"export request {request_id} released no file {name!r}",
            hint=f"its files: {', '.join(files) or 'none'}",
        )
    return Response(
        files[name],
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{_ascii(name)}"'},
    )


# --- Migrations -----------------------------------------------------------------------


@router.get("/migrations")
def migrations_page(request: Request, who: Viewer) -> HTMLResponse:
    found = migrations.list_migrations(hub_of(request), who)
    return render(request, "migrations.html", who=who, migrations=found)


def _progress(request: Request, who: Any, migration_id: Id) -> dict[str, Any]:
    hub = hub_of(request)
    info = migrations.migration_info(hub, who, migration_id)
    copied = info.states.get("copied", 0)
    series = migrations.throughput(hub, who, migration_id)
    chart = None
    if series:
        chart = bars(
            [(s["start"][11:19], s["bytes_per_s"] / 1e6, False) for s in series],
            label="MB/s",
            unit="MB/s",
            number=lambda value: format_number(round(value, 2), language(request)),
        )
    # Poll fast while copying, slowly while a run may yet start or resume.
    poll = 2 if info.status == "running" or info.workers else None
    if poll is None and info.status in ("planned", "incomplete", "partly cut over"):
        poll = 5
    return {
        "info": info,
        "copied": copied,
        "series": series,
        "chart": chart,
        "share": copied / info.objects if info.objects else 1.0,
        "poll": poll,
    }


@router.get("/migrations/{migration_id}")
def migration_page(request: Request, who: Viewer, migration_id: Id) -> HTMLResponse:
    template = "migration_progress.html" if htmx(request) else "migration.html"
    return render(
        request, template, who=who, verified=None, **_progress(request, who, migration_id)
    )


@router.post("/migrations/{migration_id}/verify")
def verify_migration(request: Request, who: Viewer, migration_id: Id, csrf: Csrf) -> HTMLResponse:
    check_csrf(request, csrf)
    checked = migrations.verify_migration(hub_of(request), who, migration_id)
    if htmx(request):
        return render(request, "migration_verified.html", who=who, verified=checked)
    return render(
        request,
        "migration.html",
        who=who,
        verified=checked,
        **_progress(request, who, migration_id),
    )


@router.post("/migrations/{migration_id}/report")
def migration_report(request: Request, who: Viewer, migration_id: Id, csrf: Csrf) -> HTMLResponse:
    """Make the report: it verifies the target first (and is audited), so it is asked
    with a form, not a link."""
    check_csrf(request, csrf)
    hub = hub_of(request)
    made = reports.migration_report(hub, who, migration_id)
    checked = reports.check_report(made, public_key=reports.hub_public_key(hub))
    return render(request, "migration_report.html", who=who, report=made, checked=checked)


# --- Audit ----------------------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request,
    who: Viewer,
    actor: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(max_length=200)] = "",
    object: Annotated[str, Query(max_length=400)] = "",
    outcome: Annotated[str, Query(max_length=20)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    hub = hub_of(request)
    authz.check(hub, who, "audit.read")
    filters = audit.EventFilter.parse(actor=actor, action=action, object_=object,
                                      outcome=outcome, since=since, until=until)  # fmt: skip
    with hub.read() as session:
        found = [
            _event(e)
            for e in audit.list_events(session, filters, limit=PAGE * 2, before_seq=before)
        ]
    earliest = min((e["seq"] for e in found), default=None)
    earlier = None
    if len(found) == PAGE * 2 and earliest is not None and earliest > 1:
        earlier = "?" + urlencode(
            {
                k: v
                for k, v in (
                    ("actor", actor),
                    ("action", action),
                    ("object", object),
                    ("outcome", outcome),
                    ("since", since),
                    ("until", until),
                    ("before", earliest),
                )
                if v
            }
        )
    return render(
        request,
        "audit.html",
        who=who,
        events=list(reversed(found)),
        earlier=earlier,
        filters={
            "actor": actor,
            "action": action,
            "object": object,
            "outcome": outcome,
            "since": since,
            "until": until,
        },
        outcomes=audit.chain.OUTCOMES,
        report=None,
    )


@router.post("/audit/verify")
def verify_chain(request: Request, who: Viewer, csrf: Csrf) -> HTMLResponse:
    check_csrf(request, csrf)
    hub = hub_of(request)
    authz.check(hub, who, "audit.read")
    with hub.snapshot() as session:
        report = audit.verify_chain(session, hub.witness)
    if htmx(request):
        return render(request, "audit_verified.html", who=who, report=report)
    return render(
        request,
        "audit.html",
        who=who,
        events=[],
        earlier=None,
        report=report,
        filters={
            "actor": "",
            "action": "",
            "object": "",
            "outcome": "",
            "since": "",
            "until": "",
        },
        outcomes=audit.chain.OUTCOMES,
    )


# --- Locations and policy -------------------------------------------------------------


@router.get("/locations")
def locations_page(request: Request, who: Viewer) -> HTMLResponse:
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.read() as session:
        found = [describe_location(loc) for loc in list_locations(session)]
        rules = [policy.describe_rule(r) for r in policy.list_rules(session)]
        placements = policy.placement_table(session)
    return render(
        request, "locations.html", who=who, locations=found, rules=rules, placements=placements
    )
