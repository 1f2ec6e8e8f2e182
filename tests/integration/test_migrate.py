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


def test_objects_deleted_meanwhile_leave_the_plan_and_the_target(filled: Hub) -> None:
    from hdh.migrate.service import cutover
    from hdh.storage.objects import delete_object

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    delete_object(filled, "azure", "projects/p1/notes.txt", actor="t")  # e.g. a rebuilt extract
    moved = cutover(filled, ADMIN, plan.id)
    assert moved["delta"] == 1
    info = migration_info(filled, ADMIN, plan.id)
    assert (info.objects, info.status) == (plan.objects - 1, "cut over")
    assert "projects/p1/notes.txt" not in {i.key for i in backend(filled, "sovereign").list()}
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_one_wave_switches_and_rolls_back_alone(filled: Hub) -> None:
    from hdh.ingest.service import read_version
    from hdh.migrate.service import cutover, rollback

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    moved = cutover(filled, ADMIN, plan.id, wave=2)  # project p1 only
    assert (moved["objects"], moved.get("dataset_versions", 0)) == (1, 0)
    info = migration_info(filled, ADMIN, plan.id)
    assert [w["state"] for w in info.waves] == ["planned", "cut over"]
    assert info.status == "partly cut over"
    with filled.read() as session:
        assert get_location(session, "azure").name == "azure"
    assert read_version(filled, "payers").num_rows > 0  # still from the source
    assert rollback(filled, ADMIN, plan.id, wave=2)["objects"] == 1
    assert migration_info(filled, ADMIN, plan.id).status == "copied"


def test_a_run_waits_for_a_live_worker_and_takes_over_from_a_dead_one(filled: Hub) -> None:
    import subprocess
    import time

    from sqlalchemy import update

    from hdh.errors import Conflict
    from hdh.migrate.models import MigrationObject
    from hdh.migrate.workers import _start_ticks

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    other = subprocess.Popen(["sleep", "60"])
    try:
        import socket

        name = f"{socket.gethostname()}:{other.pid}:{_start_ticks(other.pid)}"
        with filled.transaction() as session:
            session.execute(update(MigrationObject).values(claimed_by=name, claimed_at=time.time()))
        with pytest.raises(Conflict, match=f"being copied by {name}"):
            run_migration(filled, ADMIN, plan.id)
        assert migration_info(filled, ADMIN, plan.id).workers == [name]
        joined = run_migration(filled, ADMIN, plan.id, join=True)
        assert joined.copied == 0  # everything is held by the other worker
    finally:
        other.kill()
        other.wait()
    done = run_migration(filled, ADMIN, plan.id)  # its claims lapse with it
    assert done.copied == plan.objects


def test_the_source_is_decommissioned_only_after_the_grace_period(filled: Hub) -> None:
    from hdh.config import MigrateSettings
    from hdh.errors import Conflict
    from hdh.ingest.service import read_version
    from hdh.migrate.service import cutover, decommission

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    with pytest.raises(Conflict, match="only a migration cut over in every wave"):
        decommission(filled, ADMIN, plan.id)
    run_migration(filled, ADMIN, plan.id)
    cutover(filled, ADMIN, plan.id)
    with pytest.raises(Conflict, match="grace period after the cutover"):
        decommission(filled, ADMIN, plan.id)
    assert len(list(backend(filled, "azure").list())) == plan.objects  # untouched
    filled.settings = filled.settings.model_copy(update={"migrate": MigrateSettings(grace_days=0)})
    done = decommission(filled, ADMIN, plan.id)
    assert done == {"deleted": plan.objects, "kept": 0, "keys_destroyed": 0}
    assert list(backend(filled, "azure").list()) == []
    assert read_version(filled, "payers").num_rows > 0  # from the target
    assert migration_info(filled, ADMIN, plan.id).status == "decommissioned"
    with filled.read() as session:
        [event] = audit.list_events(session, audit.EventFilter(action="migrate.decommission"))
    assert event.outcome == "success"
    with pytest.raises(Conflict, match="is decommissioned"):
        run_migration(filled, ADMIN, plan.id)


