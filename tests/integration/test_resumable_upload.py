"""Copies to S3, checked after the write. A large object's copy cut short goes on from
the parts the target holds: only the missing parts are sent again, a part that no
longer matches the source is sent again, the whole object's SHA-256 still decides, and
nothing half-sent is ever visible. A small object is checked by the ETag the target
answers when it is the MD5 of the bytes sent, else by asking for its size. A copy told
to stop (Ctrl-C) stops waiting to try again, or at its next chunk."""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from typing import Any

import pytest

from hdh.devservers import SeaweedFSServer
from hdh.hub import Hub
from hdh.identity.service import operator
from hdh.migrate.transfer import CorruptSource, Resume, copy_object, transfer
from hdh.storage import multipart
from hdh.storage.backend import PART_SIZE, Backend, StorageUnavailable
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.multipart import UploadGone, UploadRefused
from hdh.storage.objects import backend_for

# The database plays no part here: one is enough.
pytestmark = [pytest.mark.s3, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
SIZE = 3 * PART_SIZE + 1000  # four parts, the last one short


class CutShort(Backend):
    """The source, failing for any byte from ``after`` on (a network cut, a crash)."""

    def __init__(self, real: Backend, after: int) -> None:
        super().__init__(real._store, kind=real.kind, describe=real.describe,
                         features=real.features)  # fmt: skip
        self.after = after

    def get_range_buffer(self, key: str, start: int, end: int) -> Any:
        if end > self.after:
            raise StorageUnavailable("the source stopped answering")
        return super().get_range_buffer(key, start, end)


@pytest.fixture
def ends(
    hub: Hub, s3_server: SeaweedFSServer, monkeypatch: pytest.MonkeyPatch
) -> tuple[Backend, Backend, bytes]:
    bucket = s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name="sovereign", preset="seaweedfs", endpoint=s3_server.endpoint, bucket=bucket,
            country="FR",
        ), actor=operator("os:test").actor)  # fmt: skip
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("HDH_LOC_SOVEREIGN_SECRET_ACCESS_KEY", s3_server.secret_key)
    with hub.read() as session:
        source = backend_for(hub, get_location(session, "local"))
        target = backend_for(hub, get_location(session, "sovereign"))
    data = random.Random(3).randbytes(SIZE)
    source.put("big", data)
    return source, target, data


def cut_after_two_parts(source: Backend, target: Backend, sha256: str) -> Resume:
    kept: list[str | None] = []
    resume = Resume(keep=kept.append)
    with pytest.raises(StorageUnavailable, match="stopped answering"):
        transfer(CutShort(source, 2 * PART_SIZE), target, "big", SIZE, sha256, resume)
    assert resume.upload_id is not None
    assert kept == [resume.upload_id]
    assert target.resumable is not None
    assert sorted(target.resumable.parts("big", resume.upload_id)) == [1, 2]
    assert [o.key for o in target.list()] == []  # nothing half-sent is visible
    return resume


def test_a_cut_copy_sends_only_the_parts_the_target_lacks(
    ends: tuple[Backend, Backend, bytes],
) -> None:
    source, target, data = ends
    sha256 = hashlib.sha256(data).hexdigest()
    resume = cut_after_two_parts(source, target, sha256)
    kept: list[str | None] = []
    resume.keep = kept.append
    transfer(source, target, "big", SIZE, sha256, resume)
    assert resume.reused == 2 * PART_SIZE  # parts 1 and 2 were not sent again
    assert (resume.upload_id, kept) == (None, [None])
    assert target.get("big") == data


