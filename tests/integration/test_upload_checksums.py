"""Uploads to S3 carry the SHA-256 of their body, and the S3 server the hub is tested
with refuses a body that does not match it: a copy corrupted on the way is never stored.
This is what lets a migration to S3 skip reading every object back."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from botocore.exceptions import ClientError

from hdh.devservers import SeaweedFSServer
from hdh.hub import Hub
from hdh.storage.locations import LocationSpec, add_location, get_location
from hdh.storage.objects import backend_for


class _Recorder(BaseHTTPRequestHandler):
    """Answers every PUT with 200 and keeps its headers and body."""

    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("ETag", '"e"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_s3_upload_carries_the_sha256_of_its_body(
    hub: Hub, recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name="s3", preset="seaweedfs", endpoint=recorder, bucket="bucket-one", country="FR",
        ), actor="t")  # fmt: skip
        location = get_location(session, "s3")
    monkeypatch.setenv("HDH_LOC_S3_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("HDH_LOC_S3_SECRET_ACCESS_KEY", "secret")
    body = b"ciphertext" * 1000
    assert backend_for(hub, location).features.server_checksum == "sha256"
    backend_for(hub, location).put("datasets/d/part-00000.parquet", body)
    [(headers, received)] = _Recorder.seen
    assert received == body
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert headers["x-amz-checksum-sha256"] == expected


@pytest.mark.s3
def test_seaweedfs_refuses_a_body_that_does_not_match_its_sha256(
    s3_server: SeaweedFSServer,
) -> None:
    s3 = s3_server.client()
    bucket = s3_server.create_bucket("checksums")
    body = b"ciphertext" * 1000
    flipped = bytes([body[0] ^ 1]) + body[1:]
    stated = base64.b64encode(hashlib.sha256(body).digest()).decode()
    with pytest.raises(ClientError, match="BadDigest"):
        s3.put_object(Bucket=bucket, Key="k", Body=flipped, ChecksumSHA256=stated)
    with pytest.raises(ClientError, match=r"Not Found|404"):
        s3.head_object(Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumSHA256=stated)
    stored = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert stored["ChecksumSHA256"] == stated
