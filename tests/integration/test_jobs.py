"""Jobs: a researcher's script runs isolated, on exactly the permitted data, and keeps
its outputs in the project; every way out of the sandbox fails."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from hdh import audit
from hdh.errors import InvalidInput, NotFound, PermissionDenied
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest
from hdh.workspace.governed import run_query
from hdh.workspace.jobs import job_log, read_output, run_job, submit_job
from tests.conftest import SHARED_DATA

SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"
ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))


@pytest.fixture
def job_hub(hub: Hub) -> Hub:
    for name in ("alice", "bob"):
        add_user(hub, name, roles=["researcher"], actor=ADMIN.actor)
    ingest(hub, SYNTHEA / "encounters.csv", name="encounters", actor="os:steward",
           rules=["Id=pseudonymise", "PATIENT=pseudonymise"])  # fmt: skip
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref="ref")
        transition(hub, ADMIN, project, "activate")
    permit = request_permit(
        hub, ALICE, "cohort-a", "encounters",
        columns=["PATIENT", "ENCOUNTERCLASS", "TOTAL_CLAIM_COST"],
        row_filter="ENCOUNTERCLASS in ('wellness', 'ambulatory')",
    )  # fmt: skip
    decide(hub, ADMIN, permit.id, "grant")
    return hub


def run(hub: Hub, tmp_path: Path, name: str, text: str, **limits: int) -> tuple[object, str]:
    script = tmp_path / name
    script.write_text(text)
    job = submit_job(hub, ALICE, "cohort-a", script, **limits)
    done = run_job(hub, ALICE, job.id)
    return done, job_log(hub, ALICE, job.id)


def events(hub: Hub, action: str) -> list[dict[str, object]]:
    with hub.read() as session:
        found = audit.list_events(session, audit.EventFilter(action=action), limit=100)
    return [{"outcome": e.outcome, "object": e.object_id, **json.loads(e.details)} for e in found]


def test_a_python_job_works_on_the_permitted_data_and_keeps_its_outputs(
    job_hub: Hub, tmp_path: Path
) -> None:
    done, log = run(job_hub, tmp_path, "count.py", """
import hdh.workspace as ws
print("datasets:", ws.tables())
frame = ws.table("encounters", as_="pandas")
print("columns:", list(frame.columns))
con = ws.connect()
con.sql("select ENCOUNTERCLASS, count(*) n from encounters group by 1 order by 1").write_csv(
    str(ws.output("classes/counts.csv")))
ws.output("rows.txt").write_text(str(len(frame)))
""")  # fmt: skip
    assert done.status == "succeeded", log
    assert "datasets: ['encounters']" in log
    assert "columns: ['PATIENT', 'ENCOUNTERCLASS', 'TOTAL_CLAIM_COST']" in log
    assert [o["name"] for o in done.outputs] == ["classes/counts.csv", "rows.txt"]
    counts = read_output(job_hub, ALICE, done.id, "classes/counts.csv").decode()
    expected = run_query(
        job_hub, ALICE, "cohort-a",
        "select ENCOUNTERCLASS, count(*) n from encounters group by 1 order by 1",
    ).table.to_pylist()  # fmt: skip
    got = [{"ENCOUNTERCLASS": r["ENCOUNTERCLASS"], "n": int(r["n"])}
           for r in csv.DictReader(io.StringIO(counts))]  # fmt: skip
    assert got == expected
    assert (
        read_output(job_hub, ALICE, done.id, "rows.txt")
        == str(sum(r["n"] for r in expected)).encode()
    )
    # Outputs and log are stored encrypted in the project's area; nothing is left behind.
    storage = job_hub.settings.hub_dir / "storage" / "projects" / "cohort-a" / "jobs"
    stored = sorted(p.name for p in storage.rglob("*") if p.is_file())
    assert stored == ["counts.csv", "job.log", "rows.txt"]
    assert b"ambulatory" not in (storage / str(done.id) / "outputs" / "rows.txt").read_bytes()
    assert b"wellness" not in next(storage.rglob("counts.csv")).read_bytes()
    assert list((job_hub.settings.hub_dir / "tmp" / "jobs").iterdir()) == []
    [ran] = events(job_hub, "job.run")
    assert (ran["outcome"], ran["status"], ran["datasets"]) == (
        "success",
        "succeeded",
        ["encounters"],
    )
    assert events(job_hub, "job.submit")[0]["script"] == "count.py"
    # Another project's members see nothing of it.
    with pytest.raises(PermissionDenied):
        read_output(job_hub, BOB, done.id, "rows.txt")


def test_an_sql_job_runs_its_statements_and_keeps_the_last_result(
    job_hub: Hub, tmp_path: Path
) -> None:
    done, log = run(job_hub, tmp_path, "cost.sql", """
create table costs as
    select ENCOUNTERCLASS, round(sum(TOTAL_CLAIM_COST), 2) as total from encounters group by 1;
