"""Parquet Modular Encryption with the hub's keys (pyarrow's ``CryptoFactory``).

Every column is encrypted with the KEK of its sensitivity class (double wrapping:
per-file data keys wrapped by per-class KEKs, the master key identifiers being the
class names), and so is the footer, so a stored file shows neither column names nor
statistics. Column keys act as column access control: a reader without the
``identifiers`` KEK reads the other columns and fails on those.

The file's wrapped keys are kept inside it (internal key material): rotating the KEKs
of Parquet files needs external key material and is not supported, so a KEK version
that wraps a dataset version's keys cannot be retired. :func:`rekey` writes a file
again under fresh keys wrapped by the current KEKs (a re-keying migration does, for
every part it moves), after which the older versions no longer wrap it.
pyarrow pitfalls (measured here): ``plaintext_footer=True`` is silently ignored with
uniform encryption, and reading column metadata of an encrypted column of a
plaintext-footer file without keys aborts the process; this module never writes
plaintext footers.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from hdh.crypto.keyfile import SENSITIVITIES
from hdh.crypto.keys import KeyProvider, WrappedKey, check_sensitivity

DEFAULT_SENSITIVITY = "clinical"
FOOTER_KEY = "clinical"


class HubKmsClient(pe.KmsClient):  # type: ignore[misc]
    """Wraps pyarrow's key-encryption keys with the hub's KEKs; the master key
    identifier is the sensitivity class."""

    def __init__(self, keys: KeyProvider, used: dict[str, int] | None = None) -> None:
        super().__init__()
        self._keys = keys
        #: When given: each class whose KEK was used, with the version (the latest seen).
        self._used = used

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        wrapped = self._keys.wrap(check_sensitivity(master_key_identifier), bytes(key_bytes))
        if self._used is not None:
            self._used[master_key_identifier] = wrapped.kek_version
        return f"{wrapped.kek_version}:{wrapped.to_text()}"

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        version, _, blob = wrapped_key.partition(":")
        if self._used is not None:
            self._used[master_key_identifier] = int(version)
        return self._keys.unwrap(
            WrappedKey(master_key_identifier, int(version), base64.b64decode(blob))
        )


def _factory(keys: KeyProvider, used: dict[str, int] | None = None) -> pe.CryptoFactory:
    return pe.CryptoFactory(lambda _config: HubKmsClient(keys, used))


def _column_keys(schema: pa.Schema, sensitivity: Mapping[str, str]) -> dict[str, list[str]]:
    unknown = set(sensitivity) - set(schema.names)
    if unknown:
        raise ValueError(f"no such columns: {', '.join(sorted(unknown))}")
    groups: dict[str, list[str]] = {s: [] for s in SENSITIVITIES}
    for name in schema.names:
        groups[check_sensitivity(sensitivity.get(name, DEFAULT_SENSITIVITY))].append(name)
    return {s: cols for s, cols in groups.items() if cols}


def encryption_properties(
    keys: KeyProvider,
    schema: pa.Schema,
    sensitivity: Mapping[str, str],
    used: dict[str, int] | None = None,
) -> Any:
    """File encryption properties: every column under its class's KEK, footer encrypted.
    The file's keys are made and wrapped here, not when the file is written: ``used``,
    if given, receives the KEK version of each class that wraps them."""
    return _factory(keys, used).file_encryption_properties(
        pe.KmsConnectionConfig(), _configuration(_column_keys(schema, sensitivity))
    )


def _configuration(column_keys: dict[str, list[str]]) -> Any:
    return pe.EncryptionConfiguration(
        footer_key=FOOTER_KEY,
        column_keys=column_keys,
        encryption_algorithm="AES_GCM_V1",
        plaintext_footer=False,
        double_wrapping=True,
        internal_key_material=True,
        data_key_length_bits=256,
        cache_lifetime=timedelta(minutes=5),
    )


def decryption_properties(keys: KeyProvider, used: dict[str, int] | None = None) -> Any:
    return _factory(keys, used).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=timedelta(minutes=5))
    )


def write_encrypted(
    table: pa.Table, sink: Any, keys: KeyProvider, sensitivity: Mapping[str, str]
) -> None:
    """Write ``table`` as encrypted Parquet to ``sink`` (a path or a pyarrow stream)."""
    pq.write_table(
        table,
        sink,
        encryption_properties=encryption_properties(keys, table.schema, sensitivity),
    )


def read_encrypted(
    source: Any, keys: KeyProvider, columns: list[str] | None = None, *, threads: bool = True
) -> pa.Table:
    """``threads=False`` decodes on the calling thread only: for a caller that runs its own
    threads (ingestion), pyarrow's pool then adds contention, not speed (measured: 2.7x
    the CPU time for the same read on two cores)."""
    return pq.read_table(
        source,
        columns=columns,
        decryption_properties=decryption_properties(keys),
        use_threads=threads,
    )


@dataclass(frozen=True)
class Rekeyed:
    """A Parquet file written again under fresh keys."""

    data: bytes
    #: What it holds, decoded: the same as the original's.
    table: pa.Table
    #: The KEK version of each class that wraps its keys.
    keks: dict[str, int]
    #: The same, for the original file.
    original_keks: dict[str, int]


def _codec(name: str) -> str:
    return "none" if name == "UNCOMPRESSED" else name.lower()


def rekey(source: Any, keys: KeyProvider) -> Rekeyed:
    """Decrypt the encrypted Parquet file ``source`` (a buffer) and write it again under
    fresh data keys wrapped by the current KEKs: each column under the class it had,
    with its compression, in row groups of the same sizes.

    A file does not say which class's key encrypts each column except by asking for
    it: each column is read on its own, with a key client of its own that notes the
    classes it unwraps (the footer's is always ``clinical``). Raises ``OSError`` when
    the file does not decrypt.
    """
    opened = pq.ParquetFile(
        pa.BufferReader(source), decryption_properties=decryption_properties(keys)
    )
    meta = opened.metadata
    schema = opened.schema_arrow
    classes: dict[str, str] = {}
    columns = []
    original: dict[str, int] = {}
    for name in schema.names:
        used: dict[str, int] = {}
        columns.append(
            pq.read_table(
                pa.BufferReader(source),
                columns=[name],
                decryption_properties=decryption_properties(keys, used),
                use_threads=False,
            ).column(0)
        )
        original.update(used)
        own = set(used) - {FOOTER_KEY}
        if len(own) > 1:
            raise OSError(f"column {name!r} holds parts under several key classes")
        classes[name] = own.pop() if own else FOOTER_KEY
    table = pa.Table.from_arrays(columns, schema=schema)
    compression: dict[str, str] = {}
    if meta.num_row_groups:
        first = meta.row_group(0)
        for index in range(first.num_columns):
            column = first.column(index)
            compression.setdefault(column.path_in_schema.split(".")[0], _codec(column.compression))
    wrapped: dict[str, int] = {}
    properties = _factory(keys, wrapped).file_encryption_properties(
        pe.KmsConnectionConfig(), _configuration(_column_keys(schema, classes))
    )
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink, schema, encryption_properties=properties, compression=compression or "snappy"
    ) as writer:
        offset = 0
        for index in range(meta.num_row_groups):
            rows = meta.row_group(index).num_rows
            writer.write_table(table.slice(offset, rows), row_group_size=max(rows, 1))
            offset += rows
    return Rekeyed(
        data=sink.getvalue().to_pybytes(), table=table, keks=wrapped, original_keks=original
    )
