"""The airlock: tables made in a job leave a project only checked, suppressed where
needed, approved by a reviewer other than the requester, and recorded; what must not
leave is refused with its reason; differencing across releases is caught."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from hdh import audit
from hdh.airlock.service import (
    ExportRefused,
    download,
    list_requests,
    request_export,
    review,
    show_request,
)
from hdh.errors import Conflict, PermissionDenied
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, set_member, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest
from hdh.workspace.jobs import job_log, run_job, submit_job
from tests.conftest import SHARED_DATA

NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))
RITA = Principal("rita", frozenset({"researcher", "reviewer"}))
ROB = Principal("rob", frozenset({"reviewer"}))
COLUMNS = ["index", "parents", "has_nurs", "children", "finance", "health", "recommend"]


@pytest.fixture
def airlock_hub(hub: Hub) -> Hub:
    for who in (ALICE, BOB, RITA, ROB):
        add_user(hub, who.name, roles=sorted(who.roles), actor=ADMIN.actor)
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref="ref")
        transition(hub, ADMIN, project, "activate")
        permit = request_permit(hub, who, project, "nursery", columns=COLUMNS)
        decide(hub, ADMIN, permit.id, "grant")
    set_member(hub, ALICE, "cohort-a", "rita", "analyst")
    return hub


def job(hub: Hub, who: Principal, project: str, tmp_path: Path, text: str) -> int:
    script = tmp_path / f"job-{hashlib.sha256(text.encode()).hexdigest()[:8]}.py"
    script.write_text("import hdh.workspace as ws\nimport pandas as pd\n" + text)
    done = run_job(hub, who, submit_job(hub, who, project, script).id)
    assert done.status == "succeeded", job_log(hub, who, done.id)
    return done.id


def events(hub: Hub, prefix: str) -> list[tuple[str, str]]:
    with hub.read() as session:
        found = audit.list_events(session, audit.EventFilter(), limit=500)
    return [(e.action, e.outcome) for e in found if e.action.startswith(prefix)]


def _png(*extra: tuple[bytes, bytes]) -> bytes:
    """A 1x1 grey PNG, with ``extra`` (type, data) chunks before its image data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + b"".join(chunk(k, d) for k, d in extra)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")
    )  # fmt: skip


PNG = _png()


