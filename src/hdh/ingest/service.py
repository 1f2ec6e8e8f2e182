"""``ingest``: a source file in, an immutable, pseudonymised, encrypted version out.

Steps, in order, each before anything is published:

1. the source is checked (format, encoding, header) and hashed; a source already
   ingested into the dataset is reported, not duplicated;
2. the first batch is scanned for direct identifiers: each flagged column needs a rule;
3. the residency policy is checked for the target location (refusals are audited);
4. batches stream through the rules into Parquet parts encrypted with Parquet Modular
   Encryption, uploaded one by one;
5. the version row, its parts and its audit event are committed in one transaction.
   Only then is the version visible. A failure before that leaves an audited
   ``dataset.ingest`` failure and no version; uploaded parts are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import threading
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select

from hdh import audit, policy
from hdh.catalog.models import Dataset, DatasetVersion
from hdh.catalog.profile import Profiler
from hdh.catalog.service import get_schema, schema_names
from hdh.catalog.tableschema import (
    Conformed,
    Conformer,
    FieldSpec,
    Report,
    SchemaViolation,
    TableSchema,
)
from hdh.crypto.envelope import TamperedObject
from hdh.crypto.parquet import encryption_properties, read_encrypted
from hdh.errors import Conflict, HubError, IntegrityError, InvalidInput, NotFound
from hdh.governance.objections import both, keep_mask, objected
from hdh.hub import Hub
from hdh.ingest.detect import scan
from hdh.ingest.pseudonymise import Links, Pseudonymiser, parse_rules
from hdh.ingest.readers import Source, file_sha256, inspect_source, read_batches, sas_metadata
from hdh.storage.backend import Backend
from hdh.storage.locations import get_location
from hdh.storage.models import StoredObject
from hdh.storage.objects import backend_for, get_verified, private_tmp, seal

log = logging.getLogger("hdh.ingest")

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
ROWS_PER_PART = 1_000_000
#: Batches parsed ahead of the one being pseudonymised (each is about BATCH_BYTES of source):
#: a long first batch (every identifier new) leaves the reader time to get ahead.
READ_AHEAD = 8
#: Batches handed to the thread that writes parts, waiting for it or in its hands.
IN_FLIGHT = 4
#: Parts read back at once (see _PartWriter).
VERIFIERS = 2
#: Columns holding identifiers get the identifiers KEK; everything else the clinical one.
IDENTIFIER_ACTIONS = ("pseudonymise",)
ON_ERROR = ("refuse", "quarantine")


@dataclass
class IngestResult:
    dataset: str
    version: int
    rows: int
    parts: int
    stored_bytes: int
    already: bool = False
    warnings: list[str] = field(default_factory=list)
    quarantined: int = 0
    source: str = ""


@dataclass(frozen=True)
class IngestOptions:
    """What the steward said about one ingest (the CLI's options)."""

    rules: tuple[str, ...] = ()
    location: str = "local"
    encoding: str = "utf-8"
    delimiter: str | None = None
    #: The name of an imported Table Schema the file must conform to.
    schema: str | None = None
    #: COLUMN=PATTERN: a date or date-time column's strptime format, e.g. %d%b%Y:%H:%M:%S.
    formats: tuple[str, ...] = ()
    on_error: str = "refuse"
    collection: str | None = None
    #: In a folder, a rule applies to the tables that have its column.
    rules_where_present: bool = False
    #: Catalogue metadata set when given (title, description, producer, frequency, …).
    metadata: tuple[tuple[str, Any], ...] = ()


class IdentifiersFound(InvalidInput):
    code = "identifiers_found"


def _check_name(name: str) -> None:
    if not DATASET_NAME.match(name):
        raise InvalidInput(
            f"dataset name {name!r} is not allowed",
            hint="use lower-case letters, digits, '.', '-' or '_' (up to 100)",
        )


def ingest(
    hub: Hub,
    path: Path,
    *,
    name: str,
    actor: str,
    location: str = "local",
    rules: Sequence[str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    description: str = "",
    schema: str | None = None,
    formats: Sequence[str] = (),
    on_error: str = "refuse",
    progress: Callable[[int, int, int], None] | None = None,
) -> IngestResult:
    """Ingest ``path`` as a new version of dataset ``name`` (see the module docstring).

    Idempotent: ingesting the same source with the same rules again reports the
    existing version. Every refusal is audited as a ``dataset.ingest`` failure.
    """
    options = IngestOptions(
        rules=tuple(rules or ()),
        location=location,
        encoding=encoding,
        delimiter=delimiter,
        schema=schema,
        formats=tuple(formats),
        on_error=on_error,
        metadata=(("description", description),) if description else (),
    )
    return ingest_file(hub, path, name=name, actor=actor, options=options, progress=progress)


def ingest_file(
    hub: Hub,
    path: Path,
    *,
    name: str,
    actor: str,
    options: IngestOptions,
    progress: Callable[[int, int, int], None] | None = None,
) -> IngestResult:
    """:func:`ingest` with the options gathered in one object; refusals are audited."""
    try:
        return _ingest(hub, path, name, actor, options, progress)
    except policy.PlacementRefused:
        raise  # audited as placement.refused already
    except HubError as exc:
        _audit_failure(hub, name, actor, getattr(exc, "audit_reason", str(exc)), path)
        raise


@dataclass
class _Plan:
    """Everything checked about one file before a byte is published."""

    path: Path
    name: str
    source: Source
    source_sha: str
    conformer: Conformer | None
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    parsed: dict[str, str]
    warnings: list[str]
    already: IngestResult | None = None
    #: counter[0]: bytes of the source read so far.
    counter: list[int] = field(default_factory=lambda: [0])
    #: The SHA-256 of the imported schema file the rows were held to.
    schema_sha256: str | None = None
    #: Parsing the source ahead of ``batches``; closed once they are no longer wanted.
    reader: _Reader | None = None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.batches = iter(())


def _prepare(hub: Hub, path: Path, name: str, options: IngestOptions) -> _Plan:
    """Check the file, its schema and its identifiers; nothing is written."""
    _check_name(name)
    if options.on_error not in ON_ERROR:
        raise InvalidInput(
            f"--on-error {options.on_error!r} is not known", hint="use refuse or quarantine"
        )
    source = inspect_source(path, encoding=options.encoding, delimiter=options.delimiter)
    table_schema, schema_sha256 = _table_schema(hub, options)
    if table_schema is not None and options.schema and source.header:
        Conformer(table_schema).check_columns(source.header, path.name)
    wanted = (
        parse_rules(_rules_for(options, source.header), list(source.header))
        if source.header and options.rules
        else None
    )
    text_columns = frozenset(c for c, a in (wanted or {}).items() if a == "pseudonymise")
    full = table_schema is not None and options.schema is not None
    if table_schema is not None and not full:
        text_columns |= frozenset(table_schema.names)
    counter = [0]
    # Parsing starts now, while the source is hashed (both release the GIL).
    reader = _Reader(
        partial(
            read_batches,
            source,
            text_columns,
            all_text=full and source.format == "csv",
            counter=counter,
        )
    )
    try:
        return _check_source(
            hub, path, name, options, source, reader, table_schema, schema_sha256, wanted, counter
        )
    except BaseException:
        reader.close()
        raise


def _check_source(
    hub: Hub,
    path: Path,
    name: str,
    options: IngestOptions,
    source: Source,
    reader: _Reader,
    table_schema: TableSchema | None,
    schema_sha256: str | None,
    wanted: dict[str, str] | None,
    counter: list[int],
) -> _Plan:
    """The rest of :func:`_prepare`, once ``reader`` is parsing the source."""
    source_sha = file_sha256(path)
    with hub.read() as session:
        earlier = session.scalars(
            select(DatasetVersion)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == name, DatasetVersion.source_sha256 == source_sha)
            .order_by(DatasetVersion.number)
        ).all()
        for version in earlier:
            if wanted is None or version.manifest.get("rules") == wanted:
                already = IngestResult(
                    name,
                    version.number,
                    version.rows,
                    len(version.manifest["parts"]),
                    0,
                    already=True,
                    source=path.name,
                )
                reader.close()
                return _Plan(
                    path, name, source, source_sha, None, pa.schema([]), iter(()), {}, [], already
                )
    full = table_schema is not None and options.schema is not None
    raw_schema = reader.schema()
    batches = iter(reader)
    conformer = None
    schema = raw_schema
    if table_schema is not None:
        conformer = Conformer(table_schema, partial=not full)
        conformer.check_columns(raw_schema.names, path.name)
        schema = conformer.output_schema(raw_schema)
    # Published columns are all nullable: a Parquet source's NOT NULL is not kept, so
    # the same table from a CSV and a Parquet file gives the same version schema. A CSV
    # column with no value at all has no type to infer: it is published as text.
    schema = pa.schema(
        [
            (f.with_type(pa.string()) if pa.types.is_null(f.type) else f).with_nullable(True)
            for f in schema
        ]
    )
    parsed = parse_rules(_rules_for(options, schema.names), schema.names)
    first = next(batches, None)
    if first is not None and conformer is not None:
        # Scan the first batch as it will be published: typed by the schema.
        scanned = conformer.preview(first)
    else:
        scanned = first if first is not None else pa.RecordBatch.from_pylist([], schema=schema)
    findings = scan(scanned)
    unresolved = [f for f in findings if f.kind == "identifier" and f.column not in parsed]
    if unresolved:
        listing = "; ".join(f"{f.column} ({f.reason})" for f in unresolved)
        raise IdentifiersFound(
            f"{path.name} has columns that look like direct identifiers: {listing}",
            hint="say what to do with each: --rule COLUMN=drop, =pseudonymise, a "
            "generalisation, or =keep if it is not one",
        )
    warnings = [f"{f.column}: {f.reason}" for f in findings if f.kind == "free text"]
    return _Plan(
        path,
        name,
        source,
        source_sha,
        conformer,
        schema,
        _chain(first, batches),
        parsed,
        warnings,
        counter=counter,
        schema_sha256=schema_sha256,
        reader=reader,
    )


def _rules_for(options: IngestOptions, columns: Sequence[str]) -> list[str]:
    if not options.rules_where_present:
        return list(options.rules)
    return [r for r in options.rules if r.partition("=")[0] in columns]


def _table_schema(hub: Hub, options: IngestOptions) -> tuple[TableSchema | None, str | None]:
    """The schema the file is held to: an imported one, or the declared formats alone."""
    declared: list[FieldSpec] = []
    for item in options.formats:
        column, sep, pattern = item.partition("=")
        if not sep or not column or "%" not in pattern:
            raise InvalidInput(
                f"format {item!r} is not COLUMN=PATTERN",
                hint="write e.g. BIRTH=%d%b%Y:%H:%M:%S or ENT_DAT=%d%m%Y (strptime codes)",
            )
        kind = "datetime" if re.search("%[HIMSp]", pattern) else "date"
        declared.append(FieldSpec(name=column, type=kind, format=pattern))
    if options.schema:
        imported = get_schema(hub, options.schema)
        entry = imported.schema
        if declared:
            overrides = {f.name: f for f in declared}
            unknown = [n for n in overrides if n not in entry.names]
            if unknown:
                raise InvalidInput(
                    f"--format names {', '.join(unknown)}, not in schema {entry.name!r}",
                    hint="declare formats only for the schema's columns",
                )
            entry = replace(entry, fields=tuple(overrides.get(f.name, f) for f in entry.fields))
        return entry, imported.sha256
    if declared:
        return TableSchema(name="declared formats", fields=tuple(declared)), None
    return None, None


def _ingest(
    hub: Hub,
    path: Path,
    name: str,
    actor: str,
    options: IngestOptions,
    progress: Callable[[int, int, int], None] | None,
) -> IngestResult:
    plan = _prepare(hub, path, name, options)
    if plan.already is not None:
        return plan.already
    try:
        return _publish(hub, plan, actor, options, progress)
    finally:
        plan.close()


def _publish(
    hub: Hub,
    plan: _Plan,
    actor: str,
    options: IngestOptions,
    progress: Callable[[int, int, int], None] | None,
) -> IngestResult:
    name, path, source = plan.name, plan.path, plan.source
    parsed = plan.parsed
    secret_version: int | None = None
    secret = b""
    if "pseudonymise" in parsed.values():
        secret_version, secret = hub.keys.pseudonym_secret()
    pseudonymiser = Pseudonymiser(parsed, secret, secret_version or 0)
    out_schema = pseudonymiser.output_schema(plan.schema)
    # Under a newer secret than the oldest: record each pseudonym's anchor (see Links).
    links: Links | None = None
    excluded_anchor: frozenset[str] = frozenset()
    if secret_version is not None:
        anchor_version = hub.keys.pseudonym_secret_versions()[0]
        if anchor_version != secret_version:
            anchor_secret = hub.keys.pseudonym_secret(anchor_version)[1]
            links = Links(Pseudonymiser({}, anchor_secret, anchor_version))
            # Objections recorded before the rotation are known by their anchor pseudonym.
            excluded_anchor = objected(hub, anchor_version)
    # People who object to further use are left out of every new version.
    pseudonymised = [c for c, a in parsed.items() if a == "pseudonymise" and c in out_schema.names]
    excluded = objected(hub, secret_version) if secret_version is not None else frozenset()
    left_out = 0
    location = options.location
    what = f"dataset {name!r} on location {location!r}"
    with hub.transaction() as session:
        target = get_location(session, location)
        refused = policy.check_placement(session, target, "health", actor=actor, what=what)
        number = (
            session.scalar(
                select(func.max(DatasetVersion.number))
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(Dataset.name == name)
            )
            or 0
        ) + 1
        session.expunge(target)
    if refused is not None:
        raise refused
    backend = backend_for(hub, target)
    # A fresh folder per attempt: two ingests racing for one version number never write
    # to (or clean up) each other's parts.
    folder = f"v{number}-{uuid.uuid4().hex[:8]}"
    prefix = f"datasets/{name}/{folder}"
    sensitivity = {
        col: ("identifiers" if action in IDENTIFIER_ACTIONS else "clinical")
        for col, action in parsed.items()
        if col in out_schema.names
    }
    parts: list[dict[str, Any]] = []
    uploaded: list[str] = []
    profiler = Profiler(out_schema)
    try:
        writer = _PartWriter(
            hub, backend, prefix, out_schema, sensitivity, parts, profiler, pseudonymised
        )
        quarantine = (
            _QuarantineWriter(hub, backend, f"quarantine/{name}/{folder}/rows.parquet")
            if options.on_error == "quarantine"
            else None
        )
        rows = 0
        refusing = False
        with writer:
            for batch in plan.batches:
                if plan.conformer is not None:
                    conformed = plan.conformer.conform(batch)
                    if conformed.bad_rows:
                        if quarantine is None:
                            refusing = True  # keep reading: the report counts every error
                        else:
                            quarantine.write(batch, conformed)
                    if refusing:
                        continue
                    good = conformed.good()
                else:
                    good = batch
                converted = pseudonymiser.apply(good)
                if converted.schema != out_schema:
                    converted = converted.cast(out_schema)
                anchored = {}
                if links is not None:
                    for column in pseudonymised:
                        anchored[column] = links.add(
                            good.column(column), converted.column(column), column
                        )
                keep = keep_mask(converted, pseudonymised, excluded)
                if anchored and excluded_anchor:
                    keep = both(keep, keep_mask(pa.table(anchored), pseudonymised,
                                                excluded_anchor))  # fmt: skip
                if keep is not None:
                    before = converted.num_rows
                    converted = converted.filter(keep)
                    left_out += before - converted.num_rows
                writer.write(converted)
                rows += converted.num_rows
                if progress is not None:
                    progress(rows, plan.counter[0], source.size)
        report = plan.conformer.report if plan.conformer is not None else None
        if refusing and report is not None:
            raise SchemaViolation(
                f"{path.name} breaks schema {plan.conformer.schema.name!r} in "  # type: ignore[union-attr]
                f"{report.bad_rows} of {report.rows} rows: {report.summary()}",
                hint="fix the file, or publish the valid rows and keep the others apart "
                "with --on-error quarantine",
                audit_reason=f"schema violations in {report.bad_rows} of {report.rows} rows: "
                + ", ".join(f"{p.column} {p.check} ({p.count})" for p in report.problems.values())[
                    :400
                ],
            )
        quarantined: dict[str, Any] | None = None
        if quarantine is not None:
            quarantined = quarantine.close()
            if quarantined is not None:
                uploaded.append(quarantined["key"])

        linked: dict[str, Any] | None = None
        sealed_links = None
        if links is not None:
            buffer = pa.BufferOutputStream()
            pq.write_table(links.table(), buffer)
            links_key = f"{prefix}/links.parquet"
            sealed_links = seal(hub, backend, links_key, buffer.getvalue().to_pybytes(),
                                sensitivity="identifiers")  # fmt: skip
            uploaded.append(links_key)
            linked = {
                "key": links_key, "size": sealed_links.stored.size,
                "sha256": sealed_links.stored.sha256, "anchor_version": links.anchor_version,
                "pairs": len(links),
            }  # fmt: skip

        manifest = {
            "dataset": name,
            "version": number,
            "source": {
                "name": path.name,
                "sha256": plan.source_sha,
                "size": source.size,
                "format": source.format,
                "encoding": source.encoding if source.format == "csv" else None,
                "delimiter": source.delimiter,
            },
            "schema": [{"name": f.name, "type": str(f.type)} for f in out_schema],
            "rows": rows,
            "parts": parts,
            "rules": parsed,
            "table_schema": options.schema,
            # A later import may change the schema of that name: this says which one.
            "table_schema_sha256": plan.schema_sha256,
            "formats": list(options.formats),
            "validation": _validation(report, quarantined),
            "source_metadata": sas_metadata(source)
            if source.format in ("sas7bdat", "xport")
            else None,
            "pseudonym_secret_version": secret_version,
            # Under a newer secret: each pseudonym's anchor, encrypted (see Links).
            "pseudonym_links": linked,
            "column_keys": sensitivity,
            # The KEK versions that wrap this version's Parquet keys (kept in the files):
            # retiring one of them is refused while this version exists.
            # (Those of the quarantine are recorded with it.)
            "kek_versions": dict(sorted(writer.keks.items())),
            "warnings": plan.warnings,
            # Rows of people who object, left out (a count only).
            "objections_excluded": left_out,
            "profile": profiler.result(),
        }
        # The manifest also goes next to the parts, encrypted, so that the location
        # alone is enough to rebuild the catalogue.
        manifest_key = f"{prefix}/manifest.json"
        sealed = seal(
            hub,
            backend,
            manifest_key,
            json.dumps(manifest, sort_keys=True, default=str).encode("utf-8"),
            sensitivity="clinical",
        )
        uploaded.append(manifest_key)
        now = audit.utc_timestamp()
        with hub.transaction() as session:
            session.add(sealed.data_key)
            session.add(
                StoredObject(
                    location_id=target.id,
                    key=manifest_key,
                    size=sealed.stored.size,
                    sha256=sealed.stored.sha256,
                    plain_size=sealed.plain_size,
                    data_class="health",
                    format="envelope",
                    data_key_id=sealed.data_key.id,
                    created_at=now,
                )
            )
            dataset = session.scalar(select(Dataset).where(Dataset.name == name))
            if dataset is None:
                dataset = Dataset(name=name, description="", data_class="health", created_at=now)
                session.add(dataset)
            metadata = dict(options.metadata)
            for key, value in metadata.items():
                if value not in (None, "", ()):
                    setattr(dataset, key, list(value) if key == "keywords" else value)
            if options.collection:
                dataset.collection = options.collection
            if options.schema:
                dataset.schema_name = options.schema
                assert plan.conformer is not None
                # The schema's own title and description until the steward writes others.
                dataset.title = dataset.title or plan.conformer.schema.title
                dataset.description = dataset.description or plan.conformer.schema.description
            dataset.updated_at = now
            session.flush()
            session.add(
                DatasetVersion(
                    dataset_id=dataset.id,
                    number=number,
                    location_id=target.id,
                    source_name=path.name,
                    source_sha256=plan.source_sha,
                    rows=rows,
                    manifest=manifest,
                    created_at=now,
                )
            )
            if sealed_links is not None and linked is not None:
                session.add(sealed_links.data_key)
                session.add(
                    StoredObject(
                        location_id=target.id, key=linked["key"], size=linked["size"],
                        sha256=linked["sha256"], plain_size=sealed_links.plain_size,
                        data_class="health", format="envelope",
                        data_key_id=sealed_links.data_key.id, created_at=now,
                    )
                )  # fmt: skip
            extra = [quarantined] if quarantined else []
            for part in parts + extra:
                session.add(
                    StoredObject(
                        location_id=target.id,
                        key=part["key"],
                        size=part["size"],
                        sha256=part["sha256"],
                        plain_size=0,
                        data_class="health",
                        format="parquet",
                        data_key_id=None,
                        created_at=now,
                    )
                )
            audit.record(
                session,
                actor=actor,
                action="dataset.publish",
                object_type="dataset_version",
                object_id=f"{name}@{number}",
                details={
                    "source_sha256": plan.source_sha,
                    "rows": rows,
                    "parts": len(parts),
                    "manifest": manifest_key,
                    "rules": parsed,
                    "location": location,
                    "schema": options.schema,
                    "quarantined_rows": quarantined["rows"] if quarantined else 0,
                },
            )
    except BaseException as exc:
        for key in [p["key"] for p in parts] + uploaded:
            with contextlib.suppress(HubError):
                backend.delete(key)
        if not isinstance(exc, HubError):  # a HubError is audited by ingest_file()
            _audit_failure(hub, name, actor, type(exc).__name__, path)
        if isinstance(exc, Exception) and "UNIQUE" in str(exc).upper():
            raise Conflict(
                f"another ingest published version {number} of {name!r} at the same time",
                hint="run the ingest again",
            ) from exc
        raise
    return IngestResult(
        name,
        number,
        rows,
        len(parts),
        sum(p["size"] for p in parts),
        warnings=plan.warnings,
        quarantined=quarantined["rows"] if quarantined else 0,
        source=path.name,
    )


SUFFIXES = (
    ".csv.gz",
    ".tsv.gz",
    ".txt.gz",
    ".csv",
    ".tsv",
    ".txt",
    ".parquet",
    ".sas7bdat",
    ".xpt",
    ".xpt5",
    ".xpt8",
    ".xport",
)


@dataclass
class FolderResult:
    collection: str
    results: list[IngestResult]
    skipped: list[str]
    #: (dataset, error) for each table refused while it was published.
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def table_name(path: Path) -> str:
    """A file's table name: its name without the data suffixes, lower-cased, with any
    character a dataset name cannot hold turned into '_'."""
    stem = _stem(path)
    return _plain_name(stem) or "table"


def _stem(path: Path) -> str:
    """The file's name without its data suffix (``EB_PRS_F.csv.gz``: ``EB_PRS_F``)."""
    name = path.name
    suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def _plain_name(text: str) -> str:
    """'Causes de décès' as 'causes_de_deces': lower case, accents dropped, '_' for the rest."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9_-]+", "_", folded.lower()).strip("_-")


def ingest_folder(
    hub: Hub,
    folder: Path,
    *,
    actor: str,
    options: IngestOptions,
    collection: str | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
) -> FolderResult:
    """Ingest every data file of ``folder`` as one dataset of a collection, named
    ``COLLECTION.TABLE`` (an OMOP CDM folder: ``gibleed.person``, ``gibleed.drug_exposure``…).

    With ``schema="auto"`` each file is held to the imported schema named as the file
    (``EB_PRS_F.csv`` to ``EB_PRS_F``); with ``auto:PREFIX``, to ``PREFIX.file`` (``auto:
    omop-5.3``: ``PERSON.csv`` to ``omop-5.3.person``; several prefixes, comma-separated,
    are tried in order). A file with no schema is ingested with inferred types, and said
    so. Every file is checked first (format, schema columns, identifier rules): a refusal
    there publishes nothing. The tables are then published one by one; one refused while
    streaming (rows breaking its schema) is listed in ``failed`` and the others go on;
    running the command again skips the tables already published (same source, rules).
    """
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder", hint="give a folder of data files")
    name = collection or _plain_name(folder.name)
    _check_name(name)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))
    skipped = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.lower().endswith(SUFFIXES) and not p.name.startswith(".")
    )
    if not files:
        raise InvalidInput(
            f"{folder} holds no data file",
            hint=f"give a folder of {', '.join(SUFFIXES)} files",
        )
    tables: dict[str, Path] = {}
    for path in files:
        table = table_name(path)
        if table in tables:
            raise InvalidInput(
                f"{tables[table].name} and {path.name} would both be table {table!r}",
                hint="keep one format of each table in the folder",
            )
        tables[table] = path
    base = replace(options, collection=name, rules_where_present=True)
    per_file: dict[str, IngestOptions] = {}
    notes: list[str] = []
    known = schema_names(hub) if options.schema else set()
    used: set[str] = set()
    problems: list[str] = []
    for table, path in tables.items():
        opts = base
        try:
            if options.schema and options.schema.split(":", 1)[0] == "auto":
                prefix = options.schema.partition(":")[2]
                found = _schema_name_for(known, path, prefix)
                opts = replace(base, schema=found)
                if found is None:
                    notes.append(f"{path.name}: no schema for it in the catalogue; types inferred")
            per_file[table] = opts
            plan = _prepare(hub, path, f"{name}.{table}", opts)
        except HubError as exc:
            problems.append(str(exc))
            continue
        plan.close()  # checked only; read again when published
        used |= {
            r.partition("=")[0]
            for r in _rules_for(opts, plan.schema.names or list(plan.source.header))
        }
    unused = [r for r in options.rules if r.partition("=")[0] not in used]
    if unused and not problems:
        _audit_failure(hub, name, actor, "a rule names no column", folder)
        raise InvalidInput(
            f"rule {', '.join(unused)}: no file in {folder.name} has that column, so no "
            "file was ingested",
            hint="check the column's spelling (rules are case-sensitive)",
        )
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        _audit_failure(hub, name, actor, f"{len(problems)} file(s) refused", folder)
        raise InvalidInput(
            f"{len(problems)} of {len(tables)} files in {folder.name} cannot be ingested, "
            f"so none was: {shown}",
            hint="fix them (or move them out of the folder) and run the command again",
        )
    result = FolderResult(name, [], skipped, notes=notes)
    for table, path in tables.items():
        label = f"{name}.{table}"
        try:
            result.results.append(
                ingest_file(
                    hub,
                    path,
                    name=label,
                    actor=actor,
                    options=per_file[table],
                    progress=None if progress is None else partial(progress, label),
                )
            )
        except HubError as exc:  # audited by ingest_file; the other tables go on
            result.failed.append((label, str(exc)))
    return result


def _schema_name_for(known: set[str], path: Path, prefix: str) -> str | None:
    """The imported schema named as the file (``PREFIX.file`` in lower case with a
    prefix, as OMOP schemas are named), or None when the catalogue has none."""
    stem = _stem(path)
    if not prefix:
        return stem if stem in known else None
    # auto:omop-5.3,omop-5.4: the first prefix that has the table wins.
    wanted = [f"{p.strip()}.{stem.lower()}" for p in prefix.split(",") if p.strip()]
    return next((w for w in wanted if w in known), None)


def _validation(report: Report | None, quarantined: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the schema check found, without any value (the manifest is shown in the
    catalogue; the rejected values themselves stay in the encrypted quarantine)."""
    if report is None:
        return None
    return {
        "rows": report.rows,
        "bad_rows": report.bad_rows,
        "problems": [
            {
                "column": p.column,
                "check": p.check,
                "count": p.count,
                "rows": [e["row"] for e in p.examples],
            }
            for p in report.problems.values()
        ],
        "quarantine": quarantined,
    }


class _Reader:
    """A source's batches, read on a thread of their own from the moment this is made,
    up to READ_AHEAD batches ahead of the consumer: hashing the source and checking it
    was not already ingested overlap with parsing the first batch, and parsing the next
    batches (which releases the GIL) overlaps with pseudonymising this one. ``open_``
    gives the schema and the batches; its errors, and the reader's, are raised to the
    consumer, in the order they came. ``close`` stops the thread and drops what it read
    ahead (a plan dropped unpublished, a failed ingest, or the end of one)."""

    def __init__(self, open_: Callable[[], tuple[pa.Schema, Iterator[pa.RecordBatch]]]) -> None:
        self._queue: Queue[tuple[str, Any]] = Queue(maxsize=READ_AHEAD)
        self._stop = threading.Event()
        self._schema: pa.Schema | None = None
        self._done = False
        self._thread = threading.Thread(
            target=self._produce, args=(open_,), name="hdh-read", daemon=True
        )
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def _produce(self, open_: Callable[[], tuple[pa.Schema, Iterator[pa.RecordBatch]]]) -> None:
        try:
            schema, batches = open_()
            if not self._put(("schema", schema)):
                return
            for batch in batches:
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))

    def _next(self) -> tuple[str, Any]:
        if self._done:
            return ("end", None)
        kind, value = self._queue.get()
        if kind == "error":
            self._done = True
            raise value
        if kind == "end":
            self._done = True
        return kind, value

    def schema(self) -> pa.Schema:
        if self._schema is None:
            kind, value = self._next()
            assert kind == "schema", kind
            self._schema = value
        return self._schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        self.schema()
        while True:
            kind, value = self._next()
            if kind == "end":
                return
            yield value

    def close(self) -> None:
        """Stop the thread and drop the batches it read ahead; iterating afterwards
        gives nothing."""
        self._stop.set()
        self._thread.join()  # a producer waiting to put sees the stop within 0.1 s
        self._done = True
        with contextlib.suppress(Empty):
            while True:
                self._queue.get_nowait()