def test_a_part_that_no_longer_matches_the_source_is_not_counted_and_nothing_corrupt_lands(
    ends: tuple[Backend, Backend, bytes],
) -> None:
    source, target, data = ends
    sha256 = hashlib.sha256(data).hexdigest()
    resume = cut_after_two_parts(source, target, sha256)
    upload_id = resume.upload_id
    assert upload_id is not None
    assert target.resumable is not None
    flipped = bytearray(data)
    flipped[5] ^= 0x01  # one bit of part 1 rots on the source meanwhile
    source.put("big", bytes(flipped))
    with pytest.raises(CorruptSource):
        transfer(source, target, "big", SIZE, sha256, resume)
    assert resume.reused == PART_SIZE  # part 2 still matched; part 1 did not
    assert resume.upload_id is None
    with pytest.raises(UploadGone):  # dropped with its parts, never completed
        target.resumable.parts("big", upload_id)
    assert [o.key for o in target.list()] == []


def test_an_upload_the_target_dropped_begins_again(ends: tuple[Backend, Backend, bytes]) -> None:
    source, target, data = ends
    sha256 = hashlib.sha256(data).hexdigest()
    resume = cut_after_two_parts(source, target, sha256)
    first = resume.upload_id
    assert first is not None
    assert target.resumable is not None
    target.resumable.abort("big", first)  # expired, or cleaned up by the provider
    kept: list[str | None] = []
    resume.keep = kept.append
    transfer(source, target, "big", SIZE, sha256, resume)
    assert resume.reused == 0
    assert len(kept) == 2
    assert kept[0] not in (None, first)
    assert kept[1] is None
    assert target.get("big") == data


