"""Objects through the hub's one road: policy first, encrypted on the way out, verified on
the way in, keys rotated without rewriting data. On SQLite and PostgreSQL, and on a local
folder, SeaweedFS and Azurite."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from hdh import audit
from hdh.crypto.envelope import HEADER_SIZE, TAG, TamperedObject
from hdh.crypto.service import key_usage, retire_key, rotate_keys
from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.errors import Conflict
from hdh.hub import Hub
from hdh.policy import PlacementRefused, set_rule
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.objects import backend_for, list_objects, read_all, write_object

ACTOR = "os:steward"
MARKER = b"PATIENT-MARKER-7f3a"
CHUNK = 1024 * 1024


def add(hub: Hub, spec: LocationSpec) -> None:
    with hub.transaction() as session:
        add_location(session, spec, actor=ACTOR)


@pytest.fixture(
    params=[
        pytest.param("local"),
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("azure", marks=pytest.mark.azure),
    ]
)
def location(request: pytest.FixtureRequest, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> str:
    """A location of each kind the policy allows health data on, added to ``hub``."""
    name = f"loc-{request.param}"
    env = name.upper().replace("-", "_")
    if request.param == "local":
        add(hub, LocationSpec(name=name, kind="local", path="objects", country="FR"))
    elif request.param == "s3":
        s3: SeaweedFSServer = request.getfixturevalue("s3_server")
        bucket = s3.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
        add(
            hub,
            LocationSpec(
                name=name, preset="seaweedfs", endpoint=s3.endpoint, bucket=bucket, country="FR"
            ),
        )
        monkeypatch.setenv(f"HDH_LOC_{env}_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv(f"HDH_LOC_{env}_SECRET_ACCESS_KEY", s3.secret_key)
    else:
        az: AzuriteServer = request.getfixturevalue("azure_server")
        container = az.create_container(f"c-{uuid.uuid4().hex[:12]}")
        # A European provider's blob service, as far as the policy knows: no CLOUD Act.
        add(
            hub,
            LocationSpec(
                name=name,
                kind="azure",
                provider="eu-blob",
                account=az.account,
                container=container,
                endpoint=az.endpoint,
                country="FR",
            ),
        )
        monkeypatch.setenv(f"HDH_LOC_{env}_ACCOUNT_KEY", az.key)
    return name


def stored_bytes(hub: Hub, location: str) -> bytes:
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, location))
    return b"".join(backend.get(o.key) for o in backend.list())


def test_round_trip_leaves_only_ciphertext(hub: Hub, location: str) -> None:
    rows = b"".join(b"%d;%s;1985-05-%02d\n" % (i, MARKER, i % 28 + 1) for i in range(50_000))
    record = write_object(hub, location, "raw/visits.csv", rows, actor=ACTOR)
    assert record.plain_size == len(rows)
    assert read_all(hub, location, "raw/visits.csv") == rows
    stored = stored_bytes(hub, location)
    assert len(stored) == record.size
    assert MARKER not in stored
    assert b"1985-05" not in stored
    [listed] = list_objects(hub, location)
    assert (listed.key, listed.sha256, listed.data_class) == (
        "raw/visits.csv",
        record.sha256,
        "health",
    )


def test_large_object_streams(hub: Hub, location: str) -> None:
    def source() -> Iterator[bytes]:
        for i in range(12):
            yield bytes([i]) * CHUNK

    record = write_object(hub, location, "big.bin", source(), actor=ACTOR)
    assert record.plain_size == 12 * CHUNK
    assert read_all(hub, location, "big.bin") == b"".join(bytes([i]) * CHUNK for i in range(12))


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap"])
def test_tampering_on_the_location_is_caught_on_read(hub: Hub, location: str, damage: str) -> None:
    plain = os.urandom(3 * CHUNK + 100)
    write_object(hub, location, "results/table.csv", plain, actor=ACTOR)
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, location))
    stored = bytearray(backend.get("results/table.csv"))
    sealed = CHUNK + TAG
    if damage == "flip":
        stored[HEADER_SIZE + sealed + 12345] ^= 0x04
        expected = "failed authentication at chunk 1"
    elif damage == "truncate":
        del stored[HEADER_SIZE + 3 * sealed :]
        expected = "is truncated: it ends after chunk 2, which is not its last"
    else:
        first = stored[HEADER_SIZE : HEADER_SIZE + sealed]
        second = stored[HEADER_SIZE + sealed : HEADER_SIZE + 2 * sealed]
        stored[HEADER_SIZE : HEADER_SIZE + 2 * sealed] = second + first
        expected = "failed authentication at chunk 0"
    backend.put("results/table.csv", bytes(stored))
    with pytest.raises(TamperedObject) as caught:
        read_all(hub, location, "results/table.csv")
    assert str(caught.value).startswith(
        f"object 'results/table.csv' on location '{location}' {expected}"
    )


def test_rewriting_an_object_replaces_its_data_key(hub: Hub) -> None:
    write_object(hub, "local", "notes.txt", b"first", actor=ACTOR)
    write_object(hub, "local", "notes.txt", b"second", actor=ACTOR)
    assert read_all(hub, "local", "notes.txt") == b"second"
    assert sum(u.data_keys for u in key_usage(hub)) == 1


@pytest.mark.azure
def test_policy_refuses_a_us_cloud_act_location_before_any_byte(
    hub: Hub, azure_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = azure_server.create_container(f"c-{uuid.uuid4().hex[:12]}")
    add(
        hub,
        LocationSpec(
            name="azure-fr",
            preset="azure",
            account=azure_server.account,
            container=container,
            endpoint=azure_server.endpoint,
            region="francecentral",
        ),
    )
    monkeypatch.setenv("HDH_LOC_AZURE_FR_ACCOUNT_KEY", azure_server.key)
    sent: list[int] = []

    def source() -> Iterator[bytes]:
        sent.append(1)
        yield b"health data"

    with pytest.raises(PlacementRefused) as caught:
        write_object(hub, "azure-fr", "raw/visits.csv", source(), actor=ACTOR)
    assert str(caught.value) == (
        "policy rule 'health-data-in-eu' refuses object 'raw/visits.csv' on location "
        "'azure-fr': location 'azure-fr' is exposed to us-cloud-act, and health data may not "
        "be placed where non-EU law reaches: choose a location the policy allows "
        "(hdh policy show), or change the policy"
    )
    assert sent == []
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, "azure-fr"))
        assert list(backend.list()) == []
        refusal = audit.list_events(session)[-1]
    assert (refusal.action, refusal.outcome, refusal.actor) == (
        "placement.refused",
        "denied",
        ACTOR,
    )
    assert json.loads(refusal.details)["rules"][0]["rule"] == "health-data-in-eu"
    # Data of another class may go there.
    write_object(hub, "azure-fr", "public/readme.txt", b"hello", actor=ACTOR, data_class="other")
    assert read_all(hub, "azure-fr", "public/readme.txt") == b"hello"


def test_a_rule_requiring_a_certification(hub: Hub) -> None:
    with hub.transaction() as session:
        set_rule(
            session,
            "health-on-hds",
            data_class="health",
            countries=["EU"],
            certifications=["HDS"],
            forbid_extraterritorial=True,
            actor=ACTOR,
        )
    with pytest.raises(PlacementRefused, match="does not declare the certification hds"):
        write_object(hub, "local", "x", b"x", actor=ACTOR)
    add(hub, LocationSpec(name="hds-disk", kind="local", path="hds", country="FR",
                          certifications=["hds"]))  # fmt: skip
    write_object(hub, "hds-disk", "x", b"x", actor=ACTOR)


def test_key_rotation_rewraps_and_everything_reads_back(hub: Hub) -> None:
    for i, sensitivity in enumerate(["clinical", "identifiers", "other", "clinical"]):
        write_object(hub, "local", f"o{i}", b"payload %d" % i, actor=ACTOR, sensitivity=sensitivity)
    assert rotate_keys(hub, None, actor=ACTOR) == {"identifiers": 2, "clinical": 2, "other": 2}
    usage = {(u.sensitivity, u.version): u for u in key_usage(hub)}
    assert usage[("clinical", 1)].data_keys == 0
    assert usage[("clinical", 2)].data_keys == 2
    assert usage[("clinical", 2)].current
    reopened = Hub.open(hub.settings.hub_dir)  # a new process sees the rotated key file
    try:
        for i in range(4):
            assert read_all(reopened, "local", f"o{i}") == b"payload %d" % i
        retire_key(reopened, "clinical", 1, actor=ACTOR)
        for i in range(4):
            assert read_all(reopened, "local", f"o{i}") == b"payload %d" % i
        with pytest.raises(Conflict, match="is the current one"):
            retire_key(reopened, "clinical", 2, actor=ACTOR)
    finally:
        reopened.close()


def test_a_key_version_in_use_cannot_be_retired(hub: Hub) -> None:
    write_object(hub, "local", "kept", b"still wrapped by v1", actor=ACTOR)
    hub.keys.rotate("clinical", created_at="t")  # a new version, no rewrap yet
    with pytest.raises(Conflict) as caught:
        retire_key(hub, "clinical", 1, actor=ACTOR)
    assert str(caught.value) == (
        "clinical key version 1 still wraps 1 data key: run `hdh key rotate --class clinical` "
        "first, then retire it"
    )
    assert read_all(hub, "local", "kept") == b"still wrapped by v1"
