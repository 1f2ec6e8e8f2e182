"""Migration under faults and at scale: workers that share one migration copy each object
once; a migration killed with SIGKILL over and over finishes complete and verified; a
target that crashes and comes back mid-run does not fail the run."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial

import pytest
from sqlalchemy import select, update

from hdh import audit
from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.hub import Hub
from hdh.identity.service import operator
from hdh.migrate import service
from hdh.migrate.models import MigrationObject
from hdh.migrate.report import migration_report
from hdh.migrate.service import migration_info, plan_migration, run_migration, verify_migration
from hdh.migrate.transfer import Outcome, Resume, copy_object
from hdh.storage.backend import PART_SIZE
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.multipart import ResumableUploads, UploadGone
from hdh.storage.objects import backend_for, write_object

pytestmark = [pytest.mark.s3, pytest.mark.azure]
ADMIN = operator("os:operator")
LARGE = 9 * 2**20  # streamed in parts (more than one 8 MiB part)


def add(hub: Hub, spec: LocationSpec) -> None:
    with hub.transaction() as session:
        add_location(session, spec, actor=ADMIN.actor)


def fill(hub: Hub, small: int, large: int) -> None:
    """``small`` objects of 1 to 64 KiB and ``large`` ones streamed in parts, in two
    projects' areas and a dataset-like area, on the location ``azure``."""
    rng = random.Random(7)
    for i in range(small):
        area = ("projects/p1", "projects/p2", "datasets/d")[i % 3]
        write_object(hub, "azure", f"{area}/o-{i:04d}", [rng.randbytes(rng.randint(1, 64) * 1024)],
                     actor="t")  # fmt: skip
    for i in range(large):
        write_object(hub, "azure", f"datasets/big/b-{i}", [rng.randbytes(LARGE + i)], actor="t")


def locations(
    hub: Hub, azure: AzuriteServer, s3: SeaweedFSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = azure.create_container(f"c-{uuid.uuid4().hex[:12]}")
    add(hub, LocationSpec(
        name="azure", kind="azure", provider="eu-blob", account=azure.account,
        container=container, endpoint=azure.endpoint, country="FR",
    ))  # fmt: skip
    monkeypatch.setenv("HDH_LOC_AZURE_ACCOUNT_KEY", azure.key)
    bucket = s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    add(hub, LocationSpec(
        name="sovereign", preset="seaweedfs", endpoint=s3.endpoint, bucket=bucket,
        country="FR", certifications=["secnumcloud"],
    ))  # fmt: skip
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_SECRET_ACCESS_KEY", s3.secret_key)


def objects(hub: Hub, migration_id: int) -> list[MigrationObject]:
    with hub.read() as session:
        return list(
            session.scalars(
                select(MigrationObject).where(MigrationObject.migration_id == migration_id)
            )
        )


def copied(hub: Hub, migration_id: int) -> int:
    return sum(o.state == "copied" for o in objects(hub, migration_id))


def copying(hub: Hub, migration_id: int) -> bool:
    """Whether a worker holds objects (it claims them just before copying them)."""
    return any(o.claimed_by for o in objects(hub, migration_id))


def target_is_complete(hub: Hub, migration_id: int) -> None:
    """The target lists exactly the plan's objects, each with the recorded SHA-256."""
    checked = verify_migration(hub, ADMIN, migration_id, full=True)
    assert (checked.missing, checked.wrong_size, checked.wrong_hash) == ([], [], [])
    assert checked.extra == []  # no half-written object is visible
    info = migration_info(hub, ADMIN, migration_id)
    assert (info.status, info.states, info.workers) == ("copied", {"copied": info.objects}, [])


def migrate_cli(hub: Hub, *args: str, output: bool = True) -> subprocess.Popen[bytes]:
    """``hdh migrate ARGS`` in a child process (``output``: its output is read)."""
    where = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "hdh", "--hub", str(hub.settings.hub_dir), "migrate", *args],
        stdout=where,
        stderr=where,
    )


