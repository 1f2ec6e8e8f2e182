"""Writing an encrypted Parquet file again under fresh keys: the same rows, each column
under the class it had and with its compression, the same row groups, and keys wrapped
by the current KEK versions only."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hdh.crypto.keyfile import create_key_file, read_key_file, write_key_file
from hdh.crypto.keys import LocalKeyProvider
from hdh.crypto.parquet import decryption_properties, encryption_properties, read_encrypted, rekey
from hdh.errors import IntegrityError


@pytest.fixture
def keys(tmp_path: Path) -> LocalKeyProvider:
    path = tmp_path / "hub.key"
    create_key_file(path, created_at="t0")
    return LocalKeyProvider(path)


def written(keys: LocalKeyProvider) -> bytes:
    table = pa.table(
        {
            "person": pa.array([f"{i:064x}" for i in range(3000)]),
            "age": pa.array([i % 97 for i in range(3000)], pa.int16()),
            "note": pa.array(["x" * (i % 7) for i in range(3000)]),
        }
    ).replace_schema_metadata({"hdh": "kept"})
    sink = pa.BufferOutputStream()
    properties = encryption_properties(keys, table.schema, {"person": "identifiers"})
    with pq.ParquetWriter(
        sink, table.schema, encryption_properties=properties,
        compression={"person": "none", "age": "zstd", "note": "snappy"},
    ) as writer:  # fmt: skip
        writer.write_table(table.slice(0, 1000), row_group_size=1000)
        writer.write_table(table.slice(1000), row_group_size=2000)
    return sink.getvalue().to_pybytes()


def retire(keys: LocalKeyProvider, cls: str, version: int) -> LocalKeyProvider:
    keys.retire(cls, version)
    return LocalKeyProvider(keys.path)


def test_the_same_rows_under_new_keys_with_each_column_as_it_was(keys: LocalKeyProvider) -> None:
    original = written(keys)
    keys.rotate("identifiers", created_at="t1")
    keys.rotate("clinical", created_at="t1")
    made = rekey(original, keys)
    assert made.keks == {"clinical": 2, "identifiers": 2}
    assert made.data != original
    assert made.table.equals(read_encrypted(pa.BufferReader(original), keys), check_metadata=True)
    again = read_encrypted(pa.BufferReader(made.data), keys)
    assert again.equals(made.table, check_metadata=True)
    assert again.schema.metadata == {b"hdh": b"kept"}
    meta = pq.ParquetFile(
        pa.BufferReader(made.data),
        decryption_properties=decryption_properties(keys),
    ).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 2000]
    assert [meta.row_group(0).column(i).compression for i in range(3)] == [
        "UNCOMPRESSED", "ZSTD", "SNAPPY",
    ]  # fmt: skip

    # Version 1 of both classes can go: the new file no longer needs it, the old does.
    keys = retire(retire(keys, "identifiers", 1), "clinical", 1)
    assert read_encrypted(pa.BufferReader(made.data), keys).equals(made.table)
    with pytest.raises(IntegrityError, match="version 1 was retired"):
        read_encrypted(pa.BufferReader(original), keys)


def test_each_column_keeps_its_class(keys: LocalKeyProvider) -> None:
    made = rekey(written(keys), keys)
    # Without the identifiers KEK, the clinical columns still read and the person does not.
    document = read_key_file(keys.path)
    for entry in document["keks"]["identifiers"]:
        entry["material"] = base64.b64encode(bytes(32)).decode("ascii")
    write_key_file(keys.path, json.loads(json.dumps(document)))
    without = LocalKeyProvider(keys.path)
    assert read_encrypted(pa.BufferReader(made.data), without, ["age", "note"]).num_rows == 3000
    with pytest.raises(IntegrityError, match="does not unwrap"):
        read_encrypted(pa.BufferReader(made.data), without, ["person"])


def test_a_file_that_does_not_decrypt_is_refused(keys: LocalKeyProvider) -> None:
    original = bytearray(written(keys))
    original[len(original) // 2] ^= 0x10
    with pytest.raises(OSError, match="decryption"):
        rekey(bytes(original), keys)
