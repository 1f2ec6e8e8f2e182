"""The airlock: nothing leaves a project but checked, reviewed results.

A project member asks to export files that its jobs wrote (``request_export``). The
hub refuses, before anything is recorded, a file that is not what its name says, a
type that can hide data (SVG and anything not CSV, Parquet, PNG or text), a file over
the size limit, a table holding identifiers or pseudonyms, and a table without a
declaration that looks like row-level data. The other files are copied into the
airlock's area (encrypted) and checked:

- a table saved with ``ws.crosstab`` / ``ws.pivot_table`` carries its evidence: its
  cells are checked again with the hub's thresholds (``hdh.airlock.sdc``), failing
  cells and the cells that would let them be recovered from totals are marked for
  suppression; and its cells are compared with the cells already released from the
  same datasets (the ledger): two counts of the same cell that differ by fewer people
  than the threshold isolate those people, and the file fails (differencing);
- figures, text and small undeclared tables are left to the reviewer's judgement.

Reviewers other than the requester then approve, reject or return the request (the
hub can require two approvals). On the last approval the request is released: tables
leave with their suppressed cells blank (and rounded if the hub says so), every file's
SHA-256 and the reviews are kept as the release record, and the released cells enter
the ledger. The project's lead downloads released files. Each step is a transition of
``TRANSITIONS``, audited in its transaction.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from hdh import audit, authz
from hdh.airlock import sdc
from hdh.airlock.models import ExportFile, ExportRequest, ExportReview, ReleasedCell
from hdh.crypto.envelope import TamperedObject
from hdh.errors import Conflict, HubError, InvalidInput, NotFound, PermissionDenied
from hdh.governance.models import Job, Project
from hdh.governance.projects import _project, check_in_project, context, project_name
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.ingest.detect import scan
from hdh.storage.objects import delete_object, read_object, write_object
from hdh.workspace import DECLARATION_SUFFIX

STATUSES = ("submitted", "checked", "approved", "rejected", "returned", "released")
#: action -> (from, to, who): "member" (of the project), "reviewer", "hub" (done by the
#: hub itself as the consequence of another step).
TRANSITIONS: dict[str, tuple[str, str, str]] = {
    "check": ("submitted", "checked", "hub"),
    "approve": ("checked", "approved", "reviewer"),
    "reject": ("checked", "rejected", "reviewer"),
    "return": ("checked", "returned", "reviewer"),
    "release": ("approved", "released", "hub"),
}
TERMINAL = ("rejected", "returned", "released")

ALLOWED = {".csv": "table", ".parquet": "table", ".png": "figure", ".txt": "text", ".md": "text"}
#: The statistical evidence ``hdh.workspace`` writes beside a table (``NAME.sdc.json``).
DECLARATION = DECLARATION_SUFFIX
PSEUDONYM = re.compile(r"^[0-9a-f]{32}$", re.IGNORECASE)
PNG_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"eXIf"}


def chosen_on_its_own(output: str) -> bool:
    """Whether a job's output is one a researcher chooses for export: a table's
    declaration is not, it travels with its table."""
    return not output.endswith(DECLARATION)


ID_COLUMNS = re.compile(r"(^|_)(person|patient|subject|pseudonym|pid)(_?id)?$")


class ExportRefused(InvalidInput):
    """A file cannot be exported at all (wrong type, identifiers, row-level data…)."""

    code = "export_refused"


@dataclass
class FileInfo:
    name: str
    source: str
    kind: str
    size: int
    sha256: str
    verdict: str
    report: dict[str, Any]
    comments: list[dict[str, Any]]
    released_sha256: str | None


@dataclass
class RequestInfo:
    id: int
    project: str
    status: str
    note: str
    requested_by: str
    requested_at: str
    datasets: list[str]
    thresholds: dict[str, Any]
    files: list[FileInfo]
    reviews: list[dict[str, Any]]
    released_at: str | None


def _thresholds(hub: Hub) -> sdc.Thresholds:
    a = hub.settings.airlock
    return sdc.Thresholds(
        safe_threshold=a.safe_threshold, safe_dof_threshold=a.safe_dof_threshold,
        nk_n=a.nk_n, nk_k=a.nk_k, p_ratio=a.p_ratio,
        zeros_are_disclosive=a.zeros_are_disclosive, round_base=a.round_base,
    )  # fmt: skip


# --- Reading what is asked for -------------------------------------------------------


@dataclass
class _Candidate:
    name: str
    source: str
    data: bytes
    declaration: dict[str, Any] | None
    datasets: list[str]
    location: str


def _gather(hub: Hub, project: str, wanted: list[str]) -> list[_Candidate]:
    """The files named ``JOB/NAME`` (outputs of the project's succeeded jobs)."""
    found: list[_Candidate] = []
    for ref in wanted:
        job_part, _, name = ref.partition("/")
        if not job_part.isdigit() or not name:
            raise InvalidInput(
                f"{ref!r} does not name a job's output",
                hint="give JOB/NAME, e.g. 3/tables/counts.csv (see hdh job outputs JOB)",
            )
        with hub.read() as session:
            job = session.get(Job, int(job_part))
            owner = _project(session, project)
            if job is None or job.project_id != owner.id:
                raise NotFound(
                    f"project {project!r} has no job {job_part}", hint="see hdh job list"
                )
            outputs = {o["name"]: o for o in job.outputs}
            status, location, datasets = job.status, job.location, list(job.datasets)
        if status != "succeeded":
            raise InvalidInput(
                f"job {job_part} {status}: only a succeeded job's outputs can be exported",
                hint="run the job again",
            )
        if not chosen_on_its_own(name):
            continue
        if name not in outputs or location is None:
            raise NotFound(
                f"job {job_part} has no output {name!r}",
                hint=f"its outputs: {', '.join(sorted(outputs)) or 'none'}",
            )

        def read(output: str, location: str = location, outputs: Any = outputs) -> bytes:
            key = outputs[output]["key"]
            return b"".join(bytes(c) for c in read_object(hub, location, key))

        declaration = None
        if name + DECLARATION in outputs:
            try:
                declaration = json.loads(read(name + DECLARATION))
            except ValueError:
                declaration = {"invalid": True}
        found.append(
            _Candidate(name, f"job {job_part}: {name}", read(name), declaration, datasets, location)
        )
    if not found:
        raise InvalidInput("no file to export", hint="give one or more JOB/NAME")
    names = [item.name for item in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(
            f"two files named {', '.join(twice)}: names must differ within a request",
            hint="export them in separate requests, or save them under other names",
        )
    return found


def _refusals(hub: Hub, item: _Candidate) -> tuple[str, list[str], pd.DataFrame | None]:
    """The file's kind, why it cannot leave at all (empty when it may be checked), and
    its rows when it is a table."""
    limits = hub.settings.airlock
    suffix = Path(item.name).suffix.lower()
    kind = ALLOWED.get(suffix)
    if kind is None:
        why = (
            "SVG files can embed data and scripts: export figures as PNG"
            if suffix == ".svg"
            else f"{suffix or 'a file without extension'} files cannot be exported: "
            "use CSV or Parquet for tables, PNG for figures, .txt or .md for text"
        )
        return "other", [why], None
    if len(item.data) > limits.max_file_mb << 20:
        size = len(item.data) / 2**20
        return kind, [f"it is {size:.1f} MiB, over the limit of {limits.max_file_mb} MiB"], None
    frame = None
    if suffix == ".csv":
        frame, problem = _read_csv(item.data)
        if problem:
            return kind, [f"it claims to be CSV but is not: {problem}"], None
    elif suffix == ".parquet":
        if not (item.data[:4] == b"PAR1" and item.data[-4:] == b"PAR1"):
            return kind, ["it claims to be Parquet but is not (no PAR1 markers)"], None
        import pyarrow.parquet as pq

        try:
            frame = pq.read_table(pa.BufferReader(item.data)).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            return kind, [f"it claims to be Parquet but cannot be read ({exc})"], None
    elif suffix == ".png":
        problem = _png_problem(item.data)
        if problem:
            return kind, [problem], None
    else:
        try:
            text = item.data.decode("utf-8")
        except UnicodeDecodeError:
            return kind, ["it claims to be text but is not UTF-8"], None
        if "\x00" in text:
            return kind, ["it claims to be text but holds binary data"], None
        hits = sorted(set(re.findall(r"(?i)\b[0-9a-f]{32}\b", text)))
        if hits:
            return kind, [f"it holds {len(hits)} pseudonym(s): identifiers cannot leave"], None
        if item.declaration is not None and item.declaration.get("kind") == "model":
            kind = "model"
    if frame is None:
        if item.declaration is not None and kind in ("text", "model"):
            problems = _declaration_problems(item.declaration, item.name, item.data)
            if not problems:
                kind = "model"
            return kind, problems, None
        if item.declaration is not None:
            return kind, ["only tables (.csv) and model summaries (.txt) carry a declaration"], None
        return kind, [], None
    problems = _identifiers(frame)
    if item.declaration is None and len(frame) > limits.max_undeclared_rows:
        problems.append(
            f"it has {len(frame)} rows and no declaration: it looks like row-level data; "
            "export aggregates made with ws.crosstab or ws.pivot_table"
        )
    if item.declaration is not None:
        declared = _declaration_problems(item.declaration, item.name, item.data)
        problems += declared
        if not declared:
            kind = str(item.declaration["kind"])
    return kind, problems, frame


def _png_problem(data: bytes) -> str:
    """Why a PNG cannot leave: not a PNG, text or metadata chunks, bytes after the end."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "it claims to be PNG but is not"
    position = 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunk = data[position + 4 : position + 8]
        position += 12 + length
        if position > len(data):
            return "it claims to be PNG but is cut short"
        if chunk in PNG_TEXT_CHUNKS:
            return (
                f"it holds a {chunk.decode()} chunk (text metadata can carry data): "
                "save the figure without metadata"
            )
        if chunk == b"IEND":
            if position != len(data):
                return "it has bytes after its end (they can carry data): save it again"
            return ""
    return "it claims to be PNG but has no end"


def _declaration_problems(declaration: Any, name: str, data: bytes) -> list[str]:
    """Why a declaration (``.sdc.json``) does not describe its file. It is written inside
    the project, so it is checked against the file rather than believed."""
    if not isinstance(declaration, dict) or declaration.get("format") != "hdh-sdc/1":
        return ["its declaration (.sdc.json) is not one hdh.workspace wrote"]
    kind = declaration.get("kind")
    if kind == "model":
        if not name.endswith(".txt"):
            return ["a model declaration belongs to a .txt summary (ws.model_summary)"]
        dof = declaration.get("residual_dof")
        if isinstance(dof, bool) or not isinstance(dof, int | float):
            return ["its declaration has no residual degrees of freedom"]
        return []
    if kind not in ("frequency", "magnitude") or not name.endswith(".csv"):
        return ["its declaration does not describe a table saved by ws.crosstab"]
    try:
        rows, cols = declaration["rows"], declaration["columns"]
        index, by = list(declaration["index"]), list(declaration["columns_by"])
        aggfunc = declaration["aggfunc"]
        count = pd.DataFrame(declaration["count"], dtype=float)
        stats = {k: pd.DataFrame(v, dtype=float) for k, v in declaration.get("stats", {}).items()}
    except (KeyError, TypeError, ValueError):
        return ["its declaration is incomplete (rows, columns, index, aggfunc, count)"]
    if aggfunc not in sdc.AGGFUNCS or (aggfunc == "count") != (kind == "frequency"):
        return [f"its declaration's statistic {aggfunc!r} does not fit a {kind} table"]
    shape = (len(rows), len(cols))
    if count.shape != shape or any(v.shape != shape for v in stats.values()):
        return ["its declaration's cells do not match its rows and columns"]
    if aggfunc in ("sum", "mean") and set(stats) != set(sdc.DOMINANCE_STATS):
        return ["its declaration lacks the statistics of its cells' values"]
    if (count < 0).to_numpy().any():
        return ["its declaration counts fewer than no one in a cell"]
    try:
        table = pd.read_csv(
            io.BytesIO(data),
            index_col=list(range(len(index))),
            header=list(range(len(by))) if len(by) > 1 else 0,
        )
    except (ValueError, IndexError) as exc:
        return [f"it does not read as the table its declaration describes ({exc})"]
    labels = [_plain_label(r) for r in table.index], [_plain_label(c) for c in table.columns]
    if labels != ([_plain_label(r) for r in rows], [_plain_label(c) for c in cols]):
        return ["its rows or columns are not the ones its declaration lists"]
    values = table.to_numpy(dtype=float, na_value=float("nan"))
    expected = None
    if aggfunc == "count":
        expected = count.to_numpy()
    elif aggfunc == "sum":
        expected = stats["sum"].to_numpy()
    elif aggfunc == "mean":
        expected = (stats["sum"] / count.where(count > 0)).to_numpy()
    if expected is not None:
        import numpy as np

        if not np.allclose(values, expected, rtol=1e-6, atol=1e-6, equal_nan=True):
            return [f"its cells are not the {aggfunc} its declaration's evidence gives"]
    return []


def _plain_label(label: Any) -> Any:
    """A row or column label as text, as it reads back from CSV (an empty part of a
    totals label reads as NaN or "Unnamed: …")."""

    def part(value: Any) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return ""
        text = str(value)
        return "" if text.startswith("Unnamed: ") else text

    if isinstance(label, tuple | list):
        return [part(x) for x in label]
    return part(label)


def _read_csv(data: bytes) -> tuple[pd.DataFrame | None, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    if "\x00" in text:
        return None, "it holds binary data"
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return None, "it is empty"
    widths = {len(r) for r in rows if r}
    if len(widths) != 1:
        return None, f"its rows have {len(widths)} different numbers of fields"
    return pd.read_csv(io.StringIO(text)), ""


def _identifiers(frame: pd.DataFrame) -> list[str]:
    problems = []
    text = frame.reset_index(drop=True).astype(str)
    text.columns = [str(c) for c in text.columns]
    for finding in scan(pa.RecordBatch.from_pandas(text, preserve_index=False)):
        if finding.kind == "identifier":
            problems.append(
                f"column {finding.column!r} looks like an identifier ({finding.reason})"
            )
    for column in frame.columns:
        if PSEUDONYM.match(str(column).strip()):
            problems.append("a column is named by a pseudonym: identifiers cannot leave")
            continue
        name = re.sub(r"[^a-z0-9]+", "_", str(column).lower()).strip("_")
        values = frame[column].astype(str)
        if values.map(lambda v: bool(PSEUDONYM.match(v.strip()))).any():
            problems.append(f"column {column!r} holds pseudonyms: identifiers cannot leave")
        elif ID_COLUMNS.search(name):
            problems.append(f"column {column!r} looks like a person identifier")
    return problems


# --- Checking a declared table ------------------------------------------------------


def _evidence(declaration: dict[str, Any]) -> tuple[sdc.Evidence, pd.DataFrame]:
    rows = [tuple(r) if isinstance(r, list) else r for r in declaration["rows"]]
    cols = [tuple(c) if isinstance(c, list) else c for c in declaration["columns"]]

    def frame(values: list[list[float]]) -> pd.DataFrame:
        return pd.DataFrame(values, index=rows, columns=cols, dtype=float)

    count = frame(declaration["count"])
    found = sdc.Evidence(
        declaration.get("aggfunc", "count"),
        count,
        {k: frame(v) for k, v in declaration.get("stats", {}).items()},
        margins_name="All" if declaration.get("margins") else None,
    )
    return found, count


def _shape(declaration: dict[str, Any]) -> str:
    return " | ".join(
        [
            ",".join(declaration.get("index", [])),
            ",".join(declaration.get("columns_by", [])),
            str(declaration.get("aggfunc")),
            str(declaration.get("values") or ""),
        ]
    )


def _check_table(
    hub: Hub,
    declaration: dict[str, Any],
    datasets: list[str],
    siblings: list[dict[str, Any]],
) -> tuple[str, dict[str, Any]]:
    """Check a declared table with the hub's thresholds, and against the ledger and the
    tables already checked in the same request (``siblings``: their reports)."""
    limits = _thresholds(hub)
    found, count = _evidence(declaration)
    reasons = sdc.assess(found, limits)
    margins = "All" if declaration.get("margins") else None
    _, hidden = sdc.suppress(count, reasons, margins_name=margins)
    shape = _shape(declaration)
    cells = [
        [_cell_key(r, c), int(count.at[r, c])]
        for r in count.index
        for c in count.columns
        if not hidden.at[r, c]
    ]
    others = _ledger(hub, shape, datasets) + [
        (key, people, None, sibling["file"])
        for sibling in siblings
        if sibling.get("shape") == shape
        for key, people in sibling["count_cells"]
    ]
    report: dict[str, Any] = {
        "rows": declaration["rows"],
        "columns": declaration["columns"],
        "index_levels": max(1, len(declaration.get("index", []))),
        "column_levels": max(1, len(declaration.get("columns_by", []))),
        "cells": reasons.to_numpy().tolist(),
        "hidden": hidden.to_numpy().tolist(),
        "failed": int(reasons.map(bool).to_numpy().sum()),
        "suppressed": int(hidden.to_numpy().sum()),
        "differencing": _compare(cells, others, limits),
        "shape": shape,
        # What the ledger keeps once released: the visible cells' people.
        "count_cells": cells,
    }
    if report["differencing"]:
        return "fail", report
    return ("suppressed" if report["suppressed"] else "pass"), report


def _ledger(hub: Hub, shape: str, datasets: list[str]) -> list[tuple[str, int, Any, str]]:
    """Released cells of tables of this shape computed from overlapping datasets."""
    with hub.read() as session:
        return [
            (c.cell, c.people, c.request_id, c.file_name)
            for c in session.scalars(select(ReleasedCell).where(ReleasedCell.shape == shape))
            if set(c.datasets) & set(datasets)
        ]


def _compare(
    cells: list[list[Any]], others: list[tuple[str, int, Any, str]], limits: sdc.Thresholds
) -> list[dict[str, Any]]:
    """Cells whose count differs from the same cell of another table (released, or in
    the same request) by 1 to threshold - 1 people: the difference isolates them."""
    mine = {str(key): int(people) for key, people in cells}
    findings = []
    for key, people, request_id, file_name in others:
        if key in mine and 0 < abs(mine[key] - people) < limits.safe_threshold:
            findings.append(
                {
                    "cell": json.loads(key),
                    "people": mine[key],
                    "released": people,
                    "request": request_id,
                    "file": file_name,
                }
            )
    return findings


def _check_model(hub: Hub, declaration: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A model's output: enough residual degrees of freedom, or it is a lookup table."""
    threshold = hub.settings.airlock.safe_dof_threshold
    dof = float(declaration.get("residual_dof", -1))
    report = {"residual_dof": dof, "threshold": threshold, "failed": int(dof < threshold)}
    return ("fail" if dof < threshold else "pass"), report


def _cell_key(row: Any, column: Any) -> str:
    return json.dumps([_plain_label(row), _plain_label(column)])


# --- The steps ------------------------------------------------------------------------


def request_export(
    hub: Hub, principal: Principal, project: str, files: list[str], *, note: str = ""
) -> RequestInfo:
    """Ask to export ``files`` (``JOB/NAME``) of ``project``; refused (audited) when a file
    cannot leave at all, else recorded, copied and checked."""
    check_in_project(hub, principal, project, "airlock.request")
    with hub.read() as session:
        status = _project(session, project).status
    if status != "active":
        raise PermissionDenied(
            f"project {project!r} is {status}, not active", hint="export from an active project"
        )
    candidates = _gather(hub, project, files)
    checked: list[tuple[_Candidate, str, pd.DataFrame | None]] = []
    problems: list[str] = []
    for item in candidates:
        kind, refusals, frame = _refusals(hub, item)
        problems += [f"{item.name}: {why}" for why in refusals]
        checked.append((item, kind, frame))
    if problems:
        with hub.transaction() as session:
            audit.record(
                session,
                actor=principal.actor,
                action="airlock.request",
                object_type="project",
                object_id=project,
                outcome="denied",
                details={"files": files, "refused": problems},
            )
        raise ExportRefused(
            "the export is refused: " + "; ".join(problems),
            hint="nothing was recorded; export aggregates without identifiers",
        )
    datasets = sorted({d for item in candidates for d in item.datasets})
    location = candidates[0].location
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        owner = _project(session, project)
        request = ExportRequest(
            project_id=owner.id, status="submitted", note=note, requested_by=principal.actor,
            requested_at=now, location=location, thresholds=_thresholds(hub).as_dict(),
            datasets=datasets,
        )  # fmt: skip
        session.add(request)
        session.flush()
        request_id = request.id
        audit.record(
            session,
            actor=principal.actor,
            action="airlock.request",
            object_type="export_request",
            object_id=str(request_id),
            details={"project": project, "files": [c.name for c in candidates], "note": note},
        )
    rows: list[ExportFile] = []
    siblings: list[dict[str, Any]] = []
    for item, kind, _ in checked:
        key = f"airlock/{project}/{request_id}/files/{item.name}"
        write_object(hub, location, key, [item.data], actor=principal.actor)
        if item.declaration is not None and item.declaration.get("kind") == "model":
            verdict, report = _check_model(hub, item.declaration)
        elif item.declaration is not None:
            verdict, report = _check_table(hub, item.declaration, item.datasets, siblings)
            siblings.append({**report, "file": item.name})
        else:
            verdict, report = "review", {"note": "a reviewer must judge this file"}
        rows.append(
            ExportFile(
                request_id=request_id, name=item.name, source=item.source, kind=kind,
                size=len(item.data), sha256=hashlib.sha256(item.data).hexdigest(), key=key,
                verdict=verdict, report=report, comments=[],
            )
        )  # fmt: skip
    with hub.transaction() as session:
        for row in rows:
            session.add(row)
        _move(session, request_id, "check", principal.actor, {
            "verdicts": {r.name: r.verdict for r in rows},
        })  # fmt: skip
    return show_request(hub, principal, request_id)


def _move(session: Any, request_id: int, action: str, actor: str, details: dict[str, Any]) -> None:
    request = session.get(ExportRequest, request_id)
    source, target, _ = TRANSITIONS[action]
    if request.status != source:
        raise Conflict(
            f"export request {request_id} is {request.status}; {action} needs it {source}",
            hint="see hdh airlock show ID",
        )
    request.status = target
    audit.record(
        session,
        actor=actor,
        action=f"airlock.{action}",
        object_type="export_request",
        object_id=str(request_id),
        details={"from": source, "to": target, **details},
    )


def review(
    hub: Hub,
    principal: Principal,
    request_id: int,
    decision: str,
    *,
    comment: str = "",
    file_comments: dict[str, str] | None = None,
) -> RequestInfo:
    """A reviewer's ``decision`` (approve, reject, return) on a checked request."""
    if decision not in ("approve", "reject", "return"):
        raise InvalidInput(f"decision {decision!r} is not known", hint="approve, reject or return")
    authz.check(hub, principal, "airlock.review")
    with hub.read() as session:
        request = _get(session, request_id)
        requester, status = request.requested_by, request.status
        files = {f.name: f.verdict for f in _files(session, request_id)}
        approvers = {
            r.reviewer
            for r in session.scalars(
                select(ExportReview).where(
                    ExportReview.request_id == request_id, ExportReview.decision == "approve"
                )
            )
        }
    if principal.actor == requester:
        with hub.transaction() as session:
            audit.record(
                session,
                actor=principal.actor,
                action="authz.denied",
                object_type="export_request",
                object_id=str(request_id),
                outcome="denied",
                details={"action": "airlock.review", "reason": "own request"},
            )
        raise PermissionDenied(
            f"{principal.name} made export request {request_id} and cannot review it",
            hint="another reviewer must review it",
        )
    if status != "checked":
        raise Conflict(
            f"export request {request_id} is {status}, not checked",
            hint="only checked requests are reviewed",
        )
    if decision in ("reject", "return") and not comment.strip():
        raise InvalidInput(
            f"a decision to {decision} needs a comment", hint="say why, with --comment"
        )
    unknown = set(file_comments or {}) - set(files)
    if unknown:
        raise InvalidInput(
            f"request {request_id} has no file {', '.join(sorted(unknown))}",
            hint=f"its files: {', '.join(sorted(files))}",
        )
    failing = sorted(name for name, verdict in files.items() if verdict == "fail")
    if decision == "approve" and failing:
        raise Conflict(
            f"{', '.join(failing)} failed a check (differencing with an earlier release, "
            "or a model with too few residual degrees of freedom)",
            hint="return or reject the request",
        )
    if decision == "approve" and principal.actor in approvers:
        raise Conflict(
            f"{principal.name} already approved request {request_id}",
            hint="another reviewer must approve it",
        )
    now = audit.utc_timestamp()
    needed = hub.settings.airlock.approvals
    final = decision == "approve" and len(approvers) + 1 >= needed
    release: _Release | None = None
    if final:
        _recheck_differencing(hub, request_id)
        release = _prepare_release(hub, principal, request_id)
    try:
        with hub.transaction() as session:
            session.add(
                ExportReview(
                    request_id=request_id, reviewer=principal.actor, decision=decision,
                    comment=comment, reviewed_at=now,
                )
            )  # fmt: skip
            for row in _files(session, request_id):
                if row.name in (file_comments or {}):
                    text = (file_comments or {})[row.name]
                    row.comments = [*row.comments, {"by": principal.actor, "at": now, "text": text}]
            audit.record(
                session,
                actor=principal.actor,
                action="airlock.review",
                object_type="export_request",
                object_id=str(request_id),
                details={"decision": decision, "comment": comment},
            )
            if decision != "approve":
                _move(session, request_id, decision, principal.actor, {"comment": comment})
            elif release is not None:
                # Approval and release are one transaction: a request is never left
                # approved without its released files.
                _move(session, request_id, "approve", principal.actor, {"approvals": needed})
                for row in _files(session, request_id):
                    row.released_key, row.released_sha256 = release.files[row.id]
                for cell in release.cells:
                    session.add(cell)
                _get(session, request_id).released_at = audit.utc_timestamp()
                _move(session, request_id, "release", principal.actor, {"files": release.digests})
    except BaseException:
        if release is not None:
            _forget(hub, release.location, release.written, principal.actor)
        raise
    return show_request(hub, principal, request_id)


def _forget(hub: Hub, location: str, keys: list[str], actor: str) -> None:
    for key in keys:
        with contextlib.suppress(HubError):
            delete_object(hub, location, key, actor=actor)


def _recheck_differencing(hub: Hub, request_id: int) -> None:
    """Compare the request's tables with the ledger again at the last approval: another
    request may have been released since they were checked."""
    limits = _thresholds(hub)
    failing = []
    with hub.transaction() as session:
        request = _get(session, request_id)
        datasets = list(request.datasets)
        for row in _files(session, request_id):
            report = row.report
            if "count_cells" not in report:
                continue
            found = _compare(report["count_cells"], _ledger(hub, report["shape"], datasets), limits)
            if found:
                row.report = {**report, "differencing": found}
                row.verdict = "fail"
                failing.append(row.name)
    if failing:
        raise Conflict(
            f"{', '.join(failing)} now differ from a release made since they were checked",
            hint="return or reject the request",
        )


@dataclass
class _Release:
    location: str
    files: dict[int, tuple[str, str]]  # file id -> (released key, SHA-256)
    digests: dict[str, str]
    cells: list[ReleasedCell]
    written: list[str]


def _prepare_release(hub: Hub, principal: Principal, request_id: int) -> _Release:
    """Write the released copies (tables with their hidden cells blank), before the
    transaction that records them."""
    with hub.read() as session:
        request = _get(session, request_id)
        project = project_name(session, request.project_id)
        location, datasets = request.location, list(request.datasets)
        files = [(f.id, f.name, f.key, dict(f.report), f.kind) for f in _files(session, request_id)]
    base = hub.settings.airlock.round_base
    release = _Release(location, {}, {}, [], [])
    try:
        for file_id, name, key, report, kind in files:
            data = b"".join(bytes(c) for c in read_object(hub, location, key))
            if "hidden" in report:
                data = _safe_csv(data, report, base if kind == "frequency" else 0)
                release.cells += [
                    ReleasedCell(
                        request_id=request_id, file_name=name, shape=report["shape"],
                        cell=cell, people=people, datasets=datasets,
                    )
                    for cell, people in report["count_cells"]
                ]  # fmt: skip
            elif name.endswith(".parquet"):
                data = _without_metadata(data)
            out_key = f"releases/{project}/{request_id}/{name}"
            write_object(hub, location, out_key, [data], actor=principal.actor)
            release.written.append(out_key)
            digest = hashlib.sha256(data).hexdigest()
            release.files[file_id] = (out_key, digest)
            release.digests[name] = digest
    except BaseException:
        _forget(hub, location, release.written, principal.actor)
        raise
    return release


def _without_metadata(data: bytes) -> bytes:
    """A Parquet file rewritten without its key-value metadata (which can carry data)."""
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data)).replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def read_checked_table(data: bytes, report: dict[str, Any]) -> pd.DataFrame:
    """A checked table's CSV laid out as its check saw it: row labels as the index (one
    level per grouping) and column labels as the columns, so that cell ``[i][j]`` of the
    report's ``cells`` and ``hidden`` is cell ``[i][j]`` of the frame."""
    levels, header = report.get("index_levels", 1), report.get("column_levels", 1)
    return pd.read_csv(
        io.BytesIO(data),
        index_col=list(range(levels)),
        header=list(range(header)) if header > 1 else 0,
    )


