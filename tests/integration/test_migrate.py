"""Migration between locations: planned under the residency policy, ciphertext copied
object by object from Azurite to SeaweedFS, every object verified, resumable, and a
corrupted source or a refusing target never marked as copied."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hdh import audit
from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.hub import Hub
from hdh.identity.service import operator
from hdh.ingest.service import ingest
from hdh.migrate import service
from hdh.migrate.service import migration_info, plan_migration, run_migration, verify_migration
from hdh.policy import PlacementRefused
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.objects import backend_for, write_object
from tests.conftest import SHARED_DATA

pytestmark = [pytest.mark.s3, pytest.mark.azure]
ADMIN = operator("os:operator")
SYNTHEA = SHARED_DATA / "synthea_csv_100_ma" / "csv"


def add(hub: Hub, spec: LocationSpec) -> None:
    with hub.transaction() as session:
        add_location(session, spec, actor=ADMIN.actor)


@pytest.fixture
def filled(
    hub: Hub,
    azure_server: AzuriteServer,
    s3_server: SeaweedFSServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Hub:
    """A hub with two datasets and a project object on Azurite, and an empty SeaweedFS
    bucket to move them to."""
    container = azure_server.create_container(f"c-{uuid.uuid4().hex[:12]}")
    add(hub, LocationSpec(
        name="azure", kind="azure", provider="eu-blob", account=azure_server.account,
        container=container, endpoint=azure_server.endpoint, country="FR",
    ))  # fmt: skip
    monkeypatch.setenv("HDH_LOC_AZURE_ACCOUNT_KEY", azure_server.key)
    bucket = s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    add(hub, LocationSpec(
        name="sovereign", preset="seaweedfs", endpoint=s3_server.endpoint, bucket=bucket,
        country="FR", certifications=["secnumcloud"],
    ))  # fmt: skip
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_SECRET_ACCESS_KEY", s3_server.secret_key)
    ingest(hub, SYNTHEA / "encounters.csv", name="encounters", actor="os:steward",
           location="azure", rules=["Id=pseudonymise", "PATIENT=pseudonymise"])  # fmt: skip
    ingest(hub, SYNTHEA / "payers.csv", name="payers", actor="os:steward", location="azure",
           rules=["NAME=keep", "ADDRESS=drop", "PHONE=drop"])  # fmt: skip
    write_object(hub, "azure", "projects/p1/notes.txt", [b"a project's object"], actor="t")
    return hub


def backend(hub: Hub, name: str):  # type: ignore[no-untyped-def]
    with hub.read() as session:
        return backend_for(hub, get_location(session, name))


def test_everything_moves_verified_and_a_second_run_copies_nothing(filled: Hub) -> None:
    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    assert plan.status == "planned"
    assert [w["what"] for w in plan.waves] == ["datasets", "project p1"]
    assert plan.waves[0]["objects"] == 4  # two parts and two manifests
    assert plan.states == {"pending": plan.objects}
    done = run_migration(filled, ADMIN, plan.id)
    assert (done.copied, done.corrupt, done.failed) == (plan.objects, [], [])
    assert migration_info(filled, ADMIN, plan.id).status == "copied"
    source, target = backend(filled, "azure"), backend(filled, "sovereign")
    for item in source.list():
        assert target.get(item.key) == source.get(item.key)  # ciphertext, byte for byte
    checked = verify_migration(filled, ADMIN, plan.id, full=True)
    assert (checked.ok, checked.checked, checked.extra) == (True, plan.objects, [])
    again = run_migration(filled, ADMIN, plan.id)
    assert (again.copied, again.skipped) == (0, plan.objects)
    # What disappears from the target is found by verify and copied again.
    gone = next(iter(target.list())).key
    target.delete(gone)
    assert verify_migration(filled, ADMIN, plan.id).missing == [gone]
    assert run_migration(filled, ADMIN, plan.id).copied == 1
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_a_stopped_run_resumes_where_it_stopped(
    filled: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    real, calls = service.copy_object, []

    def stopping(*args: object, **kwargs: object) -> object:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "copy_object", stopping)
    with pytest.raises(KeyboardInterrupt):
        run_migration(filled, ADMIN, plan.id, concurrency=1)
    stopped = migration_info(filled, ADMIN, plan.id)
    assert (stopped.status, stopped.states["copied"], stopped.workers) == ("incomplete", 2, [])
    monkeypatch.setattr(service, "copy_object", real)
    resumed = run_migration(filled, ADMIN, plan.id)
    assert (resumed.skipped, resumed.copied) == (2, plan.objects - 2)
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_a_corrupted_source_object_is_reported_and_never_copied(filled: Hub) -> None:
    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    source = backend(filled, "azure")
    victim = "projects/p1/notes.txt"
    good = source.get(victim)
    source.put(victim, bytes([good[0] ^ 0x01]) + good[1:])  # one bit
    done = run_migration(filled, ADMIN, plan.id)
    assert done.corrupt == [victim]
    assert done.copied == plan.objects - 1
    assert victim not in {item.key for item in backend(filled, "sovereign").list()}
    info = migration_info(filled, ADMIN, plan.id)
    assert (info.status, info.states["corrupt"]) == ("incomplete", 1)
    with filled.read() as session:
        [event] = audit.list_events(session, audit.EventFilter(action="migrate.object"))
    assert (event.outcome, event.object_id) == ("failure", f"azure:{victim}")
    source.put(victim, good)  # restored from a backup
    assert run_migration(filled, ADMIN, plan.id).copied == 1
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_a_target_that_refuses_writes_gets_nothing_marked_copied(
    filled: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_SECRET_ACCESS_KEY", "wrong")
    done = run_migration(filled, ADMIN, plan.id)
    assert (done.copied, len(done.failed)) == (0, plan.objects)
    info = migration_info(filled, ADMIN, plan.id)
    assert (info.status, info.states) == ("incomplete", {"failed": plan.objects})


def test_the_policy_refuses_a_target_where_health_data_may_not_go(
    filled: Hub, tmp_path: Path
) -> None:
    add(filled, LocationSpec(name="us", kind="local", path=str(tmp_path / "us"), country="US"))
    with pytest.raises(PlacementRefused):
        plan_migration(filled, ADMIN, "azure", "us")
    with filled.read() as session:
        refused = audit.list_events(session, audit.EventFilter(action="placement.refused"))
    assert refused


def test_cutover_copies_the_delta_then_reads_come_from_the_target_and_rollback_returns(
    filled: Hub,
) -> None:
    from hdh.errors import Conflict
    from hdh.ingest.service import read_version
    from hdh.migrate.service import cutover, rollback

    before = read_version(filled, "encounters").to_pylist()
    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    # Written to the source during the migration: copied by the cutover.
    ingest(filled, SYNTHEA / "organizations.csv", name="organizations", actor="os:steward",
           location="azure", rules=["NAME=keep", "ADDRESS=drop", "PHONE=drop", "LAT=drop",
                                    "LON=drop", "ZIP=drop"])  # fmt: skip
    moved = cutover(filled, ADMIN, plan.id)
    assert moved["delta"] == 2  # the new version's part and manifest
    assert moved["dataset_versions"] == 3
    assert migration_info(filled, ADMIN, plan.id).status == "cut over"
    # The source can go away: reads come from the target.
    source = backend(filled, "azure")
    kept = {item.key: source.get(item.key) for item in source.list()}
    for key in kept:
        source.delete(key)
    assert read_version(filled, "encounters").to_pylist() == before
    assert read_version(filled, "organizations").num_rows > 0
    for key, data in kept.items():  # the source is back, untouched
        source.put(key, data)
    rollback(filled, ADMIN, plan.id)
    assert read_version(filled, "encounters").to_pylist() == before
    cutover(filled, ADMIN, plan.id)
    write_object(filled, "sovereign", "projects/p1/after.txt", [b"new"], actor="t")
    with pytest.raises(Conflict, match="written to 'sovereign' since the cutover"):
        rollback(filled, ADMIN, plan.id)
