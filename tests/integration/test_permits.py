"""Data permits as the only road to data, on SQLite and PostgreSQL: refusals name the
missing permit and are audited; a grant gives exactly its columns and rows; each project
sees its own pseudonyms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hdh import audit
from hdh.errors import Conflict, InvalidInput, PermissionDenied
from hdh.governance.models import Permit
from hdh.governance.permits import decide, list_permits, request_permit
from hdh.governance.projects import create_project, set_member, transition
from hdh.governance.reading import read_for_project
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest
from tests.conftest import SHARED_DATA

SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"
ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))
PATIENT_RULES = [
    "Id=pseudonymise", "SSN=pseudonymise", "DRIVERS=drop", "PASSPORT=drop", "PREFIX=drop",
    "FIRST=drop", "LAST=drop", "SUFFIX=drop", "MAIDEN=drop", "ADDRESS=drop", "LAT=drop",
    "LON=drop", "BIRTHDATE=year", "DEATHDATE=month", "ZIP=department",
]  # fmt: skip


def setup(hub: Hub) -> None:
    for name in ("alice", "bob"):
        add_user(hub, name, roles=["researcher"], actor=ADMIN.actor)
    ingest(hub, SYNTHEA / "patients.csv", name="patients", actor="os:steward", rules=PATIENT_RULES)
    ingest(
        hub,
        SYNTHEA / "encounters.csv",
        name="encounters",
        actor="os:steward",
        rules=["Id=pseudonymise", "PATIENT=pseudonymise"],
    )
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref=f"CNIL {project}")
        transition(hub, ADMIN, project, "activate")


def denied(hub: Hub) -> list[dict[str, str]]:
    with hub.read() as session:
        events = audit.list_events(session, audit.EventFilter(action="permit.denied"))
    return [json.loads(e.details) for e in events]


def grant(
    hub: Hub, who: Principal, project: str, dataset: str, columns: list[str], **kw: str
) -> int:
    permit = request_permit(hub, who, project, dataset, columns=columns, **kw)
    decide(hub, ADMIN, permit.id, "grant")
    return permit.id


def test_without_a_usable_permit_nothing_is_read_and_the_attempt_is_audited(hub: Hub) -> None:
    setup(hub)
    with pytest.raises(
        PermissionDenied,
        match=r"not permitted: project 'cohort-a' has no permit for dataset 'patients'",
    ):
        read_for_project(hub, ALICE, "cohort-a", "patients")
    # A permit of another project opens nothing here.
    grant(hub, BOB, "cohort-b", "patients", ["Id", "GENDER"])
    with pytest.raises(PermissionDenied, match=r"project 'cohort-a' has no permit"):
        read_for_project(hub, ALICE, "cohort-a", "patients")
    with pytest.raises(
        PermissionDenied, match=r"bob is not an analyst or lead of project 'cohort-a'"
    ):
        read_for_project(hub, BOB, "cohort-a", "patients")

    permit = grant(hub, ALICE, "cohort-a", "patients", ["Id", "GENDER"])
    assert read_for_project(hub, ALICE, "cohort-a", "patients")[0].num_rows == 107
    with hub.transaction() as session:
        session.execute(update(Permit).where(Permit.id == permit).values(valid_until="2020-01-01"))
    with pytest.raises(
        PermissionDenied, match=rf"permit #{permit} for 'patients' expired on 2020-01-01"
    ):
        read_for_project(hub, ALICE, "cohort-a", "patients")
    with hub.transaction() as session:
        session.execute(update(Permit).where(Permit.id == permit).values(valid_until="2999-01-01"))
    decide(hub, ADMIN, permit, "revoke", note="end of study")
    with pytest.raises(PermissionDenied, match=rf"permit #{permit} for 'patients' was revoked on"):
        read_for_project(hub, ALICE, "cohort-a", "patients")
    transition(hub, ADMIN, "cohort-a", "suspend")
    with pytest.raises(PermissionDenied, match=r"project 'cohort-a' is suspended, not active"):
        read_for_project(hub, ALICE, "cohort-a", "patients")
    reasons = [d["reason"] for d in denied(hub)]
    assert len(reasons) == 6
    assert all(d["project"] == "cohort-a" for d in denied(hub))


def test_a_grant_gives_its_columns_and_rows_only(hub: Hub) -> None:
    setup(hub)
    permit = request_permit(
        hub, ALICE, "cohort-a", "patients", columns=["Id", "GENDER", "BIRTHDATE", "INCOME"],
        row_filter="BIRTHDATE >= 1980",
    )  # fmt: skip
    with pytest.raises(InvalidInput, match=r"column RACE was not requested"):
        decide(hub, ADMIN, permit.id, "grant", columns=["Id", "RACE"])
    with pytest.raises(InvalidInput, match=r"column 'BIRTHDATE' is not one the permit allows"):
        decide(hub, ADMIN, permit.id, "grant", columns=["Id", "GENDER"])  # the filter needs it
    granted = decide(
        hub, ADMIN, permit.id, "grant", columns=["Id", "GENDER", "BIRTHDATE"],
        extra_filter="GENDER == 'F'",
    )  # fmt: skip
    assert granted.row_filter == "(BIRTHDATE >= 1980) and (GENDER == 'F')"
    assert granted.requested["columns"] == ["Id", "GENDER", "BIRTHDATE", "INCOME"]
    table, allowed = read_for_project(hub, ALICE, "cohort-a", "patients")
    assert table.column_names == ["Id", "GENDER", "BIRTHDATE"]
    assert set(table.column("GENDER").to_pylist()) == {"F"}
    assert min(table.column("BIRTHDATE").to_pylist()) >= 1980
    assert 0 < table.num_rows < 107
    assert allowed.version == 1
    with pytest.raises(Conflict, match=rf"permit #{permit.id} is granted: it cannot be granted"):
        decide(hub, ADMIN, permit.id, "grant")


def test_bad_requests_are_refused_and_create_nothing(hub: Hub) -> None:
    setup(hub)
    with pytest.raises(InvalidInput, match=r"row filter 'INCOME > 5': column 'INCOME' is not one"):
        request_permit(hub, ALICE, "cohort-a", "patients", columns=["Id"], row_filter="INCOME > 5")
    with pytest.raises(InvalidInput, match=r"row filter 'GENDER ==': it is not a valid expression"):
        request_permit(
            hub, ALICE, "cohort-a", "patients", columns=["GENDER"], row_filter="GENDER =="
        )
    with pytest.raises(InvalidInput, match=r"dataset 'patients' has no column NIR"):
        request_permit(hub, ALICE, "cohort-a", "patients", columns=["NIR"])
    with pytest.raises(PermissionDenied, match=r"bob may not request a data permit"):
        request_permit(hub, BOB, "cohort-a", "patients", columns=["Id"])
    create_project(hub, ALICE, "draft-one", title="still a draft")
    asked = request_permit(hub, ALICE, "draft-one", "patients", columns=["Id"])
    with pytest.raises(Conflict, match=r"project 'draft-one' is draft: no permit can be granted"):
        decide(hub, ADMIN, asked.id, "grant")
    with pytest.raises(PermissionDenied, match=r"alice may not grant, refuse or revoke"):
        decide(hub, ALICE, asked.id, "grant")
    assert [p.status for p in list_permits(hub, ADMIN)] == ["requested"]


def test_each_project_sees_its_own_pseudonyms_which_join_inside_it(hub: Hub) -> None:
    setup(hub)
    set_member(hub, ALICE, "cohort-a", "bob", "analyst")
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        grant(hub, who, project, "patients", ["Id", "GENDER"])
        grant(hub, who, project, "encounters", ["PATIENT", "ENCOUNTERCLASS"])
    a_people = read_for_project(hub, ALICE, "cohort-a", "patients")[0]
    b_people = read_for_project(hub, BOB, "cohort-b", "patients")[0]
    a_ids, b_ids = set(a_people.column("Id").to_pylist()), set(b_people.column("Id").to_pylist())
    assert len(a_ids) == len(b_ids) == 107
    assert a_ids.isdisjoint(b_ids)  # the same 107 people, unlinkable across projects
    a_visits = read_for_project(hub, BOB, "cohort-a", "encounters")[0]  # bob, as analyst
    joined = set(a_visits.column("PATIENT").to_pylist())
    assert joined <= a_ids  # every visit's patient is found among cohort-a's patients
    assert len(joined) > 50
    from hdh.ingest.service import read_version

    hub_ids = set(read_version(hub, "patients").column("Id").to_pylist())
    assert hub_ids.isdisjoint(a_ids)  # the hub's own pseudonyms never leave it


def test_a_person_who_objects_is_left_out_of_project_reads_and_new_versions(hub: Hub) -> None:
    import csv

    from hdh.governance.objections import list_objections, record_objection
    from hdh.ingest.service import read_version, versions

    setup(hub)
    grant(hub, ALICE, "cohort-a", "encounters", ["ENCOUNTERCLASS"])  # no identifier column
    before = read_for_project(hub, ALICE, "cohort-a", "encounters")[0].num_rows
    with (SYNTHEA / "encounters.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    person = rows[0]["PATIENT"]
    theirs = sum(1 for r in rows if r["PATIENT"] == person)
    with pytest.raises(
        PermissionDenied, match=r"bob? may not record people's objections|may not record"
    ):
        record_objection(hub, ALICE, identifier=person)
    record_objection(hub, ADMIN, identifier=person, note="DPO-2026-17")
    with pytest.raises(Conflict, match="already recorded"):
        record_objection(hub, ADMIN, identifier=f"  {person} ")  # same person, normalised
    after = read_for_project(hub, ALICE, "cohort-a", "encounters")[0]
    assert after.num_rows == before - theirs
    assert after.column_names == ["ENCOUNTERCLASS"]  # the identifier was read, not returned
    # The version published before is unchanged; a new one leaves the person out.
    assert read_version(hub, "encounters").num_rows == len(rows)
    again = ingest(
        hub, SYNTHEA / "encounters.csv", name="encounters-2", actor="os:steward",
        rules=["Id=pseudonymise", "PATIENT=pseudonymise"],
    )  # fmt: skip
    assert again.rows == len(rows) - theirs
    assert versions(hub, "encounters-2")[-1].manifest["objections_excluded"] == theirs
    [objection] = list_objections(hub, ADMIN)
    with hub.read() as session:
        [event] = audit.list_events(session, audit.EventFilter(action="person.object"))
    assert person not in event.details  # never the identifier
    assert event.object_id == objection.pseudonym


def test_erasure_rewrites_every_version_that_holds_the_person(hub: Hub, tmp_path: Path) -> None:
    import csv

    from hdh.governance.erasure import erase_person
    from hdh.ingest.service import (
        IngestOptions,
        ingest_file,
        read_quarantine,
        read_version,
        versions,
    )
    from hdh.storage.models import StoredObject

    setup(hub)
    with (SYNTHEA / "encounters.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    person = rows[0]["PATIENT"]
    theirs = sum(1 for r in rows if r["PATIENT"] == person)
    stays = tmp_path / "stays.csv"
    stays.write_text(
        "patient;admitted\n" + "".join(f"P{i};09032023\n" for i in range(20))
        + f"{person};31022023\n" + "P99;31022023\n"
    )  # fmt: skip
    options = IngestOptions(
        rules=("patient=pseudonymise",), formats=("admitted=%d%m%Y",), on_error="quarantine"
    )
    ingest_file(hub, stays, name="stays", actor="os:steward", options=options)
    old_parts = {
        p["key"] for v in ("patients", "encounters") for p in versions(hub, v)[-1].manifest["parts"]
    }
    with pytest.raises(PermissionDenied, match="may not erase a person's rows"):
        erase_person(hub, ALICE, identifier=person)
    report = erase_person(hub, ADMIN, identifier=person, note="DPO-2026-18")
    assert report.versions == {"encounters@1": theirs, "patients@1": 1, "stays@1": 0}
    assert report.quarantined == {"stays@1": 1}
    assert read_version(hub, "encounters").num_rows == len(rows) - theirs
    assert read_version(hub, "patients").num_rows == 106
    [version] = versions(hub, "encounters")
    assert version.rows == len(rows) - theirs
    assert version.manifest["erasures"][0]["rows"] == theirs
    assert read_quarantine(hub, "stays", actor=ADMIN.actor).column("patient").to_pylist() == ["P99"]
    storage = hub.settings.hub_dir / "storage"
    for key in old_parts:
        assert not (storage / key).exists()  # the old parts are gone from the location
    for part in version.manifest["parts"]:
        assert (storage / part["key"]).is_file()  # and the new ones are there
    with hub.read() as session:
        keys = set(session.scalars(select(StoredObject.key)))
    assert not keys & old_parts
    from hdh.governance.objections import list_objections

    assert len(list_objections(hub, ADMIN)) == 1  # so no new version brings them back


def test_parts_rewritten_by_an_erasure_keep_the_kek_versions_they_need(hub: Hub) -> None:
    """An erasure writes parts under the KEKs current then, newer than the version's
    own: retiring those is refused while the parts need them."""
    import csv

    from hdh.crypto.service import retire_key, rotate_keys
    from hdh.errors import Conflict
    from hdh.governance.erasure import erase_person
    from hdh.ingest.service import read_version, versions

    setup(hub)
    with (SYNTHEA / "encounters.csv").open(encoding="utf-8") as fh:
        person = next(csv.DictReader(fh))["PATIENT"]
    assert versions(hub, "encounters")[-1].manifest["kek_versions"] == {
        "clinical": 1, "identifiers": 1,
    }  # fmt: skip
    rotate_keys(hub, None, actor=ADMIN.actor)
    erase_person(hub, ADMIN, identifier=person)
    parts = versions(hub, "encounters")[-1].manifest["parts"]
    assert {tuple(sorted(p["kek_versions"].items())) for p in parts} == {
        (("clinical", 2), ("identifiers", 2))
    }
    rotate_keys(hub, None, actor=ADMIN.actor)
    with pytest.raises(Conflict, match="clinical key version 2 still wraps the keys of 2"):
        retire_key(hub, "clinical", 2, actor=ADMIN.actor)
    assert read_version(hub, "encounters").num_rows > 0
