"""The S3 and Azure servers the harness starts are real: objects go in, come back whole,
list, range-read and delete through obstore, the library the storage layer is built on."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import obstore
import pytest
from obstore.store import AzureStore, S3Store

from hdh.devservers import AzuriteServer, SeaweedFSServer


@pytest.fixture
def s3_store(s3_server: SeaweedFSServer) -> Any:
    bucket = s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")
    return S3Store(
        bucket,
        endpoint=s3_server.endpoint,
        access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key,
        region=s3_server.region,
        client_options={"allow_http": True},
    )


@pytest.fixture
def azure_store(azure_server: AzuriteServer) -> Any:
    container = azure_server.create_container(f"t-{uuid.uuid4().hex[:12]}")
    return AzureStore(
        container,
        account_name=azure_server.account,
        account_key=azure_server.key,
        endpoint=azure_server.endpoint,
        client_options={"allow_http": True},
    )


def round_trip(store: Any) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    obstore.put(store, "projects/p1/out.bin", body)
    obstore.put(store, "datasets/d1/v1/part-0.parquet", b"PAR1")
    got = bytes(obstore.get(store, "projects/p1/out.bin").bytes())
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    assert bytes(obstore.get_range(store, "projects/p1/out.bin", start=10, end=20)) == body[10:20]
    listed = sorted(o["path"] for batch in obstore.list(store) for o in batch)
    assert listed == ["datasets/d1/v1/part-0.parquet", "projects/p1/out.bin"]
    assert obstore.head(store, "projects/p1/out.bin")["size"] == len(body)
    obstore.delete(store, "projects/p1/out.bin")
    with pytest.raises(FileNotFoundError):
        obstore.get(store, "projects/p1/out.bin")


@pytest.mark.s3
def test_seaweedfs_stores_and_returns_objects(s3_store: Any) -> None:
    round_trip(s3_store)


@pytest.mark.azure
def test_azurite_stores_and_returns_objects(azure_store: Any) -> None:
    round_trip(azure_store)