def _safe_csv(data: bytes, report: dict[str, Any], base: int) -> bytes:
    """The table with its hidden cells blank, and rounded to ``base`` when given."""
    table = read_checked_table(data, report)
    hidden = pd.DataFrame(report["hidden"], index=table.index, columns=table.columns)
    safe = table.astype(float).mask(hidden.astype(bool))
    if base:
        safe = (safe / base).round() * base
    out = io.StringIO()
    safe.to_csv(out)
    return out.getvalue().encode("utf-8")


# --- Reading ------------------------------------------------------------------------


def _get(session: Any, request_id: int) -> ExportRequest:
    request = session.get(ExportRequest, request_id)
    if request is None:
        raise NotFound(f"there is no export request {request_id}", hint="see hdh airlock list")
    return request  # type: ignore[no-any-return]


def _files(session: Any, request_id: int) -> list[ExportFile]:
    return list(
        session.scalars(
            select(ExportFile).where(ExportFile.request_id == request_id).order_by(ExportFile.id)
        )
    )


def show_request(hub: Hub, principal: Principal, request_id: int) -> RequestInfo:
    with hub.read() as session:
        request = _get(session, request_id)
        project = project_name(session, request.project_id)
    check_in_project(hub, principal, project, "airlock.read")
    with hub.read() as session:
        return _request_info(session, _get(session, request_id), project)


