"""Opening a source file as a stream of Arrow record batches, refusing bad input early.

Supported: CSV (``.csv``, ``.csv.gz``, ``.tsv``, ``.txt``, gzipped or not; delimiter
sniffed, header required, UTF-8 unless told otherwise), Parquet, and SAS (``.sas7bdat``,
``.xpt``, also ``.xpt5``/``.xpt8``) through pyreadstat. A file is checked against what its name
says before anything is read (gzip and Parquet magic bytes, no NUL bytes in a CSV);
column names must be present and distinct. Errors name the file and say what to do.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hdh.errors import InvalidInput

BATCH_BYTES = 16 * 1024 * 1024
SAS_BATCH_ROWS = 100_000
SAS7BDAT_MAGIC = b"\xc2\xea\x81\x60"
SNIFF_BYTES = 64 * 1024


class BadSource(InvalidInput):
    code = "bad_source"


@dataclass(frozen=True)
class Source:
    path: Path
    format: str  # "csv", "parquet", "sas7bdat" or "xport"
    compressed: bool
    delimiter: str | None
    encoding: str
    size: int
    header: tuple[str, ...] = ()  # a CSV's column names, read before the data


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _bad(path: Path, problem: str, hint: str) -> BadSource:
    return BadSource(f"{path.name}: {problem}", hint=hint)


def inspect_source(path: Path, *, encoding: str = "utf-8", delimiter: str | None = None) -> Source:
    """Say what ``path`` is, or refuse it with the reason."""
    if not path.is_file():
        raise _bad(path, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise _bad(path, "the file is empty (0 bytes)", "check that the export finished")
    name = path.name.lower()
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if name.endswith(".parquet"):
        if not head.startswith(b"PAR1"):
            raise _bad(
                path, "is not a Parquet file (it does not start with PAR1)", "check the file"
            )
        return Source(path, "parquet", False, None, "utf-8", size)
    if name.endswith(".sas7bdat"):
        if head[12:16] != SAS7BDAT_MAGIC:
            raise _bad(path, "is not a SAS7BDAT file (its header is wrong)", "check the file")
        return Source(path, "sas7bdat", False, None, encoding, size)
    if name.endswith((".xpt", ".xpt5", ".xpt8", ".xport")):
        if not head.startswith(b"HEADER RECORD*******"):
            raise _bad(path, "is not a SAS transport (XPT) file", "check the file")
        return Source(path, "xport", False, None, encoding, size)
    if not name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        raise _bad(
            path,
            "is not a format hdh ingests",
            "give a .csv, .tsv or .txt file (gzipped or not), .parquet, .sas7bdat or .xpt",
        )
    compressed = name.endswith(".gz")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _bad(path, f"unknown encoding {encoding!r}", "give e.g. utf-8 or latin-1") from None
    if compressed:
        if not head.startswith(b"\x1f\x8b"):
            raise _bad(path, "is not gzip-compressed, as its name says", "check the file")
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise _bad(path, f"the gzip data is damaged ({exc})", "export it again") from None
        if not head:
            raise _bad(
                path, "the file is empty once decompressed", "check that the export finished"
            )
    if b"\x00" in head:
        raise _bad(path, "holds binary data, not CSV text", "check the file and its extension")
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as exc:
        if len(head) - exc.start > 4:  # not just a character cut by the sniffing window
            raise _bad(
                path,
                f"is not valid {encoding} text (at byte {exc.start})",
                "give its encoding with --encoding (e.g. latin-1)",
            ) from None
        text = head[: exc.start].decode(encoding)
    if delimiter is None:
        first_lines = "\n".join(text.splitlines()[:20])
        try:
            delimiter = csv.Sniffer().sniff(first_lines, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = "\t" if ".tsv" in name else ","
    header = next(
        csv.reader(io.StringIO(text.splitlines()[0] if text else ""), delimiter=delimiter), []
    )
    check_column_names(path, header)
    return Source(path, "csv", compressed, delimiter, encoding, size, tuple(header))


def check_column_names(path: Path, names: list[str]) -> None:
    if not names:
        raise _bad(path, "has no header row", "add a header row naming each column")
    for position, column in enumerate(names, start=1):
        if not column.strip():
            raise _bad(path, f"column {position} has no name", "name every column in the header")
    for column in names:
        bad = sorted(set(column) & set(",:;"))
        if bad:
            raise _bad(
                path,
                f"column {column!r} contains {' '.join(repr(c) for c in bad)}, which encrypted "
                "Parquet cannot name",
                "rename the column in the source",
            )
    seen: set[str] = set()
    for column in names:
        if column in seen:
            raise _bad(path, f"column {column!r} appears twice", "give each column its own name")
        seen.add(column)


class _Counted(io.RawIOBase):
    """A file that counts the bytes read from it (the progress bar's position)."""

    def __init__(self, path: Path, counter: list[int]) -> None:
        self._fh = path.open("rb")
        self._counter = counter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        self._counter[0] += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def read_batches(
    source: Source,
    text_columns: frozenset[str] = frozenset(),
    *,
    all_text: bool = False,
    counter: list[int] | None = None,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The source's schema and its rows in batches (memory bounded by the batch size).

    ``text_columns`` of a CSV are read as text, not inferred: an identifier ``00123``
    must keep its zeros to get the same pseudonym as in a file where it is text.
    With ``all_text`` every column is read as text and nothing is taken for missing:
    a Table Schema then says what each column is and which values are missing.
    ``counter[0]`` follows the bytes of the file read so far (an estimate from the rows
    for Parquet and SAS).
    """
    counter = counter if counter is not None else [0]
    if source.format in ("sas7bdat", "xport"):
        schema, sas = _sas_batches(source)
        return schema, _estimated(sas, source, sas_rows(source), counter)
    if source.format == "parquet":
        try:
            parquet = pq.ParquetFile(source.path)
        except (OSError, pa.ArrowException) as exc:
            raise _bad(
                source.path, f"cannot be read as Parquet ({exc})", "check the file"
            ) from None
        check_column_names(source.path, parquet.schema_arrow.names)
        total = parquet.metadata.num_rows
        return parquet.schema_arrow, _guard(
            source, _estimated(parquet.iter_batches(batch_size=65_536), source, total, counter)
        )
    try:
        stream: Any = pa.PythonFile(_Counted(source.path, counter), mode="r")
        if source.compressed:
            stream = pa.CompressedInputStream(stream, "gzip")
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(encoding=source.encoding, block_size=BATCH_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=source.delimiter or ","),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=not all_text,
                null_values=[] if all_text else None,
                column_types={
                    name: pa.string() for name in (source.header if all_text else text_columns)
                },
            ),
        )
    except (OSError, pa.ArrowException, EOFError, zlib.error) as exc:
        raise _describe(source, exc) from None
    return reader.schema, _guard(source, reader)


def _estimated(
    batches: Iterator[pa.RecordBatch], source: Source, total: int | None, counter: list[int]
) -> Iterator[pa.RecordBatch]:
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        counter[0] = min(source.size, source.size * rows // total) if total else 0
        yield batch
    counter[0] = source.size


def _guard(source: Source, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Turn a reader's error in the middle of the file into a clear refusal."""
    try:
        yield from batches
    except (OSError, pa.ArrowException, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise _describe(source, exc) from None


def _describe(source: Source, exc: BaseException) -> BadSource:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Expected" in text and "columns" in text:
        return _bad(
            source.path,
            f"a row has the wrong number of fields ({text})",
            "fix that row, or check the delimiter (--delimiter)",
        )
    lowered = text.lower()
    if isinstance(exc, EOFError | zlib.error) or any(
        word in lowered for word in ("gzip", "zlib", "compressed")
    ):
        return _bad(
            source.path, f"the compressed data is cut or damaged ({text})", "export it again"
        )
    if "UTF8" in text or "utf-8" in text.lower() or isinstance(exc, UnicodeDecodeError):
        return _bad(
            source.path,
            f"is not valid {source.encoding} text ({text})",
            "give its encoding with --encoding (e.g. latin-1)",
        )
    return _bad(source.path, f"cannot be read ({text})", "check the file")


def sas_metadata(source: Source) -> dict[str, object]:
    """Labels, formats and value labels of a SAS file, kept in the version's manifest."""
    meta = _sas_read(source, metadataonly=True)[1]
    return {
        "file_label": meta.file_label,
        "column_labels": dict(zip(meta.column_names, meta.column_labels, strict=False)),
        "formats": dict(meta.original_variable_types),
        "value_labels": {
            k: {str(a): b for a, b in v.items()} for k, v in meta.variable_value_labels.items()
        },
        "rows": meta.number_rows,
    }


def sas_rows(source: Source) -> int | None:
    rows = _sas_read(source, metadataonly=True)[1].number_rows
    return int(rows) if rows is not None else None


def _sas_read(
    source: Source, *, metadataonly: bool = False, row_offset: int = 0, row_limit: int = 0
) -> tuple[dict[str, list[object]], Any]:
    import pyreadstat

    read = pyreadstat.read_sas7bdat if source.format == "sas7bdat" else pyreadstat.read_xport
    try:
        data, meta = read(
            str(source.path),
            output_format="dict",
            metadataonly=metadataonly,
            row_offset=row_offset,
            row_limit=row_limit,
        )
    except Exception as exc:
        raise _bad(source.path, f"cannot be read as SAS data ({exc})", "check the file") from None
    return data, meta


def _sas_batches(source: Source) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    def batch(data: dict[str, list[object]]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays(
            [pa.array(values, from_pandas=True) for values in data.values()], names=list(data)
        )

    first_data, meta = _sas_read(source, row_limit=SAS_BATCH_ROWS)
    check_column_names(source.path, list(first_data))
    first = batch(first_data)

    def rest() -> Iterator[pa.RecordBatch]:
        yield first
        offset = SAS_BATCH_ROWS
        while meta.number_rows is None or offset < meta.number_rows:
            data, _ = _sas_read(source, row_offset=offset, row_limit=SAS_BATCH_ROWS)
            if not data or not next(iter(data.values()), []):
                return
            yield batch(data).cast(first.schema)
            offset += SAS_BATCH_ROWS

    return first.schema, rest()