def test_the_report_lists_every_dataset_and_project_and_signs_its_summary(filled: Hub) -> None:
    from hdh.errors import IntegrityError
    from hdh.migrate.report import check_report, hub_public_key, migration_report, to_markdown
    from hdh.migrate.service import cutover

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    early = migration_report(filled, ADMIN, plan.id)
    assert early["summary"]["verified"]["ok"] is False  # nothing copied yet
    assert len(early["problems"]["not_copied"]) == plan.objects
    run_migration(filled, ADMIN, plan.id)
    cutover(filled, ADMIN, plan.id)
    report = migration_report(filled, ADMIN, plan.id, full=True)
    summary = check_report(report, public_key=hub_public_key(filled))
    assert summary["verified"] == {
        "full": True, "missing": 0, "wrong_size": 0, "wrong_hash": 0, "ok": True
    }  # fmt: skip
    assert (summary["sha256_matched"], summary["policy_allows_target"]) == (plan.objects, True)
    assert [(d["name"], d["objects"], d["matched"]) for d in report["datasets"]] == [
        ("encounters", 2, 2), ("payers", 2, 2),
    ]  # fmt: skip
    assert [(p["name"], p["matched"]) for p in report["projects"]] == [("p1", 1)]
    assert report["target"]["certifications"] == ["secnumcloud"]
    assert "## Signed summary" in to_markdown(report)
    forged = {**report, "summary": {**summary, "sha256_matched": plan.objects + 1}}
    with pytest.raises(IntegrityError, match="altered"):
        check_report(forged)
    with pytest.raises(IntegrityError, match="signed with another key"):
        check_report(report, public_key="A" * 43 + "=")


def test_a_cancelled_migration_makes_way_for_another(filled: Hub) -> None:
    from hdh.errors import Conflict
    from hdh.migrate.service import cancel, cutover

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    with pytest.raises(Conflict, match=f"migration {plan.id} from 'azure' is not finished"):
        plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    assert cancel(filled, ADMIN, plan.id) == plan.objects  # copies left on the target
    assert migration_info(filled, ADMIN, plan.id).status == "cancelled"
    with pytest.raises(Conflict, match="is cancelled"):
        run_migration(filled, ADMIN, plan.id)
    with pytest.raises(Conflict, match="is cancelled"):
        cutover(filled, ADMIN, plan.id)
    again = plan_migration(filled, ADMIN, "azure", "sovereign")
    assert run_migration(filled, ADMIN, again.id).copied == plan.objects
    cutover(filled, ADMIN, again.id)
    with pytest.raises(Conflict, match="no wave cut over can be cancelled"):
        cancel(filled, ADMIN, again.id)