def _chain(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest


class _Part:
    """One part on its way to the location: its temporary file and the rows sent to it."""

    def __init__(self, index: int, path: Path) -> None:
        self.index, self.path = index, path
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0


class _PartWriter:
    """Writes encrypted Parquet parts of up to ROWS_PER_PART rows, and reads each one back.

    Each part is written (already encrypted by the Parquet writer) to a private temporary
    file, then stored (``Backend.put_file``: renamed into place on a local location on
    the same file system, streamed elsewhere): no plaintext reaches any disk.

    The caller decides which part each batch goes to (parts are the same whatever the
    timing) and goes on with the next batch at once: writing runs on a thread of its own
    (Parquet encoding and encryption release the GIL), with at most IN_FLIGHT batches
    waiting for it or in its hands, so memory stays bounded. Each stored part is read back
    on a third thread: decrypting it with the hub's keys proves it is readable, its row
    count is checked, and the profile is computed from it.
    """

    def __init__(
        self,
        hub: Hub,
        backend: Backend,
        prefix: str,
        schema: pa.Schema,
        sensitivity: dict[str, str],
        parts: list[dict[str, Any]],
        profiler: Profiler,
        random_text: Sequence[str] = (),
    ) -> None:
        self.hub, self.backend, self.prefix, self.schema = hub, backend, prefix, schema
        # Pseudonyms are random hex: Snappy saved ~10 % of their bytes for ~40 % of the
        # Parquet writer's time (bench/ingest.py), so those columns are not compressed,
        # and their minimum and maximum (which no query can skip row groups by) are not
        # kept (~9 % of the writer's time).
        self.compression = {f.name: "none" if f.name in random_text else "snappy" for f in schema}
        self.statistics = [f.name for f in schema if f.name not in random_text]
        self.parts = parts
        self.profiler = profiler
        #: The KEK version of each class that wraps the parts' keys.
        self.keks: dict[str, int] = {}
        self.properties = encryption_properties(hub.keys, schema, sensitivity, self.keks)
        self._tmp = tempfile.TemporaryDirectory(dir=private_tmp(hub))
        self._io = ThreadPoolExecutor(1, thread_name_prefix="hdh-write")
        # Parts are read back VERIFIERS at once (reading back lags behind writing, most of
        # all at the end), and profiled in their order, one after the other: the same
        # source always gives the same profile (equal counts keep their first order).
        self._check = ThreadPoolExecutor(VERIFIERS, thread_name_prefix="hdh-verify")
        self._turn = threading.Condition()
        self._profiled = 0  # read-backs profiled, in the order they were handed out
        self._stopping = False  # once set, no read-back waits for its turn any more
        # Set at the writing thread's first error: the work queued behind it is skipped
        # (the caller sees the error when it collects that work, and gives up).
        self._failed = threading.Event()
        self._count = 0  # parts started
        # The part whose Parquet writer is open (one at a time, on the writing thread).
        self._open_part: _Part | None = None
        self._current: _Part | None = None
        self._in_flight: deque[Future[None]] = deque()
        self._checks: list[Future[None]] = []
        # Set once every part is written: what is left to read back then gets every core.
        self._written = threading.Event()

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            if kind is not None:
                with contextlib.suppress(Exception):  # the caller's error is the one to see
                    self._drain()
                return
            self._drain()
            if self._current is not None or not self._count:
                # The part being filled is the last; an empty version still has one
                # (empty) part.
                part, self._current = self._current or self._start(), None
                self._send(self._close, part)
                self._drain()
            self._written.set()
            for check in self._checks:
                check.result()
            # Histogram bins of high-cardinality numbers need every extreme first: read
            # those columns (only) of every part once more.
            columns = self.profiler.second_pass()
            if columns:
                for stored in self.parts:
                    self.profiler.add_histograms(
                        read_part(self.hub, self.backend, stored, columns=columns, threads=False)
                    )
        finally:
            self._failed.set()  # whatever is still queued is not needed any more
            self._io.shutdown(wait=True, cancel_futures=True)
            with self._turn:
                self._stopping = True
                self._turn.notify_all()
            self._check.shutdown(wait=True, cancel_futures=True)
            left = self._open_part  # by a failure: the writing thread is done by now
            if left is not None and left.writer is not None:
                with contextlib.suppress(Exception):
                    left.writer.close()
            self._tmp.cleanup()

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        part = self._current if self._current is not None else self._start()
        part.rows += batch.num_rows
        full = part.rows >= ROWS_PER_PART
        self._current = None if full else part
        self._send(self._write, part, batch, full)

    def _start(self) -> _Part:
        index, self._count = self._count, self._count + 1
        return _Part(index, Path(self._tmp.name) / f"part-{index:05d}.parquet")

    def _send(self, work: Callable[..., None], *args: Any) -> None:
        """Hand work to the writing thread, once fewer than IN_FLIGHT are waiting."""
        while len(self._in_flight) >= IN_FLIGHT:
            self._in_flight.popleft().result()
        self._in_flight.append(self._io.submit(self._guarded, work, *args))

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        if self._failed.is_set():
            return  # an earlier part failed: the ingest is over
        try:
            work(*args)
        except BaseException:
            self._failed.set()
            raise

    def _drain(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    def _write(self, part: _Part, batch: pa.RecordBatch, full: bool) -> None:
        self._open(part).write_batch(batch)
        if full:
            self._close(part)

    def _open(self, part: _Part) -> pq.ParquetWriter:
        if part.writer is None:
            part.writer = pq.ParquetWriter(
                part.path,
                self.schema,
                compression=self.compression,
                write_statistics=self.statistics,
                encryption_properties=self.properties,
            )
            self._open_part = part
        return part.writer

    def _close(self, part: _Part) -> None:
        self._open(part).close()
        part.writer, self._open_part = None, None
        key = f"{self.prefix}/part-{part.index:05d}.parquet"
        stored = self.backend.put_file(key, part.path)
        record = {"key": key, "rows": part.rows, "size": stored.size, "sha256": stored.sha256}
        self.parts.append(record)
        # Read-backs take turns in the order they are handed out (here, on the writing
        # thread alone), which is the parts' order.
        self._checks.append(self._check.submit(self._verify, record, len(self._checks)))

    def _verify(self, part: dict[str, Any], turn: int) -> None:
        table = None
        try:
            table = read_part(self.hub, self.backend, part, threads=self._written.is_set())
            if table.num_rows != part["rows"]:
                rows, table = table.num_rows, None
                raise IntegrityError(
                    f"part {part['key']!r} reads back {rows} rows, not {part['rows']}",
                    hint="the location did not store it faithfully; ingest again",
                )
        finally:
            # The pool takes read-backs in their order: the one before this is running or
            # done, and passes the turn on even when it failed.
            with self._turn:
                self._turn.wait_for(lambda: self._stopping or self._profiled == turn)
                stopping = self._stopping
            try:
                if table is not None and not stopping:
                    self.profiler.add(table)
            finally:
                with self._turn:
                    self._profiled += 1
                    self._turn.notify_all()


class _QuarantineWriter:
    """The rows that broke the schema, as the source gave them, with their row numbers
    and what each broke: one Parquet file, every column under the identifiers KEK (the
    rows are not pseudonymised: the steward needs them as they came to fix the source)."""

    def __init__(self, hub: Hub, backend: Backend, key: str) -> None:
        self.hub, self.backend, self.key = hub, backend, key
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.keks: dict[str, int] = {}
        self._tmp = tempfile.TemporaryDirectory(dir=private_tmp(hub))
        self.path = Path(self._tmp.name) / "quarantine.parquet"

    def write(self, raw: pa.RecordBatch, conformed: Conformed) -> None:
        bad = conformed.bad_batch(raw)
        if self.writer is None:
            sensitivity = dict.fromkeys(bad.schema.names, "identifiers")
            self.writer = pq.ParquetWriter(
                self.path,
                bad.schema,
                encryption_properties=encryption_properties(
                    self.hub.keys, bad.schema, sensitivity, self.keks
                ),
            )
        self.writer.write_batch(bad.cast(self.writer.schema))
        self.rows += bad.num_rows

    def close(self) -> dict[str, Any] | None:
        try:
            if self.writer is None:
                return None
            self.writer.close()
            stored = self.backend.put_file(self.key, self.path)
            return {
                "key": self.key,
                "rows": self.rows,
                "size": stored.size,
                "sha256": stored.sha256,
                "kek_versions": self.keks,
            }
        finally:
            self._tmp.cleanup()


def _audit_failure(hub: Hub, name: str, actor: str, reason: str, path: Path) -> None:
    with hub.transaction() as session:
        audit.record(
            session,
            actor=actor,
            action="dataset.ingest",
            object_type="dataset",
            object_id=name,
            outcome="failure",
            details={"source": path.name, "reason": reason[:500]},
        )


@dataclass(frozen=True)
class VersionInfo:
    dataset: str
    number: int
    rows: int
    source_name: str
    source_sha256: str
    created_at: str
    location: str
    manifest: dict[str, Any]


def list_datasets(hub: Hub) -> list[dict[str, Any]]:
    with hub.read() as session:
        rows = session.execute(
            select(Dataset, func.max(DatasetVersion.number), func.count(DatasetVersion.id))
            .outerjoin(DatasetVersion, DatasetVersion.dataset_id == Dataset.id)
            .group_by(Dataset.id)
            .order_by(Dataset.name)
        ).all()
    return [
        {
            "name": d.name,
            "title": d.title,
            "collection": d.collection,
            "description": d.description,
            "latest_version": latest,
            "versions": count,
            "created_at": d.created_at,
        }
        for d, latest, count in rows
    ]


def versions(hub: Hub, name: str) -> list[VersionInfo]:
    from hdh.storage.models import Location

    with hub.read() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            known = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
            raise NotFound(
                f"there is no dataset named {name!r}",
                hint=f"the datasets are: {', '.join(known) or 'none yet'} (hdh dataset list)",
            )
        rows = session.execute(
            select(DatasetVersion, Location.name)
            .join(Location, Location.id == DatasetVersion.location_id)
            .where(DatasetVersion.dataset_id == dataset.id)
            .order_by(DatasetVersion.number)
        ).all()
    return [
        VersionInfo(
            name, v.number, v.rows, v.source_name, v.source_sha256, v.created_at, loc, v.manifest
        )
        for v, loc in rows
    ]


def read_version(hub: Hub, name: str, number: int | None = None) -> pa.Table:
    """The whole version as an Arrow table (decrypted with the hub's keys)."""
    chosen = _version(hub, name, number)
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, chosen.location))
    tables = [read_part(hub, backend, part) for part in chosen.manifest["parts"]]
    return pa.concat_tables(tables)


