"""S3 multipart uploads that outlive the process which began them.

A large object is sent to an S3 location in numbered parts under an upload id the
server gives; the parts stay on the server, invisible, until the upload is completed
(the object appears whole, at once) or aborted. Keeping the upload id elsewhere (the
migration keeps it in the database) lets a later process ask which parts are there and
send only the others: a copy cut by a crash resumes part by part.

Every part is sent with its SHA-256 (``x-amz-checksum-sha256``), which the server
checks before it keeps the part (``BadDigest`` otherwise). The request's signature
covers that header but not the body (``UNSIGNED-PAYLOAD``): signing the body would hash
every part once more. A part found on the server is trusted only if its size and its
MD5 (the part's ETag on S3 for unencrypted uploads) match the bytes the caller has just
read for it.

This talks to S3 through botocore: obstore, which the rest of the storage layer uses,
does not expose upload ids.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from hdh.errors import HubError
from hdh.storage.backend import PART_SIZE, StorageDenied, StorageUnavailable

#: Connections kept to the server: parts of several objects go at once.
MAX_CONNECTIONS = 64
#: S3 numbers the parts of one upload from 1 to 10,000.
MAX_PARTS = 10_000
MIB = 1024 * 1024


def part_size_for(size: int) -> int:
    """The part size for an object of ``size`` bytes: PART_SIZE (8 MiB), or for an
    object that would need more than MAX_PARTS parts (over 78 GiB) the least whole
    number of MiB that fits it in MAX_PARTS. It depends on the size alone, so every try
    at one object cuts it at the same places and a resumed upload's parts line up."""
    least = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-least // MIB) * MIB)


def etag_is_md5(etag: str, data: Any) -> bool:
    """Whether an S3 ETag is the MD5 of ``data``: what the server stored is ``data``
    (S3 gives the MD5 of an object sent in one request, and of each part, unless the
    server encrypts it with keys of its own)."""
    return etag.strip('"').lower() == hashlib.md5(data, usedforsecurity=False).hexdigest()


#: Answers that may go away when asked again; any other refusal is permanent.
RETRYABLE = frozenset({"BadDigest", "InternalError", "RequestTimeout", "ServiceUnavailable",
                       "SlowDown", "RequestTimeTooSkewed"})  # fmt: skip


@dataclass(frozen=True)
class PartOnServer:
    number: int
    size: int
    etag: str  # quoted, as the server gives it

    def holds(self, data: Any) -> bool:
        """Whether this part is ``data``."""
        return self.size == len(data) and etag_is_md5(self.etag, data)


@dataclass(frozen=True)
class SentPart:
    number: int
    etag: str
    sha256: bytes


class ResumableUploads:
    """Multipart uploads to one S3 bucket (under ``prefix``), by upload id."""

    def __init__(
        self,
        *,
        endpoint: str,
        bucket: str,
        prefix: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        describe: str,
    ) -> None:
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.describe = describe
        self._options = {
            "endpoint_url": endpoint,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:  # made on first use: a botocore client takes a while to build
            if self._client is None:
                import botocore.session
                from botocore.config import Config

                self._client = botocore.session.get_session().create_client(
                    "s3",
                    **self._options,
                    config=Config(
                        # The body is not signed: signing hashes every part once more,
                        # and the SHA-256 each part carries already makes the server
                        # refuse a body changed on the way (the headers, that SHA-256
                        # among them, are still signed).
                        s3={"addressing_style": "path", "payload_signing_enabled": False},
                        retries={"max_attempts": 1},  # the caller decides on retries
                        max_pool_connections=MAX_CONNECTIONS,
                        connect_timeout=10,
                        read_timeout=120,
                    ),
                )
            return self._client

    def warm(self) -> None:
        """Build the client now (it takes about half a second), e.g. in a thread of its
        own while the first objects are claimed; a failure shows at first use instead."""
        with contextlib.suppress(Exception):
            self._s3()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, action: str, key: str, operation: str, **arguments: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._s3(), operation)(
                Bucket=self.bucket, Key=self._key(key), **arguments
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == "NoSuchUpload":
                raise UploadGone(f"the upload of {key!r} is no longer on {self.describe}") from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            said = f"{code} {error.get('Message', '')}".strip()
            message = f"{self.describe} refused to {action} {key!r}: {said}"
            if status in (401, 403):
                raise StorageDenied(
                    message, hint="check the location's credentials and their permissions"
                ) from None
            if status >= 500 or code in RETRYABLE:
                raise StorageUnavailable(
                    message, hint="check that the location is reachable, then retry"
                ) from None
            raise UploadRefused(
                message, hint="check the location's bucket and settings (hdh location test)"
            ) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"could not {action} {key!r} on {self.describe}: {exc}",
                hint="check that the location is reachable (hdh location test), then retry",
            ) from None

    def start(self, key: str) -> str:
        """A new upload of ``key``: its id."""
        answer = self._call("begin an upload of", key, "create_multipart_upload",
                            ChecksumAlgorithm="SHA256")  # fmt: skip
        return str(answer["UploadId"])

    def parts(self, key: str, upload_id: str) -> dict[int, PartOnServer]:
        """The parts the server holds for this upload (raises :class:`UploadGone`)."""
        found: dict[int, PartOnServer] = {}
        marker = 0
        while True:
            answer = self._call("list the parts of", key, "list_parts", UploadId=upload_id,
                                PartNumberMarker=marker)  # fmt: skip
            for part in answer.get("Parts", []):
                number = int(part["PartNumber"])
                found[number] = PartOnServer(number, int(part["Size"]), str(part["ETag"]))
            if not answer.get("IsTruncated"):
                return found
            marker = int(answer["NextPartNumberMarker"])

    def send(self, key: str, upload_id: str, number: int, data: Any, sha256: bytes) -> SentPart:
        """Send part ``number``; the server refuses it unless its SHA-256 is ``sha256``."""
        answer = self._call(
            "send a part of", key, "upload_part", UploadId=upload_id, PartNumber=number,
            Body=data if isinstance(data, bytes) else bytes(data),
            ChecksumSHA256=base64.b64encode(sha256).decode(),
        )  # fmt: skip
        return SentPart(number, str(answer["ETag"]), sha256)

    def complete(self, key: str, upload_id: str, parts: list[SentPart]) -> None:
        """Make the object of these parts, in order, appear at ``key``."""
        listed = [
            {"PartNumber": p.number, "ETag": p.etag,
             "ChecksumSHA256": base64.b64encode(p.sha256).decode()}
            for p in sorted(parts, key=lambda p: p.number)
        ]  # fmt: skip
        self._call("complete the upload of", key, "complete_multipart_upload",
                   UploadId=upload_id, MultipartUpload={"Parts": listed})  # fmt: skip

    def abort(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts (nothing if it is gone already)."""
        with contextlib.suppress(UploadGone):
            self._call("abort the upload of", key, "abort_multipart_upload", UploadId=upload_id)


class UploadGone(StorageUnavailable):
    """The server no longer has the upload (completed, aborted or expired)."""


class UploadRefused(HubError):
    """The server refused the request for good (no such bucket, a part out of range…):
    asking again would not help."""

    code = "upload_refused"