def test_a_table_leaves_checked_suppressed_reviewed_and_recorded(
    airlock_hub: Hub, tmp_path: Path
) -> None:
    number = job(airlock_hub, RITA, "cohort-a", tmp_path, f"""
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame, "recommend", "parents").save("recommend.csv")
ws.output("figure.png").write_bytes({PNG!r})
""")  # fmt: skip
    asked = request_export(
        airlock_hub, RITA, "cohort-a", [f"{number}/recommend.csv", f"{number}/figure.png"],
        note="Table 2 of the paper",
    )  # fmt: skip
    assert asked.status == "checked"
    table, figure = asked.files
    assert (table.kind, table.verdict, figure.verdict) == ("frequency", "suppressed", "review")
    # recommend x parents: 'recommend' holds 0, 0, 2 people; 'very_recom' one 0.
    assert table.report["failed"] == 4
    rows, cols = table.report["rows"], table.report["columns"]
    cells = {
        (r, c): reasons
        for r, line in zip(rows, table.report["cells"], strict=True)
        for c, reasons in zip(cols, line, strict=True)
    }
    assert cells[("recommend", "usual")] == ["threshold", "full"]  # the whole row
    assert cells[("recommend", "great_pret")] == ["threshold", "zero"]
    assert cells[("priority", "usual")] == []
    assert table.report["suppressed"] > table.report["failed"]  # secondary suppression

    # Listing shows each person the requests they may read, and refuses nothing.
    refusals = len(events(airlock_hub, "authz."))
    assert [r.id for r in list_requests(airlock_hub, ROB)] == [asked.id]  # a reviewer
    assert [r.project for r in list_requests(airlock_hub, ALICE)] == ["cohort-a"]
    assert list_requests(airlock_hub, BOB) == []  # another project's lead
    assert len(events(airlock_hub, "authz.")) == refusals

    # Reviewers read the files as they were asked for.
    from hdh.airlock.service import read_file

    assert read_file(airlock_hub, ROB, asked.id, "figure.png") == PNG
    assert read_file(airlock_hub, ROB, asked.id, "recommend.csv").startswith(b"recommend,")
    with pytest.raises(PermissionDenied):
        read_file(airlock_hub, BOB, asked.id, "figure.png")  # another project's lead
    # The requester cannot review it, even as a reviewer; another reviewer can.
    with pytest.raises(PermissionDenied, match="rita made export request 1 and cannot review"):
        review(airlock_hub, RITA, asked.id, "approve")
    with pytest.raises(PermissionDenied):
        review(airlock_hub, ALICE, asked.id, "approve")  # not a reviewer
    done = review(
        airlock_hub, ROB, asked.id, "approve", comment="fine",
        file_comments={"figure.png": "axis labels only, no counts"},
    )  # fmt: skip
    assert done.status == "released"
    assert done.files[1].comments[0]["text"] == "axis labels only, no counts"

    # The lead downloads the released files: hidden cells are blank, the rest intact.
    with pytest.raises(PermissionDenied):
        download(airlock_hub, RITA, asked.id, tmp_path / "out")  # an analyst, not the lead
    paths = download(airlock_hub, ALICE, asked.id, tmp_path / "out")
    released = list(csv.reader(io.StringIO(paths[0].read_text())))
    header, body = released[0], {row[0]: row[1:] for row in released[1:]}
    usual = header.index("usual") - 1
    assert body["recommend"][usual] == ""
    assert body["priority"][usual] == "1924.0"
    for path, info in zip(paths, done.files, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.released_sha256
    with pytest.raises(Conflict, match="already exist"):
        download(airlock_hub, ALICE, asked.id, tmp_path / "out")
    steps = [a for a, _ in events(airlock_hub, "airlock.")]
    assert steps == [
        "airlock.request", "airlock.check", "airlock.review", "airlock.approve",
        "airlock.release", "airlock.download",
    ]  # fmt: skip
    assert ("authz.denied", "denied") in events(airlock_hub, "authz.")


def test_what_must_not_leave_is_refused_with_its_reasons(airlock_hub: Hub, tmp_path: Path) -> None:
    noted, tail = _png((b"tEXt", b"Comment\x00a,b\n1,2")), _png() + b"extra"
    cheat = '{"format": "hdh-sdc/1", "kind": "model", "residual_dof": 99}'
    number = job(airlock_hub, ALICE, "cohort-a", tmp_path, """
frame = ws.table("nursery", as_="pandas")
frame.head(200).to_csv(ws.output("rows.csv"), index=False)
pd.DataFrame({"pid": ["0123456789abcdef0123456789abcdef"], "n": [12]}).to_csv(
    ws.output("ids.csv"), index=False)
ws.output("fake.csv").write_bytes(bytes(range(256)))
ws.output("plot.svg").write_text("<svg><script>alert(1)</script></svg>")
ws.output("big.txt").write_text("x" * (11 * 2**20))
ws.output("cheat.csv").write_text("year,G\\n2010,1\\n")
""" + f"""
ws.output("notes.png").write_bytes({noted!r})
ws.output("tail.png").write_bytes({tail!r})
ws.output("cheat.csv.sdc.json").write_text({cheat!r})
""")  # fmt: skip
    names = ["rows.csv", "ids.csv", "fake.csv", "plot.svg", "big.txt", "notes.png", "tail.png",
             "cheat.csv"]  # fmt: skip
    with pytest.raises(ExportRefused) as refused:
        request_export(airlock_hub, ALICE, "cohort-a", [f"{number}/{n}" for n in names])
    message = str(refused.value)
    assert "rows.csv: it has 200 rows and no declaration: it looks like row-level data" in message
    assert "ids.csv: column 'pid' holds pseudonyms" in message
    assert "fake.csv: it claims to be CSV but is not" in message
    assert "plot.svg: SVG files can embed data and scripts" in message
    assert "big.txt: it is 11.0 MiB, over the limit of 10 MiB" in message
    assert "notes.png: it holds a tEXt chunk (text metadata can carry data)" in message
    assert "tail.png: it has bytes after its end" in message
    assert "cheat.csv: a model declaration belongs to a .txt summary" in message
    assert list_requests(airlock_hub, ROB) == []  # nothing recorded
    assert events(airlock_hub, "airlock.") == [("airlock.request", "denied")]
    with pytest.raises(PermissionDenied):
        request_export(airlock_hub, BOB, "cohort-a", [f"{number}/rows.csv"])  # not a member


def test_differencing_across_releases_is_caught(airlock_hub: Hub, tmp_path: Path) -> None:
    first = job(airlock_hub, ALICE, "cohort-a", tmp_path, """
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame, "health", "finance").save("health.csv")
""")  # fmt: skip
    released = request_export(airlock_hub, ALICE, "cohort-a", [f"{first}/health.csv"])
    assert review(airlock_hub, ROB, released.id, "approve").status == "released"
    # Another project tabulates the same people less three (say, "age >= 19" after
    # "age >= 18"): the difference isolates them.
    second = job(airlock_hub, BOB, "cohort-b", tmp_path, """
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame[frame["index"] >= 3], "health", "finance").save("health.csv")
""")  # fmt: skip
    asked = request_export(airlock_hub, BOB, "cohort-b", [f"{second}/health.csv"])
    [table] = asked.files
    assert table.verdict == "fail"
    found = table.report["differencing"]
    # The three records left out fall in three cells: each differs by one person.
    assert sorted(f["released"] - f["people"] for f in found) == [1, 1, 1]
    assert {f["request"] for f in found} == {released.id}
    with pytest.raises(Conflict, match="failed a check"):
        review(airlock_hub, ROB, asked.id, "approve")
    with pytest.raises(Exception, match="needs a comment"):
        review(airlock_hub, ROB, asked.id, "return")
    back = review(airlock_hub, ROB, asked.id, "return", comment="differs from release 1")
    assert back.status == "returned"
    shown = show_request(airlock_hub, ROB, asked.id)
    assert json.dumps(shown.reviews[0]["comment"]) == '"differs from release 1"'


def test_a_hub_can_require_two_approvals(airlock_hub: Hub, tmp_path: Path) -> None:
    settings = airlock_hub.settings
    hub = Hub.open(
        settings.hub_dir,
        {
            "HDH_AIRLOCK_APPROVALS": "2",
            "HDH_DATABASE_URL": settings.database_url.get_secret_value(),
        },
    )
    ruth = Principal("ruth", frozenset({"reviewer"}))
    add_user(hub, "ruth", roles=["reviewer"], actor=ADMIN.actor)
    number = job(hub, ALICE, "cohort-a", tmp_path, """
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame, ["health", "finance"], ["parents", "has_nurs"], margins=True).save("t.csv")
""")  # fmt: skip
    asked = request_export(hub, ALICE, "cohort-a", [f"{number}/t.csv"])
    assert review(hub, ROB, asked.id, "approve").status == "checked"  # one of two
    with pytest.raises(Conflict, match="rob already approved request"):
        review(hub, ROB, asked.id, "approve")
    assert review(hub, ruth, asked.id, "approve").status == "released"
    # A table of two index and two column variables, with totals, leaves whole.
    import pandas as pd

    [path] = download(hub, ALICE, asked.id, tmp_path / "out")
    released = pd.read_csv(path, index_col=[0, 1], header=[0, 1])
    assert released.shape == (7, 16)  # 3 x 2 + totals, 3 x 5 + totals
    assert released.iloc[-1, -1] == 12960  # the grand total


def test_model_output_needs_enough_residual_degrees_of_freedom(
    airlock_hub: Hub, tmp_path: Path
) -> None:
    number = job(airlock_hub, ALICE, "cohort-a", tmp_path, """
import statsmodels.api as sm
frame = ws.table("nursery", as_="pandas")
for rows, name in ((200, "wide.txt"), (8, "tiny.txt")):
    part = frame.iloc[:: len(frame) // rows].head(rows)  # spread over the table
    x = sm.add_constant(part["children"].astype(float), has_constant="add")
    fitted = sm.OLS(part["index"].astype(float), x).fit()
    ws.model_summary(fitted, name)
""")  # fmt: skip
    asked = request_export(
        airlock_hub, ALICE, "cohort-a", [f"{number}/wide.txt", f"{number}/tiny.txt"]
    )
    wide, tiny = asked.files
    assert (wide.kind, wide.verdict, wide.report["residual_dof"]) == ("model", "pass", 198)
    assert (tiny.verdict, tiny.report["residual_dof"]) == ("fail", 6)
    with pytest.raises(Conflict, match=r"tiny\.txt failed a check"):
        review(airlock_hub, ROB, asked.id, "approve")