@pytest.fixture
def moving(
    hub: Hub,
    azure_server: AzuriteServer,
    s3_server: SeaweedFSServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Hub:
    locations(hub, azure_server, s3_server, monkeypatch)
    return hub


def test_three_workers_copy_every_object_once(moving: Hub) -> None:
    fill(moving, small=150, large=0)
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    workers = [
        migrate_cli(moving, "run", str(plan.id), "--worker", "--concurrency", "2") for _ in range(3)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    rows = objects(moving, plan.id)
    assert len(rows) == plan.objects == 150
    # Each object was tried once, by one worker: none copied twice, none skipped.
    assert {(o.state, o.attempts) for o in rows} == {("copied", 1)}
    assert len({o.copied_by for o in rows}) > 1  # the work was shared
    target_is_complete(moving, plan.id)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_twenty_sigkills_then_a_resume_leave_a_complete_verified_target(moving: Hub) -> None:
    fill(moving, small=500, large=3)
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    rng = random.Random(20)
    kills = 0
    after_kill: list[int] = []
    while kills < 20:
        proc = migrate_cli(moving, "run", str(plan.id), "--concurrency", "1", output=False)
        # Kill at a random point once copying is under way.
        while proc.poll() is None and not copying(moving, plan.id):
            time.sleep(0.02)
        before = copied(moving, plan.id)
        began = time.monotonic()
        if plan.objects - before > 200:
            # Early on, each run is let to commit some progress first (outcomes are
            # committed about once a second, the large objects first), then killed at
            # a random point of the next group: no run is killed only before its work.
            # The point is drawn within half the time the run would need to finish at
            # the pace it showed, so that a fast machine does not let it finish.
            now = before
            while proc.poll() is None and (now := copied(moving, plan.id)) == before:
                time.sleep(0.02)
            pace = max(now - before, 1) / max(time.monotonic() - began, 0.01)
            time.sleep(rng.uniform(0, min(0.5, (plan.objects - now) / pace / 2)))
        else:
            # Near the end, only early kills, so that twenty fit in.
            time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            pytest.fail(f"the run finished after {kills} kills: give it more to copy")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        after_kill.append(copied(moving, plan.id))
    # Kills landed mid-way (the last may land after the last object was recorded).
    assert any(0 < done < plan.objects for done in after_kill), after_kill
    resumed = migrate_cli(moving, "run", str(plan.id))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert "already copied" in out.decode()
    target_is_complete(moving, plan.id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_large_object_cut_by_sigkill_is_resumed_from_the_parts_the_target_holds(
    moving: Hub,
) -> None:
    rng = random.Random(8)
    write_object(moving, "azure", "datasets/big/whole", [rng.randbytes(12 * PART_SIZE + 4096)],
                 actor="t")  # fmt: skip
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    with moving.read() as session:
        target = backend_for(moving, get_location(session, "sovereign"))
    assert target.resumable is not None
    target.resumable.warm()  # polled below: its client must not take the time it watches
    proc = migrate_cli(moving, "run", str(plan.id), "--concurrency", "1", output=False)
    held: dict[int, object] = {}
    deadline = time.monotonic() + 120
    while len(held) < 2 and proc.poll() is None and time.monotonic() < deadline:
        (row,) = objects(moving, plan.id)
        if row.upload_id is not None:
            with contextlib.suppress(UploadGone):  # completed meanwhile: reported below
                held = dict(target.resumable.parts(row.key, row.upload_id))
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(held) >= 2, "the run ended before two parts were sent: give it more to copy"
    (row,) = objects(moving, plan.id)
    assert row.state == "pending"
    assert row.upload_id is not None  # kept, for the next run to go on from
    resumed = migrate_cli(moving, "run", str(plan.id))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    (row,) = objects(moving, plan.id)
    # The parts the target held were read and matched again, not sent again.
    assert row.reused_bytes >= len(held) * PART_SIZE
    assert row.upload_id is None
    target_is_complete(moving, plan.id)
    (area,) = migration_report(moving, ADMIN, plan.id)["datasets"]
    assert (area["name"], area["resumed_bytes"]) == ("big", row.reused_bytes)


@pytest.fixture
def own_target() -> Iterator[SeaweedFSServer]:
    """A SeaweedFS of this test's own, since it is crashed and started again."""
    with SeaweedFSServer() as server:
        yield server


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_target_that_crashes_and_comes_back_mid_run_does_not_fail_the_run(
    hub: Hub,
    azure_server: AzuriteServer,
    own_target: SeaweedFSServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locations(hub, azure_server, own_target, monkeypatch)
    fill(hub, small=60, large=4)
    plan = plan_migration(hub, ADMIN, "azure", "sovereign")
    outcome: dict[str, object] = {}

    def migrate() -> None:
        try:
            outcome["result"] = run_migration(hub, ADMIN, plan.id, concurrency=2)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=migrate)
    runner.start()
    while not copying(hub, plan.id):
        time.sleep(0.02)
    time.sleep(0.3)
    own_target.restart(down_s=1.0)
    restarted_at = copied(hub, plan.id)
    runner.join(timeout=300)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert (result.failed, result.corrupt, result.copied) == ([], [], plan.objects)  # type: ignore[attr-defined]
    assert restarted_at < plan.objects  # the crash came mid-run
    target_is_complete(hub, plan.id)
    with hub.read() as session:
        target = backend_for(hub, get_location(session, "sovereign"))
    assert len(list(target.list())) == plan.objects


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_whose_claim_went_to_another_records_nothing_and_leaves_no_upload(
    moving: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A stalls past its lease; worker B takes the object. A's upload id and A's
    outcome are not recorded over B's, and the upload A begins is aborted at once."""
    fill(moving, small=0, large=1)
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    (row,) = service._claim(moving, plan.id, None, "run-a", "worker-a", 10)
    with moving.transaction() as session:  # A's lease lapses
        session.execute(update(MigrationObject).values(claimed_at=0.0))
    (taken,) = service._claim(moving, plan.id, None, "run-b", "worker-b", 10)
    assert taken.id == row.id
    service._keep_upload(moving, "run-b", row.id, "upload-of-b")

    begun: list[str] = []
    start = ResumableUploads.start

    def spy(self: ResumableUploads, key: str) -> str:
        begun.append(start(self, key))
        return begun[-1]

    monkeypatch.setattr(ResumableUploads, "start", spy)
    with moving.read() as session:
        source = backend_for(moving, get_location(session, "azure"))
        target = backend_for(moving, get_location(session, "sovereign"))
    resume = Resume(None, partial(service._keep_upload, moving, "run-a", row.id))
    outcome = copy_object(
        source, target, row.key, row.size, row.sha256, retries=0, backoff_s=0.0, resume=resume
    )
    assert outcome.state == "failed"
    assert "no longer this worker's" in outcome.error
    assert target.resumable is not None
    assert len(begun) == 1
    with pytest.raises(UploadGone):  # A's upload was dropped with its parts
        target.resumable.parts(row.key, begun[0])
    service._record(moving, ADMIN, plan.id, [(row, outcome)], "worker-a", "run-a", "azure")
    (kept,) = objects(moving, plan.id)
    assert (kept.state, kept.attempts, kept.upload_id, kept.claimed_by) == (
        "pending", 0, "upload-of-b", "worker-b",
    )  # fmt: skip
    service._record(moving, ADMIN, plan.id, [(taken, Outcome("copied", "", 1))], "worker-b",
                    "run-b", "azure")  # fmt: skip
    (kept,) = objects(moving, plan.id)
    assert (kept.state, kept.copied_by) == ("copied", "worker-b")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_outcome_is_kept_when_the_claim_was_released_but_not_taken(moving: Hub) -> None:
    """A claim released without another run taking the object (a lapsed claim freed by
    a worker starting, another run of the same process ending) still lets the run that
    copied the object record it."""
    fill(moving, small=1, large=0)
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    (row,) = service._claim(moving, plan.id, None, "run-a", "worker-a", 10)
    with moving.transaction() as session:
        session.execute(update(MigrationObject).values(claimed_by=None, claimed_at=None))
    service._record(moving, ADMIN, plan.id, [(row, Outcome("copied", "", 1))], "worker-a",
                    "run-a", "azure")  # fmt: skip
    (kept,) = objects(moving, plan.id)
    assert (kept.state, kept.copied_by) == ("copied", "worker-a")


def stopped_cleanly(hub: Hub, migration_id: int, err: str, returncode: int) -> int:
    """A run stopped by Ctrl-C said so and how to go on, holds no claim and audited the
    run as stopped; the number of objects it says are copied."""
    assert returncode == 130, err
    assert "Traceback" not in err
    info = migration_info(hub, ADMIN, migration_id)
    copied_now = info.states.get("copied", 0)
    assert info.workers == []
    assert info.status == ("incomplete" if copied_now else "planned")
    assert f"Stopped: {copied_now} of {info.objects} objects copied" in err
    assert f"hdh migrate run {migration_id}` again" in err
    with hub.read() as session:
        *_, run = audit.list_events(session, audit.EventFilter(action="migrate.run"))
    details = json.loads(run.details)
    assert (details["stopped"], details["copied"]) == (True, copied_now)
    return copied_now


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_stops_a_run_that_says_how_to_go_on_and_keeps_what_it_did(moving: Hub) -> None:
    fill(moving, small=400, large=0)
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    proc = migrate_cli(moving, "run", str(plan.id), "--concurrency", "2")
    deadline = time.monotonic() + 120
    while proc.poll() is None and copied(moving, plan.id) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert err.decode().startswith("Stopping: no copy begins")
    done = stopped_cleanly(moving, plan.id, err.decode(), proc.returncode)
    assert 0 < done < plan.objects, "the run ended before Ctrl-C: give it more to copy"
    resumed = migrate_cli(moving, "run", str(plan.id))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert f"{done} already copied" in out.decode()
    target_is_complete(moving, plan.id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_twice_stops_a_large_copy_at_its_next_part_and_the_next_run_goes_on(
    moving: Hub,
) -> None:
    count = 12
    rng = random.Random(9)
    write_object(moving, "azure", "datasets/big/whole", [rng.randbytes(count * PART_SIZE - 4096)],
                 actor="t")  # fmt: skip
    plan = plan_migration(moving, ADMIN, "azure", "sovereign")
    with moving.read() as session:
        target = backend_for(moving, get_location(session, "sovereign"))
    assert target.resumable is not None
    target.resumable.warm()
    proc = migrate_cli(moving, "run", str(plan.id), "--concurrency", "1")
    held: dict[int, object] = {}
    deadline = time.monotonic() + 120
    while not held and proc.poll() is None and time.monotonic() < deadline:
        (row,) = objects(moving, plan.id)
        if row.upload_id is not None:
            with contextlib.suppress(UploadGone):
                held = dict(target.resumable.parts(row.key, row.upload_id))
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.stderr is not None
    said = proc.stderr.readline().decode()
    assert said.startswith("Stopping: no copy begins"), said
    os.kill(proc.pid, signal.SIGINT)  # impatient: Ctrl-C again while the run winds down
    _, err = proc.communicate(timeout=120)
    assert held, "the run ended before a part was sent: give it more to copy"
    assert stopped_cleanly(moving, plan.id, said + err.decode(), proc.returncode) == 0
    (row,) = objects(moving, plan.id)
    assert (row.state, row.error) == ("pending", "")
    assert row.upload_id is not None  # kept, for the next run to go on from
    sent = target.resumable.parts(row.key, row.upload_id)
    assert 0 < len(sent) < count  # it stopped at a part, not at the end
    resumed = migrate_cli(moving, "run", str(plan.id))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    (row,) = objects(moving, plan.id)
    assert row.reused_bytes == len(sent) * PART_SIZE
    target_is_complete(moving, plan.id)