def version_info(hub: Hub, name: str, number: int | None = None) -> VersionInfo:
    """One version (the latest when ``number`` is None), or NotFound naming the choices."""
    return _version(hub, name, number)


def read_quarantine(hub: Hub, name: str, number: int | None = None, *, actor: str) -> pa.Table:
    """The rows of a version that broke its schema, as the source gave them (audited:
    they are not pseudonymised)."""
    chosen = _version(hub, name, number)
    held = (chosen.manifest.get("validation") or {}).get("quarantine")
    if not held:
        raise NotFound(
            f"version {chosen.number} of {name!r} has no quarantined rows",
            hint="rows are kept apart only by an ingest with --on-error quarantine",
        )
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, chosen.location))
    table = read_part(hub, backend, held)
    with hub.transaction() as session:
        audit.record(
            session,
            actor=actor,
            action="dataset.quarantine.read",
            object_type="dataset_version",
            object_id=f"{name}@{chosen.number}",
            details={"rows": table.num_rows},
        )
    return table


def _version(hub: Hub, name: str, number: int | None) -> VersionInfo:
    found = versions(hub, name)
    if not found:
        raise NotFound(f"dataset {name!r} has no version", hint="ingest a file first")
    chosen = found[-1] if number is None else next((v for v in found if v.number == number), None)
    if chosen is None:
        raise NotFound(
            f"dataset {name!r} has no version {number}",
            hint=f"its versions are 1 to {found[-1].number}",
        )
    return chosen


def read_part(
    hub: Hub,
    backend: Backend,
    part: dict[str, Any],
    *,
    columns: list[str] | None = None,
    threads: bool = True,
) -> pa.Table:
    """One encrypted Parquet part (or some of its columns), checked against the SHA-256
    in its version's manifest."""
    name = f"part {part['key']!r} on {backend.describe}"
    raw = get_verified(
        backend, part["key"], part["sha256"], what=name,
        recorded="the SHA-256 recorded in its version's manifest",
    )  # fmt: skip
    try:
        return read_encrypted(pa.BufferReader(raw), hub.keys, columns, threads=threads)
    except OSError as exc:
        raise TamperedObject(
            f"{name} cannot be decrypted ({exc})",
            hint="it was altered or its keys are gone; restore it from another copy",
        ) from None