def test_a_small_copy_is_checked_by_the_etag_the_target_answers_or_else_by_its_size(
    ends: tuple[Backend, Backend, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, _ = ends
    data = random.Random(4).randbytes(100_000)
    source.put("small", data)
    sha256 = hashlib.sha256(data).hexdigest()
    asked: list[str] = []
    head, put_whole = Backend.head, Backend.put_whole
    monkeypatch.setattr(Backend, "head", lambda self, key: asked.append(key) or head(self, key))
    transfer(source, target, "small", len(data), sha256)
    assert asked == []  # SeaweedFS answered the MD5 of what it stored
    assert target.get("small") == data

    # A target whose ETags are not MD5s (server-side encryption, say) is asked again.
    def other_etag(self: Backend, key: str, body: Any) -> str:
        put_whole(self, key, body)
        return "not-an-md5"

    monkeypatch.setattr(Backend, "put_whole", other_etag)
    transfer(source, target, "small", len(data), sha256)
    assert asked == ["small"]


def test_a_refusal_for_good_is_not_taken_for_an_outage(
    ends: tuple[Backend, Backend, bytes],
) -> None:
    _, target, _ = ends
    uploads = target.resumable
    assert uploads is not None
    upload_id = uploads.start("big")
    with pytest.raises(UploadRefused) as refused:  # S3 numbers parts 1 to 10,000
        uploads.send("big", upload_id, 10_001, b"x", hashlib.sha256(b"x").digest())
    assert not refused.value.retryable
    uploads.abort("big", upload_id)


def test_an_object_too_large_for_the_upload_part_limit_goes_in_larger_parts(
    ends: tuple[Backend, Backend, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 takes at most 10,000 parts (an object over 78 GiB in 8 MiB parts): here the
    limit is made 2, so the four-part object goes in two parts, and a cut copy resumes
    from the same boundaries."""
    monkeypatch.setattr(multipart, "MAX_PARTS", 2)
    source, target, data = ends
    sha256 = hashlib.sha256(data).hexdigest()
    step = multipart.part_size_for(SIZE)
    assert step == 13 * multipart.MIB  # whole MiB: 2 x 13 MiB holds 3 x 8 MiB + 1000 bytes
    resume = Resume(keep=lambda _: None)
    with pytest.raises(StorageUnavailable, match="stopped answering"):
        transfer(CutShort(source, step + 1), target, "big", SIZE, sha256, resume)
    assert resume.upload_id is not None
    assert target.resumable is not None
    held = target.resumable.parts("big", resume.upload_id)
    assert sorted(held) == [1]
    assert held[1].size == step
    transfer(source, target, "big", SIZE, sha256, resume)
    assert resume.reused == step
    assert target.get("big") == data


def test_a_part_whose_body_does_not_match_its_sha256_is_refused_and_can_be_sent_again(
    ends: tuple[Backend, Backend, bytes],
) -> None:
    """The body is not signed (that would hash every part once more): the SHA-256 sent
    with the part is what the server checks it against."""
    _, target, data = ends
    uploads = target.resumable
    assert uploads is not None
    signed: list[str] = []

    def record(request: Any, **_: Any) -> None:
        value = request.headers["X-Amz-Content-SHA256"]
        signed.append(value.decode() if isinstance(value, bytes) else value)

    uploads._s3().meta.events.register("before-send.s3.UploadPart", record)
    upload_id = uploads.start("big")
    part = data[:PART_SIZE]
    damaged = bytes([part[0] ^ 1]) + part[1:]
    with pytest.raises(StorageUnavailable, match="BadDigest") as refused:
        uploads.send("big", upload_id, 1, damaged, hashlib.sha256(part).digest())
    assert refused.value.retryable  # damaged on the way: sending it again may succeed
    assert uploads.parts("big", upload_id) == {}
    sent = uploads.send("big", upload_id, 1, part, hashlib.sha256(part).digest())
    assert sorted(uploads.parts("big", upload_id)) == [1]
    uploads.complete("big", upload_id, [sent])
    assert target.get("big") == part
    assert signed == ["UNSIGNED-PAYLOAD", "UNSIGNED-PAYLOAD"]


def test_a_copy_waiting_to_try_again_ends_as_soon_as_the_run_stops(
    ends: tuple[Backend, Backend, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target, _ = ends
    data = b"ciphertext" * 1000
    source.put("small", data)
    tries: list[str] = []

    stopping = threading.Event()

    def down(self: Backend, key: str, body: Any) -> str:
        tries.append(key)
        threading.Timer(0.2, stopping.set).start()  # Ctrl-C while the copy waits
        raise StorageUnavailable("the target stopped answering")

    monkeypatch.setattr(Backend, "put_whole", down)
    began = time.monotonic()
    outcome = copy_object(source, target, "small", len(data), hashlib.sha256(data).hexdigest(),
                          retries=5, backoff_s=30.0, stopping=stopping)  # fmt: skip
    assert time.monotonic() - began < 30.0  # the first pause was not waited out
    assert (outcome.state, outcome.tries, tries) == ("stopped", 1, ["small"])
    assert "small" not in {o.key for o in target.list()}


class StopsAfterOneChunk(Backend):
    """The source; the run is told to stop once the first chunk of an object is read."""

    def __init__(self, real: Backend, stopping: threading.Event) -> None:
        super().__init__(real._store, kind=real.kind, describe=real.describe,
                         features=real.features)  # fmt: skip
        self.stopping = stopping

    def open(self, key: str, chunk_size: int = PART_SIZE, *, keep: bool = False) -> Any:
        for chunk in super().open(key, chunk_size, keep=keep):
            yield chunk
            self.stopping.set()


def test_a_streamed_copy_told_to_stop_ends_at_its_next_chunk_and_leaves_nothing(
    ends: tuple[Backend, Backend, bytes],
) -> None:
    """Without an upload kept between runs (resume), a large object is streamed: told
    to stop, its upload is abandoned, unseen."""
    source, target, data = ends
    stopping = threading.Event()
    outcome = copy_object(StopsAfterOneChunk(source, stopping), target, "big", SIZE,
                          hashlib.sha256(data).hexdigest(), retries=0, backoff_s=0,
                          stopping=stopping)  # fmt: skip
    assert (outcome.state, outcome.tries) == ("stopped", 1)
    assert "stopped after" in outcome.error
    assert [o.key for o in target.list()] == []
