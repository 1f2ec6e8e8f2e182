"""Rotating the pseudonymisation secret: datasets ingested afterwards carry new hub
pseudonyms, yet every project keeps seeing the same pseudonym for the same person, so
its datasets still join across the rotation; two projects still cannot join theirs."""

from __future__ import annotations

import csv

import pytest

from hdh import audit
from hdh.crypto.service import rotate_pseudonym_secret
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, operator
from hdh.ingest.service import ingest, read_version, version_info
from hdh.storage.models import StoredObject
from hdh.workspace.governed import run_query
from tests.conftest import SHARED_DATA

ADMIN = operator("os:operator")
ALICE = Principal("alice", frozenset({"researcher"}))
BOB = Principal("bob", frozenset({"researcher"}))
SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"


def patients_of(name: str, column: str = "PATIENT") -> set[str]:
    with (SYNTHEA / name).open(newline="") as fh:
        return {row[column] for row in csv.DictReader(fh)}


def grant(hub: Hub, who: Principal, project: str, dataset: str) -> None:
    permit = request_permit(hub, who, project, dataset, columns=["PATIENT"])
    decide(hub, ADMIN, permit.id, "grant")


def people(hub: Hub, who: Principal, project: str, dataset: str) -> set[str]:
    sql = f"select distinct PATIENT from {dataset}"
    return {r["PATIENT"] for r in run_query(hub, who, project, sql).table.to_pylist()}


@pytest.fixture
def rotated(hub: Hub) -> Hub:
    """encounters under secret 1, a rotation, then conditions under secret 2."""
    ingest(hub, SYNTHEA / "encounters.csv", name="encounters", actor="os:steward",
           rules=["Id=pseudonymise", "PATIENT=pseudonymise"])  # fmt: skip
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        add_user(hub, who.name, roles=["researcher"], actor=ADMIN.actor)
        create_project(hub, who, project, title=project)
        transition(hub, who, project, "submit")
        transition(hub, ADMIN, project, "approve", approval_ref="ref")
        transition(hub, ADMIN, project, "activate")
        grant(hub, who, project, "encounters")
    return hub


def test_projects_keep_their_pseudonyms_and_joins_across_a_rotation(rotated: Hub) -> None:
    hub = rotated
    before = people(hub, ALICE, "cohort-a", "encounters")
    assert rotate_pseudonym_secret(hub, actor=ADMIN.actor) == 2
    ingest(hub, SYNTHEA / "conditions.csv", name="conditions", actor="os:steward",
           rules=["PATIENT=pseudonymise", "ENCOUNTER=pseudonymise"])  # fmt: skip
    for who, project in ((ALICE, "cohort-a"), (BOB, "cohort-b")):
        grant(hub, who, project, "conditions")

    # The published versions carry pseudonyms under different secrets: they do not join.
    stored_e = set(read_version(hub, "encounters").column("PATIENT").to_pylist())
    stored_c = set(read_version(hub, "conditions").column("PATIENT").to_pylist())
    assert len(stored_e) == len(patients_of("encounters.csv"))
    assert not stored_e & stored_c
    linked = version_info(hub, "conditions").manifest["pseudonym_links"]
    identifiers = patients_of("conditions.csv") | patients_of("conditions.csv", "ENCOUNTER")
    assert (linked["anchor_version"], linked["pairs"]) == (1, len(identifiers))
    with hub.read() as session:
        links = session.query(StoredObject).filter_by(key=linked["key"]).one()
    assert (links.format, links.sha256) == ("envelope", linked["sha256"])  # encrypted

    # Inside a project: the same pseudonyms as before the rotation, and the datasets join.
    assert people(hub, ALICE, "cohort-a", "encounters") == before
    shared = len(patients_of("encounters.csv") & patients_of("conditions.csv"))
    joined = run_query(
        hub, ALICE, "cohort-a",
        "select count(distinct e.PATIENT) n from encounters e join conditions c "
        "on c.PATIENT = e.PATIENT",
    ).table.to_pylist()  # fmt: skip
    assert joined == [{"n": shared}]
    assert people(hub, ALICE, "cohort-a", "conditions") <= before
    # Across projects: still no common pseudonym.
    assert not people(hub, BOB, "cohort-b", "conditions") & people(
        hub, ALICE, "cohort-a", "conditions"
    )
    with hub.read() as session:
        [event] = audit.list_events(session, audit.EventFilter(action="key.rotate_pseudonyms"))
    assert event.object_id == "2"


def test_objections_and_erasure_reach_versions_made_after_a_rotation(rotated: Hub) -> None:
    from hdh.governance.erasure import erase_person
    from hdh.governance.objections import record_objection
    from hdh.ingest.pseudonymise import Pseudonymiser

    hub = rotated
    first, second, third = sorted(patients_of("conditions.csv") & patients_of("encounters.csv"))[:3]
    # Objects before the rotation: known under secret 1 only.
    record_objection(hub, ADMIN, identifier=first)
    rotate_pseudonym_secret(hub, actor=ADMIN.actor)
    ingest(hub, SYNTHEA / "conditions.csv", name="conditions", actor="os:steward",
           rules=["PATIENT=pseudonymise", "ENCOUNTER=pseudonymise"])  # fmt: skip
    grant(hub, ALICE, "cohort-a", "conditions")
    conditions = version_info(hub, "conditions")
    with (SYNTHEA / "conditions.csv").open(newline="") as fh:
        rows_of_first = sum(row["PATIENT"] == first for row in csv.DictReader(fh))
    assert conditions.manifest["objections_excluded"] == rows_of_first > 0

    # Objects afterwards, by their pseudonym under secret 1 (the anchor) only.
    anchor = Pseudonymiser({}, hub.keys.pseudonym_secret(1)[1], 1)
    seen_before = people(hub, ALICE, "cohort-a", "conditions")
    record_objection(hub, ADMIN, pseudonym=anchor.pseudonym(second), secret_version=1)
    assert len(people(hub, ALICE, "cohort-a", "conditions")) == len(seen_before) - 1

    # Erasure by identifier takes the person's rows and their link out.
    pairs = conditions.manifest["pseudonym_links"]["pairs"]
    done = erase_person(hub, ADMIN, identifier=third)
    assert done.versions["conditions@1"] > 0
    after = version_info(hub, "conditions").manifest["pseudonym_links"]
    assert after["pairs"] == pairs - 1
    assert len(people(hub, ALICE, "cohort-a", "conditions")) == len(seen_before) - 2
