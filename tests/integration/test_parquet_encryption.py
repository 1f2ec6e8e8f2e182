"""Encrypted Parquet on every backend: the stored bytes hide the data and the column
names, a reader without keys fails, and a reader without the identifiers KEK reads only
the other columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hdh.crypto.keyfile import create_key_file
from hdh.crypto.keys import LocalKeyProvider, WrappedKey
from hdh.crypto.parquet import read_encrypted, write_encrypted
from hdh.errors import PermissionDenied
from hdh.storage.locations import open_backend
from tests.integration.test_backend_conformance import make_location

MARKER = "MARKER-8c1e-PATIENT"
COLUMNS = {"nir_secret_col": "identifiers", "diagnosis_marker_col": "clinical"}


class WithoutIdentifiers(LocalKeyProvider):
    """A reader holding every KEK but the identifiers one."""

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if wrapped.sensitivity == "identifiers":
            raise PermissionDenied("no access to the identifiers key")
        return super().unwrap(wrapped)


def sample() -> pa.Table:
    n = 5000
    return pa.table(
        {
            "nir_secret_col": [f"1850578006084{i:04d}-{MARKER}" for i in range(n)],
            "diagnosis_marker_col": [f"E11.{i % 10} {MARKER}" for i in range(n)],
            "region_col": [["IDF", "ARA", "OCC"][i % 3] for i in range(n)],
            "year_col": [2015 + i % 10 for i in range(n)],
        }
    )


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("local"),
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("azure", marks=pytest.mark.azure),
    ],
)
def test_stored_parquet_hides_data_and_column_names(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    create_key_file(tmp_path / "hub.key", created_at="t")
    keys = LocalKeyProvider(tmp_path / "hub.key")
    location, env = make_location(kind, request, tmp_path)
    backend = open_backend(location, hub_dir=tmp_path, environ=env)
    table = sample()
    sink = pa.BufferOutputStream()
    write_encrypted(table, sink, keys, COLUMNS)
    backend.put("datasets/demo/v1/part-0.parquet", sink.getvalue().to_pybytes())

    stored = b"".join(backend.get(o.key) for o in backend.list())
    assert stored.startswith(b"PARE")  # an encrypted-footer Parquet file
    for needle in [MARKER, *table.schema.names, "E11.", "IDF"]:
        assert needle.encode() not in stored, f"{needle!r} found in the stored bytes"

    raw = backend.get("datasets/demo/v1/part-0.parquet")
    with pytest.raises(OSError, match="Could not read encrypted metadata"):
        pq.read_table(pa.BufferReader(raw))
    assert read_encrypted(pa.BufferReader(raw), keys).equals(table)

    partial = WithoutIdentifiers(tmp_path / "hub.key")
    others = read_encrypted(
        pa.BufferReader(raw), partial, columns=["diagnosis_marker_col", "region_col", "year_col"]
    )
    assert others.num_rows == table.num_rows
    with pytest.raises(PermissionDenied, match="no access to the identifiers key"):
        read_encrypted(pa.BufferReader(raw), partial, columns=["nir_secret_col"])
