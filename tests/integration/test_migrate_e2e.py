"""The whole hub leaves Azure for a sovereign cloud while researchers keep querying:
datasets, two projects with permits, saved tables, job outputs and airlock files move
from Azurite to SeaweedFS, wave by wave; every query during the move succeeds with the
answer it gave before, and after the cutover the hub no longer needs Azure at all."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from hdh.airlock.service import read_file, request_export
from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest
from hdh.migrate.service import (
    cutover,
    migration_info,
    plan_migration,
    run_migration,
    verify_migration,
)
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.models import StoredObject
from hdh.storage.objects import backend_for
from hdh.workspace.governed import run_query
from hdh.workspace.jobs import job_log, run_job, submit_job
from tests.conftest import SHARED_DATA

pytestmark = [pytest.mark.s3, pytest.mark.azure]
ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))
SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"

#: What each project asks, before, during and after the move.
QUERIES = {
    ("alice", "cohort-a"): [
        "select ENCOUNTERCLASS, count(*) n, round(sum(TOTAL_CLAIM_COST), 2) cost "
        "from encounters group by all order by all",
        # Two datasets join on the project's pseudonyms.
        "select count(distinct e.PATIENT) from encounters e join conditions c "
        "on c.PATIENT = e.PATIENT where c.DESCRIPTION like '%diabetes%'",
        "select count(*), sum(n) from saved.visits",
    ],
    ("bob", "cohort-b"): [
        "select count(*) n, count(distinct PATIENT) from encounters",
        "select NAME from payers order by NAME",
    ],
}
PEOPLE = {"alice": ALICE, "bob": BOB}


@pytest.fixture
def azure_hub(
    hub: Hub,
    azure_server: AzuriteServer,
    s3_server: SeaweedFSServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Hub:
    """A hub whose every object is on Azurite: three datasets, two projects with permits,
    a saved table, a job's outputs and an airlock request."""
    container = azure_server.create_container(f"c-{uuid.uuid4().hex[:12]}")
    bucket = s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name="azure-francecentral", kind="azure", provider="eu-blob",
            account=azure_server.account, container=container,
            endpoint=azure_server.endpoint, country="FR",
        ), actor=ADMIN.actor)  # fmt: skip
        add_location(session, LocationSpec(
            name="scaleway-fr-par", preset="seaweedfs", endpoint=s3_server.endpoint,
            bucket=bucket, country="FR", certifications=["secnumcloud", "hds"],
        ), actor=ADMIN.actor)  # fmt: skip
    monkeypatch.setenv("HDH_LOC_AZURE_FRANCECENTRAL_ACCOUNT_KEY", azure_server.key)
    monkeypatch.setenv("HDH_LOC_SCALEWAY_FR_PAR_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("HDH_LOC_SCALEWAY_FR_PAR_SECRET_ACCESS_KEY", s3_server.secret_key)
    where = "azure-francecentral"
    ingest(hub, SYNTHEA / "encounters.csv", name="encounters", actor="os:steward",
           location=where, rules=["Id=pseudonymise", "PATIENT=pseudonymise"])  # fmt: skip
    ingest(hub, SYNTHEA / "conditions.csv", name="conditions", actor="os:steward",
           location=where, rules=["PATIENT=pseudonymise", "ENCOUNTER=pseudonymise"])  # fmt: skip
    ingest(hub, SYNTHEA / "payers.csv", name="payers", actor="os:steward", location=where,
           rules=["NAME=keep", "ADDRESS=drop", "PHONE=drop"])  # fmt: skip
    asked = {
        (ALICE, "cohort-a"): {
            "encounters": ["PATIENT", "ENCOUNTERCLASS", "TOTAL_CLAIM_COST"],
            "conditions": ["PATIENT", "DESCRIPTION"],
        },
        (BOB, "cohort-b"): {"encounters": ["PATIENT"], "payers": ["NAME"]},
    }
    for (who, project), datasets in asked.items():
        add_user(hub, who.name, roles=["researcher"], actor=ADMIN.actor)
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref="ref")
        transition(hub, ADMIN, project, "activate")
        for dataset, columns in datasets.items():
            permit = request_permit(hub, who, project, dataset, columns=columns)
            decide(hub, ADMIN, permit.id, "grant")
    run_query(hub, ALICE, "cohort-a", "select ENCOUNTERCLASS, count(*) n from encounters "
              "group by all", save="visits")  # fmt: skip
    script = tmp_path / "table.py"
    script.write_text(
        "import hdh.workspace as ws\n"
        'frame = ws.table("encounters", as_="pandas")\n'
        'frame["costly"] = frame.TOTAL_CLAIM_COST > 1000\n'
        'ws.crosstab(frame, "ENCOUNTERCLASS", "costly").save("classes.csv")\n'
    )
    job = run_job(hub, ALICE, submit_job(hub, ALICE, "cohort-a", script).id)
    assert job.status == "succeeded", job_log(hub, ALICE, job.id)
    request_export(hub, ALICE, "cohort-a", [f"{job.id}/classes.csv"], note="Table 1")
    return hub