def _request_info(session: Session, request: ExportRequest, project: str) -> RequestInfo:
    return RequestInfo(
        request.id, project, request.status, request.note, request.requested_by,
        request.requested_at, list(request.datasets), dict(request.thresholds),
        [
            FileInfo(
                f.name, f.source, f.kind, f.size, f.sha256, f.verdict, dict(f.report),
                list(f.comments), f.released_sha256,
            )
            for f in _files(session, request.id)
        ],
        [
            {"reviewer": r.reviewer, "decision": r.decision, "comment": r.comment,
             "at": r.reviewed_at}
            for r in session.scalars(
                select(ExportReview)
                .where(ExportReview.request_id == request.id)
                .order_by(ExportReview.id)
            )
        ],
        request.released_at,
    )  # fmt: skip


def read_file(hub: Hub, principal: Principal, request_id: int, name: str) -> bytes:
    """A file of a request as it was asked for (the copy the checks ran on), for its
    reviewers and the project's members."""
    with hub.read() as session:
        request = _get(session, request_id)
        project = project_name(session, request.project_id)
        location = request.location
        found = {f.name: f.key for f in _files(session, request_id)}
    check_in_project(hub, principal, project, "airlock.read")
    if name not in found:
        raise NotFound(
            f"export request {request_id} has no file {name!r}",
            hint=f"its files: {', '.join(sorted(found))}",
        )
    return b"".join(bytes(c) for c in read_object(hub, location, found[name]))