def test_a_decommission_that_stops_midway_cannot_be_rolled_back_and_resumes(
    filled: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hdh.config import MigrateSettings
    from hdh.errors import Conflict
    from hdh.migrate.service import cutover, decommission, rollback
    from hdh.storage.backend import Backend, StorageUnavailable

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    cutover(filled, ADMIN, plan.id)
    filled.settings = filled.settings.model_copy(update={"migrate": MigrateSettings(grace_days=0)})
    real, deleted = Backend.delete, []

    def failing(self: Backend, key: str) -> None:
        if deleted:
            raise StorageUnavailable("the source stopped answering", hint="retry")
        deleted.append(key)
        real(self, key)

    monkeypatch.setattr(Backend, "delete", failing)
    with pytest.raises(StorageUnavailable):
        decommission(filled, ADMIN, plan.id)
    assert migration_info(filled, ADMIN, plan.id).status == "decommissioning"
    with pytest.raises(Conflict, match="decommissioning"):
        rollback(filled, ADMIN, plan.id)  # one source copy is already gone
    monkeypatch.setattr(Backend, "delete", real)
    assert decommission(filled, ADMIN, plan.id)["deleted"] == plan.objects
    assert migration_info(filled, ADMIN, plan.id).status == "decommissioned"


def test_a_wave_written_to_after_its_cutover_switches_again(filled: Hub) -> None:
    from hdh.migrate.service import cutover

    plan = plan_migration(filled, ADMIN, "azure", "sovereign")
    run_migration(filled, ADMIN, plan.id)
    cutover(filled, ADMIN, plan.id)
    write_object(filled, "azure", "projects/p1/late.txt", [b"written late"], actor="t")
    again = cutover(filled, ADMIN, plan.id)
    assert (again["delta"], again["objects"]) == (1, 1)
    assert migration_info(filled, ADMIN, plan.id).status == "cut over"
    target = backend(filled, "sovereign")
    assert target.get("projects/p1/late.txt") is not None
    # What the first cutover moved stays on the target.
    notes = "projects/p1/notes.txt"
    assert target.get(notes) == backend(filled, "azure").get(notes)
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_a_rekeying_run_reports_a_corrupted_source_and_copies_again_what_the_target_lost(
    filled: Hub,
) -> None:
    from sqlalchemy import func, select

    from hdh.crypto.models import DataKey

    plan = plan_migration(filled, ADMIN, "azure", "sovereign", rekey=True)
    source = backend(filled, "azure")
    part = next(i.key for i in source.list() if i.key.endswith(".parquet"))
    note = "projects/p1/notes.txt"
    originals = {key: source.get(key) for key in (part, note)}
    for key, good in originals.items():  # one bit, in the middle
        middle = len(good) // 2
        source.put(key, good[:middle] + bytes([good[middle] ^ 0x10]) + good[middle + 1 :])
    done = run_migration(filled, ADMIN, plan.id)
    assert sorted(done.corrupt) == sorted(originals)
    assert done.copied == plan.objects - 2
    target = backend(filled, "sovereign")
    assert not set(originals) & {item.key for item in target.list()}
    for key, good in originals.items():
        source.put(key, good)  # restored from a backup
    assert run_migration(filled, ADMIN, plan.id).copied == 2
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok

    # A copy the target loses is found by verify and made again, under another new key;
    # the key of the lost copy is destroyed.
    with filled.read() as session:
        keys_before = session.scalar(select(func.count()).select_from(DataKey))
    target.delete(note)
    assert verify_migration(filled, ADMIN, plan.id).missing == [note]
    assert run_migration(filled, ADMIN, plan.id).copied == 1
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok
    with filled.read() as session:
        assert session.scalar(select(func.count()).select_from(DataKey)) == keys_before


def test_a_copy_written_over_by_a_stalled_worker_is_made_again_before_the_switch(
    filled: Hub,
) -> None:
    from hdh.crypto.models import DataKey
    from hdh.migrate.rekeying import rekey_copy, source_key
    from hdh.migrate.service import cutover
    from hdh.storage.models import StoredObject
    from hdh.storage.objects import read_all

    note = "projects/p1/notes.txt"
    plan = plan_migration(filled, ADMIN, "azure", "sovereign", rekey=True)
    assert run_migration(filled, ADMIN, plan.id).copied == plan.objects
    # A worker whose claim lapsed wakes up and writes its own copy, under a key of its
    # own that is never recorded (its outcome is refused).
    with filled.read() as session:
        row = session.query(StoredObject).filter_by(key=note).one()
        recorded = source_key(row.format, session.get(DataKey, row.data_key_id))
    late = rekey_copy(
        filled.keys, recorded, backend(filled, "azure"), backend(filled, "sovereign"),
        note, row.size, row.sha256,
    )  # fmt: skip
    assert late.data_key is not None
    cutover(filled, ADMIN, plan.id)
    assert read_all(filled, "sovereign", note) == b"a project's object"
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok


def test_after_a_rekeying_cutover_a_lost_copy_is_made_again_and_the_records_follow_it(
    filled: Hub,
) -> None:
    from sqlalchemy import select

    from hdh.crypto.envelope import read_header
    from hdh.crypto.models import DataKey
    from hdh.crypto.service import retire_key, rotate_keys
    from hdh.errors import Conflict
    from hdh.ingest.service import read_version
    from hdh.migrate.service import cutover, rollback
    from hdh.storage.objects import read_all

    note = "projects/p1/notes.txt"
    rows = read_version(filled, "encounters").num_rows
    rotate_keys(filled, None, actor=ADMIN.actor)
    plan = plan_migration(filled, ADMIN, "azure", "sovereign", rekey=True)
    run_migration(filled, ADMIN, plan.id)
    rotate_keys(filled, None, actor=ADMIN.actor)
    with pytest.raises(Conflict, match=f"re-keying migration {plan.id} is not finished"):
        retire_key(filled, "clinical", 2, actor=ADMIN.actor)  # the copies are under it
    cutover(filled, ADMIN, plan.id)
    with pytest.raises(Conflict, match=f"re-keying migration {plan.id} is not finished"):
        retire_key(filled, "clinical", 1, actor=ADMIN.actor)  # a rollback needs it

    target = backend(filled, "sovereign")
    part = next(i.key for i in target.list() if i.key.startswith("datasets/encounters/"))
    lost_key = read_header(target.get(note), name=note)[1]
    target.delete(note)
    target.delete(part)
    assert sorted(verify_migration(filled, ADMIN, plan.id).missing) == sorted([note, part])
    assert run_migration(filled, ADMIN, plan.id).copied == 2
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok
    assert read_all(filled, "sovereign", note) == b"a project's object"
    assert read_version(filled, "encounters").num_rows == rows
    with filled.read() as session:
        assert session.scalars(select(DataKey).where(DataKey.id == str(lost_key))).all() == []

    rollback(filled, ADMIN, plan.id)  # back to the source copies, under their own keys
    assert read_all(filled, "azure", note) == b"a project's object"
    assert read_version(filled, "encounters").num_rows == rows


def test_an_object_deleted_after_its_cutover_leaves_no_source_copy_and_no_key(
    filled: Hub,
) -> None:
    from hdh.crypto.models import DataKey
    from hdh.migrate.service import cutover
    from hdh.storage.models import StoredObject
    from hdh.storage.objects import delete_object

    note = "projects/p1/notes.txt"
    with filled.read() as session:
        source_key_id = session.query(StoredObject).filter_by(key=note).one().data_key_id
    plan = plan_migration(filled, ADMIN, "azure", "sovereign", rekey=True)
    run_migration(filled, ADMIN, plan.id)
    cutover(filled, ADMIN, plan.id)
    delete_object(filled, "sovereign", note, actor="t")  # the project's owner removes it
    assert note in {item.key for item in backend(filled, "azure").list()}
    cutover(filled, ADMIN, plan.id)  # takes the change in: nothing left to switch
    assert note not in {item.key for item in backend(filled, "azure").list()}
    assert migration_info(filled, ADMIN, plan.id).objects == plan.objects - 1
    with filled.read() as session:
        assert session.get(DataKey, source_key_id) is None


def test_a_stopped_run_ends_a_rekeying_copy_at_its_next_chunk_and_leaves_ctrl_c_alone(
    filled: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import threading

    from hdh.storage.backend import PART_SIZE, Backend

    big = "projects/p1/big.bin"  # copied after the datasets, before the note
    write_object(filled, "azure", big, [bytes(3 * PART_SIZE)], actor="t")
    plan = plan_migration(filled, ADMIN, "azure", "sovereign", rekey=True)
    before = signal.getsignal(signal.SIGINT)
    real_open, stop = Backend.open, threading.Event()

    def open_then_stop(self: Backend, key: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for chunk in real_open(self, key, *args, **kwargs):  # type: ignore[arg-type]
            yield chunk
            if key == big and self.kind == "azure":
                stop.set()  # what `hdh migrate run` does on Ctrl-C

    monkeypatch.setattr(Backend, "open", open_then_stop)
    done = run_migration(filled, ADMIN, plan.id, concurrency=1, stop=stop)
    assert (done.stopped, done.copied) == (True, 4)
    assert signal.getsignal(signal.SIGINT) is before  # signals are the command's business
    info = migration_info(filled, ADMIN, plan.id)
    assert (info.status, info.states, info.workers) == (
        "incomplete",
        {"copied": 4, "pending": 2},
        [],
    )
    assert big not in {item.key for item in backend(filled, "sovereign").list()}
    monkeypatch.setattr(Backend, "open", real_open)
    assert run_migration(filled, ADMIN, plan.id).copied == 2
    assert verify_migration(filled, ADMIN, plan.id, full=True).ok