def answers(hub: Hub) -> dict[str, list[dict[str, object]]]:
    return {
        sql: run_query(hub, PEOPLE[who], project, sql).table.to_pylist()
        for (who, project), queries in QUERIES.items()
        for sql in queries
    }


def test_the_hub_moves_wave_by_wave_while_projects_query_and_nothing_changes(
    azure_hub: Hub,
) -> None:
    hub = azure_hub
    before = answers(hub)
    exported = read_file(hub, ALICE, 1, "classes.csv")
    plan = plan_migration(hub, ADMIN, "azure-francecentral", "scaleway-fr-par")
    assert [w["what"] for w in plan.waves] == ["datasets", "project cohort-a", "project cohort-b"]

    # A reader keeps querying every project throughout the copy and the cutovers.
    stop, seen, failures = threading.Event(), [0], []

    def reader() -> None:
        while not stop.is_set():
            try:
                if answers(hub) != before:
                    failures.append("an answer changed")
                seen[0] += 1
            except Exception as exc:  # every failure is reported by the assertion below
                failures.append(repr(exc))

    def whole_rounds_after_this() -> None:
        """Wait until a round of queries has both begun and ended after this point."""
        now = seen[0]
        while seen[0] < now + 2 and not failures and thread.is_alive():
            time.sleep(0.01)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        done = run_migration(hub, ADMIN, plan.id, concurrency=4)
        assert (done.copied, done.corrupt, done.failed) == (plan.objects, [], [])
        whole_rounds_after_this()
        first = cutover(hub, ADMIN, plan.id, wave=1)  # the datasets
        assert first["dataset_versions"] == 3
        assert migration_info(hub, ADMIN, plan.id).status == "partly cut over"
        whole_rounds_after_this()  # datasets from the target, project areas from Azure
        rest = cutover(hub, ADMIN, plan.id)
        assert (rest["project_tables"], rest["jobs"], rest["export_requests"]) == (1, 1, 1)
        whole_rounds_after_this()
    finally:
        stop.set()
        thread.join(timeout=120)
    assert failures == []
    assert seen[0] >= 6
    info = migration_info(hub, ADMIN, plan.id)
    assert info.status == "cut over"
    assert all(w["state"] == "cut over" for w in info.waves)

    # Every object the hub holds is now on the target, with the SHA-256 it recorded.
    checked = verify_migration(hub, ADMIN, plan.id, full=True)
    assert (checked.ok, checked.extra) == (True, [])
    with hub.read() as session:
        source = get_location(session, "azure-francecentral")
        left = session.query(StoredObject).filter_by(location_id=source.id).count()
        backend = backend_for(hub, source)
    assert left == 0

    # Azure can go: with its objects gone, every project still gets the same answers.
    for item in list(backend.list()):
        backend.delete(item.key)
    assert answers(hub) == before
    assert read_file(hub, ALICE, 1, "classes.csv") == exported