def list_requests(
    hub: Hub, principal: Principal, *, project: str | None = None, status: str | None = None
) -> list[RequestInfo]:
    """Requests the principal may see (reviewers, admins, auditors: all; members: their
    projects'), oldest first."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status {status!r} is not known", hint=", ".join(STATUSES))
    with hub.read() as session:
        query = select(ExportRequest).order_by(ExportRequest.id)
        if status is not None:
            query = query.where(ExportRequest.status == status)
        if project is not None:
            query = query.where(ExportRequest.project_id == _project(session, project).id)
        # Requests of projects the principal may not read are left out, not refused one
        # by one: a list is not an attempt to read each of them.
        allowed: dict[int, str | None] = {}
        seen = []
        for request in session.scalars(query):
            if request.project_id not in allowed:
                owner = session.get(Project, request.project_id)
                assert owner is not None
                where = context(session, principal, owner)
                allowed[owner.id] = (
                    owner.name if authz.can(principal, "airlock.read", where) else None
                )
            if (name := allowed[request.project_id]) is not None:
                seen.append(_request_info(session, request, name))
    return seen


def released_files(hub: Hub, principal: Principal, request_id: int) -> dict[str, bytes]:
    """A released request's files, each checked against the SHA-256 recorded when it
    left; the project's lead only. Audited as ``airlock.download``."""
    with hub.read() as session:
        request = _get(session, request_id)
        project = project_name(session, request.project_id)
        status, location = request.status, request.location
        files = [(f.name, f.released_key, f.released_sha256) for f in _files(session, request_id)]
    check_in_project(hub, principal, project, "airlock.download")
    if status != "released":
        raise Conflict(
            f"export request {request_id} is {status}, not released",
            hint="only released files can be downloaded",
        )
    found: dict[str, bytes] = {}
    for name, key, digest in files:
        assert key is not None
        data = b"".join(bytes(c) for c in read_object(hub, location, key))
        if hashlib.sha256(data).hexdigest() != digest:
            raise TamperedObject(
                f"released file {key!r} does not match its release record",
                hint="it was altered; the release record keeps the SHA-256 that left",
            )
        found[name] = data
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="airlock.download",
            object_type="export_request",
            object_id=str(request_id),
            details={"files": list(found)},
        )
    return found


def download(hub: Hub, principal: Principal, request_id: int, target: Path) -> list[Path]:
    """Write a released request's files into ``target`` (which must not hold them);
    the project's lead only. Audited."""
    with hub.read() as session:
        names = (
            [f.name for f in _files(session, request_id)]
            if session.get(ExportRequest, request_id)
            else []
        )
    existing = [str(target / n) for n in names if (target / n).exists()]
    if existing:
        raise Conflict(f"{', '.join(existing)} already exist", hint="choose another folder")
    paths = []
    for name, data in released_files(hub, principal, request_id).items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        paths.append(path)
    return paths