copy costs to 'costs.parquet' (format parquet);
select * from costs order by 1;
""")  # fmt: skip
    assert done.status == "succeeded", log
    assert "statement 3 of 3: SELECT done" in log
    assert sorted(o["name"] for o in done.outputs) == ["costs.parquet", "result.csv"]
    result = read_output(job_hub, ALICE, done.id, "result.csv").decode().splitlines()
    assert result[0] == "ENCOUNTERCLASS,total"
    assert [line.split(",")[0] for line in result[1:]] == ["ambulatory", "wellness"]

    failed, log = run(
        job_hub, tmp_path, "bad.sql", "select 1;\nselect DESCRIPTION from encounters;"
    )
    assert failed.status == "failed"
    assert failed.error == "the job exited with status 1"
    assert 'statement 2 of 2 failed: Binder Error: Referenced column "DESCRIPTION" not found' in log


ESCAPE = """
import os, socket, sys
tries = {
    "key file": lambda: open(sys.argv[1]).read(),
    "hub database": lambda: open(sys.argv[2], "rb").read(16),
    "hub folder": lambda: os.listdir(sys.argv[3]),
    "stored part": lambda: open(sys.argv[4], "rb").read(16),
    "network": lambda: socket.create_connection(("93.184.215.14", 80), timeout=3),
    "loopback": lambda: socket.create_connection(("127.0.0.1", int(sys.argv[5])), timeout=3),
    "write data": lambda: open("/job/data/encounters.parquet", "ab").write(b"x"),
    "host tmp": lambda: os.listdir("/tmp/pytest-of-root"),
}
for name, attempt in tries.items():
    try:
        attempt()
        print("OPEN", name)
    except OSError as exc:
        print("BLOCKED", name, "-", type(exc).__name__, exc.strerror)
secret = ("HDH_TOKEN", "HDH_LOC", "AWS", "AZURE")
print("ENV", sorted(k for k in os.environ if k.startswith(secret)))
os.symlink(sys.argv[1], "key-link")
"""


def test_a_job_cannot_reach_keys_database_storage_or_network(
    job_hub: Hub, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlparse

    from hdh.ingest.service import versions

    monkeypatch.setenv("HDH_TOKEN", "hdh_000000000000_" + "x" * 43)
    monkeypatch.setenv("HDH_LOC_LOCAL_SECRET", "s3cr3t")
    settings = job_hub.settings
    part = (
        settings.hub_dir
        / "storage"
        / versions(job_hub, "encounters")[-1].manifest["parts"][0]["key"]
    )
    database = settings.hub_dir / "hub.db"
    port = urlparse(database_url).port or 5432 if database_url.startswith("postgresql") else 5432
    argv = [str(settings.key_path), str(database), str(settings.hub_dir), str(part), str(port)]
    script = ESCAPE.replace("sys.argv[1]", repr(argv[0])).replace("sys.argv[2]", repr(argv[1]))
    script = script.replace("sys.argv[3]", repr(argv[2])).replace("sys.argv[4]", repr(argv[3]))
    script = script.replace("sys.argv[5]", repr(argv[4]))
    done, log = run(job_hub, tmp_path, "escape.py", script)
    assert done.status == "succeeded", log
    assert "OPEN" not in log
    for name in ("key file", "hub database", "hub folder", "stored part", "host tmp"):
        assert f"BLOCKED {name} - FileNotFoundError" in log
    assert "BLOCKED network - OSError Network is unreachable" in log
    assert "BLOCKED loopback" in log
    assert "BLOCKED write data - OSError Read-only file system" in log
    assert "ENV []" in log
    assert done.outputs == []  # the link to the key file is not kept


def test_limits_stop_a_job_and_say_why(job_hub: Hub, tmp_path: Path) -> None:
    slow, _ = run(job_hub, tmp_path, "slow.py", "import time\ntime.sleep(60)\n", timeout_s=2)
    assert (slow.status, slow.error) == ("timed_out", "stopped after 2 s")
    greedy, log = run(
        job_hub, tmp_path, "greedy.py", "block = bytearray(3 * 2**30)\n", memory_mb=1024
    )
    assert greedy.status == "failed"
    assert "MemoryError" in log
    ran = events(job_hub, "job.run")
    assert [e["status"] for e in ran] == ["timed_out", "failed"]


def test_bad_submissions_are_refused_clearly(job_hub: Hub, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("select 1")
    with pytest.raises(InvalidInput, match=r"notes.txt: a job is an SQL \(.sql\) or Python"):
        submit_job(job_hub, ALICE, "cohort-a", notes)
    with pytest.raises(NotFound, match="no such file"):
        submit_job(job_hub, ALICE, "cohort-a", tmp_path / "missing.py")
    script = tmp_path / "job.py"
    script.write_text("print(1)")
    with pytest.raises(
        PermissionDenied, match=r"bob may not read permitted data in a project \(cohort-a\)"
    ):
        submit_job(job_hub, BOB, "cohort-a", script)
    with pytest.raises(InvalidInput, match="--timeout must be"):
        submit_job(job_hub, ALICE, "cohort-a", script, timeout_s=0)
    # A project without any usable permit: the job fails, denied, with the reason.
    lonely = submit_job(job_hub, BOB, "cohort-b", script)
    with pytest.raises(PermissionDenied, match="has no usable permit"):
        run_job(job_hub, BOB, lonely.id)
    [ran] = events(job_hub, "job.run")
    assert (ran["outcome"], ran["status"]) == ("denied", "failed")


def test_outputs_the_hub_does_not_keep_fail_the_job_and_leave_nothing(
    job_hub: Hub, tmp_path: Path
) -> None:
    from hdh.workspace.jobs import OutputsRefused

    script = tmp_path / "nest.py"
    script.write_text(
        "import os\n"
        "os.makedirs('/job/out/' + '/'.join(['d'] * 20))\n"
        "open('/job/out/d/x.txt', 'w').write('x')\n"
        "os.makedirs('/job/out/locked/inner')\n"
        "os.chmod('/job/out/locked', 0)\n"
    )
    job = submit_job(job_hub, ALICE, "cohort-a", script)
    with pytest.raises(OutputsRefused, match="outputs nest deeper than 16 folders"):
        run_job(job_hub, ALICE, job.id)
    [ran] = events(job_hub, "job.run")
    assert (ran["outcome"], ran["status"]) == ("failure", "failed")
    assert "OutputsRefused: outputs nest deeper" in str(ran["error"])
    assert list((job_hub.settings.hub_dir / "tmp" / "jobs").iterdir()) == []