def test_a_rekeying_move_leaves_nothing_the_old_keys_open_and_they_can_go(
    azure_hub: Hub,
) -> None:
    """The operator rotates the KEKs, moves the hub with ``rekey``, decommissions Azure
    and destroys the old KEK versions: every project still gets the same answers, and
    a copy Azure kept of the old ciphertext no longer opens."""
    from hdh.config import MigrateSettings
    from hdh.crypto.envelope import read_header
    from hdh.crypto.models import DataKey
    from hdh.crypto.parquet import read_encrypted
    from hdh.crypto.service import retire_key, rotate_keys
    from hdh.errors import Conflict, IntegrityError
    from hdh.governance.models import ProjectExtract
    from hdh.migrate.report import migration_report
    from hdh.migrate.service import decommission, rollback

    hub = azure_hub
    before = answers(hub)
    exported = read_file(hub, ALICE, 1, "classes.csv")
    rotate_keys(hub, None, actor=ADMIN.actor)  # data keys rewrapped; Parquet files not
    with pytest.raises(Conflict, match="still wraps the keys of 3 dataset versions"):
        retire_key(hub, "clinical", 1, actor=ADMIN.actor)
    with hub.read() as session:
        azure = get_location(session, "azure-francecentral")
        on_azure = {o.key: o for o in session.query(StoredObject).filter_by(location_id=azure.id)}
        extracts = sorted(e.id for e in session.query(ProjectExtract))
    old = backend_for(hub, azure)
    # What the old provider could keep: every object's ciphertext as it was.
    kept = {key: old.get(key) for key in on_azure}
    envelopes = {k for k, o in on_azure.items() if o.format == "envelope"}
    assert 0 < len(envelopes) < len(on_azure)  # both kinds move

    plan = plan_migration(hub, ADMIN, "azure-francecentral", "scaleway-fr-par", rekey=True)
    assert plan.rekey
    done = run_migration(hub, ADMIN, plan.id, concurrency=4)
    assert (done.copied, done.corrupt, done.failed) == (plan.objects, [], [])
    with hub.read() as session:
        target = backend_for(hub, get_location(session, "scaleway-fr-par"))
    copies = {key: target.get(key) for key in on_azure}
    assert all(copies[key] != kept[key] for key in on_azure)  # new ciphertext, every one
    assert all(
        read_header(copies[key], name=key)[1] != read_header(kept[key], name=key)[1]
        for key in envelopes
    )  # under new data keys

    cutover(hub, ADMIN, plan.id)
    assert answers(hub) == before
    assert read_file(hub, ALICE, 1, "classes.csv") == exported
    checked = verify_migration(hub, ADMIN, plan.id, full=True)
    assert (checked.ok, checked.extra) == (True, [])
    with hub.read() as session:
        # The copies hold the same rows: the projects' extracts were not built again.
        assert sorted(e.id for e in session.query(ProjectExtract)) == extracts
    rollback(hub, ADMIN, plan.id)  # the records point at the source copies again
    assert answers(hub) == before
    cutover(hub, ADMIN, plan.id)
    assert answers(hub) == before

    summary = migration_report(hub, ADMIN, plan.id, full=True)["summary"]
    assert (summary["rekeyed"], summary["sha256_matched"], summary["verified"]["ok"]) == (
        True, plan.objects, True,
    )  # fmt: skip
    hub.settings = hub.settings.model_copy(update={"migrate": MigrateSettings(grace_days=0)})
    gone = decommission(hub, ADMIN, plan.id)
    assert gone["deleted"] == plan.objects
    assert gone["keys_destroyed"] == len(envelopes)
    for cls in ("clinical", "identifiers"):
        retire_key(hub, cls, 1, actor=ADMIN.actor)
    assert answers(hub) == before
    assert read_file(hub, ALICE, 1, "classes.csv") == exported

    # Azure's leftovers: the envelope objects' keys are gone, the Parquet files' KEKs too.
    with hub.read() as session:
        for key in envelopes:
            key_id = read_header(kept[key], name=key)[1]
            assert session.get(DataKey, str(key_id)) is None
    for key in set(on_azure) - envelopes:
        with pytest.raises(IntegrityError, match="clinical key version 1 was retired"):
            read_encrypted(pa.BufferReader(kept[key]), hub.keys)
