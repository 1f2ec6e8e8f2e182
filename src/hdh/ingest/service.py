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
import hashlib
import json
import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select

from hdh import audit, policy
from hdh.catalog.models import Dataset, DatasetVersion
from hdh.catalog.profile import profile
from hdh.crypto.envelope import TamperedObject
from hdh.crypto.parquet import encryption_properties, read_encrypted
from hdh.errors import Conflict, HubError, IntegrityError, InvalidInput, NotFound
from hdh.hub import Hub
from hdh.ingest.detect import scan
from hdh.ingest.pseudonymise import Pseudonymiser, parse_rules
from hdh.ingest.readers import file_sha256, inspect_source, read_batches, sas_metadata
from hdh.storage.backend import Backend
from hdh.storage.locations import get_location
from hdh.storage.models import StoredObject
from hdh.storage.objects import backend_for, seal

log = logging.getLogger("hdh.ingest")

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
ROWS_PER_PART = 1_000_000
#: Columns holding identifiers get the identifiers KEK; everything else the clinical one.
IDENTIFIER_ACTIONS = ("pseudonymise",)


@dataclass
class IngestResult:
    dataset: str
    version: int
    rows: int
    parts: int
    stored_bytes: int
    already: bool = False
    warnings: list[str] = field(default_factory=list)


class IdentifiersFound(InvalidInput):
    code = "identifiers_found"


def _check_name(name: str) -> None:
    if not DATASET_NAME.match(name):
        raise InvalidInput(
            f"dataset name {name!r} is not allowed",
            hint="use lower-case letters, digits, '-' or '_' (up to 100)",
        )


def ingest(
    hub: Hub,
    path: Path,
    *,
    name: str,
    actor: str,
    location: str = "local",
    rules: list[str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    description: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Ingest ``path`` as a new version of dataset ``name`` (see the module docstring).

    Idempotent: ingesting the same source with the same rules again reports the
    existing version. Every refusal is audited as a ``dataset.ingest`` failure.
    """
    try:
        return _ingest(
            hub,
            path,
            name=name,
            actor=actor,
            location=location,
            rules=rules,
            encoding=encoding,
            delimiter=delimiter,
            description=description,
            progress=progress,
        )
    except policy.PlacementRefused:
        raise  # audited as placement.refused already
    except HubError as exc:
        _audit_failure(hub, name, actor, str(exc), path)
        raise


def _ingest(
    hub: Hub,
    path: Path,
    *,
    name: str,
    actor: str,
    location: str = "local",
    rules: list[str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    description: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    _check_name(name)
    source = inspect_source(path, encoding=encoding, delimiter=delimiter)
    source_sha = file_sha256(path)
    wanted = parse_rules(rules or [], list(source.header)) if source.header else None
    with hub.read() as session:
        earlier = session.scalars(
            select(DatasetVersion)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == name, DatasetVersion.source_sha256 == source_sha)
            .order_by(DatasetVersion.number)
        ).all()
        for version in earlier:
            if wanted is None or version.manifest.get("rules") == wanted:
                return IngestResult(
                    name,
                    version.number,
                    version.rows,
                    len(version.manifest["parts"]),
                    0,
                    already=True,
                )
    text_columns = frozenset(c for c, a in (wanted or {}).items() if a == "pseudonymise")
    schema, batches = read_batches(source, text_columns)
    parsed = parse_rules(rules or [], schema.names)
    first = next(batches, None)
    # A file with a header and no rows is still scanned, by its column names.
    findings = scan(first if first is not None else pa.RecordBatch.from_pylist([], schema=schema))
    unresolved = [f for f in findings if f.kind == "identifier" and f.column not in parsed]
    if unresolved:
        listing = "; ".join(f"{f.column} ({f.reason})" for f in unresolved)
        raise IdentifiersFound(
            f"{path.name} has columns that look like direct identifiers: {listing}",
            hint="say what to do with each: --rule COLUMN=drop, =pseudonymise, a "
            "generalisation, or =keep if it is not one",
        )
    warnings = [f"{f.column}: {f.reason}" for f in findings if f.kind == "free text"]
    secret_version: int | None = None
    secret = b""
    if "pseudonymise" in parsed.values():
        secret_version, secret = hub.keys.pseudonym_secret()
    pseudonymiser = Pseudonymiser(parsed, secret, secret_version or 0)
    out_schema = pseudonymiser.output_schema(schema)
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
    prefix = f"datasets/{name}/v{number}-{uuid.uuid4().hex[:8]}"
    sensitivity = {
        col: ("identifiers" if action in IDENTIFIER_ACTIONS else "clinical")
        for col, action in parsed.items()
        if col in out_schema.names
    }
    parts: list[dict[str, Any]] = []
    uploaded: list[str] = []
    try:
        stream = _chain(first, batches)
        rows = _write_parts(
            hub, backend, prefix, out_schema, sensitivity, pseudonymiser, stream, parts, progress
        )

        def read_parts() -> Iterator[pa.Table]:
            # Reading every part back before publishing proves it decrypts with the
            # hub's keys and holds the rows written; the profile is computed from it.
            for part in parts:
                table = read_part(hub, backend, part)
                if table.num_rows != part["rows"]:
                    raise IntegrityError(
                        f"part {part['key']!r} reads back {table.num_rows} rows, not "
                        f"{part['rows']}",
                        hint="the location did not store it faithfully; ingest again",
                    )
                yield table

        column_profile = profile(out_schema, read_parts)
        manifest = {
            "dataset": name,
            "version": number,
            "source": {
                "name": path.name,
                "sha256": source_sha,
                "size": source.size,
                "format": source.format,
                "encoding": source.encoding if source.format == "csv" else None,
                "delimiter": source.delimiter,
            },
            "schema": [{"name": f.name, "type": str(f.type)} for f in out_schema],
            "rows": rows,
            "parts": parts,
            "rules": parsed,
            "source_metadata": sas_metadata(source)
            if source.format in ("sas7bdat", "xport")
            else None,
            "pseudonym_secret_version": secret_version,
            "column_keys": sensitivity,
            # The KEK versions that wrap this version's Parquet keys (kept in the files):
            # retiring one of them is refused while this version exists.
            "kek_versions": {
                cls: hub.keys.current_version(cls) for cls in {*sensitivity.values(), "clinical"}
            },
            "warnings": warnings,
            "profile": column_profile,
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
                dataset = Dataset(
                    name=name, description=description, data_class="health", created_at=now
                )
                session.add(dataset)
                session.flush()
            elif description:
                dataset.description = description
            session.add(
                DatasetVersion(
                    dataset_id=dataset.id,
                    number=number,
                    location_id=target.id,
                    source_name=path.name,
                    source_sha256=source_sha,
                    rows=rows,
                    manifest=manifest,
                    created_at=now,
                )
            )
            for part in parts:
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
                    "source_sha256": source_sha,
                    "rows": rows,
                    "parts": len(parts),
                    "manifest": manifest_key,
                    "rules": parsed,
                    "location": location,
                },
            )
    except BaseException as exc:
        for key in [p["key"] for p in parts] + uploaded:
            with contextlib.suppress(HubError):
                backend.delete(key)
        if not isinstance(exc, HubError):  # a HubError is audited by ingest()
            _audit_failure(hub, name, actor, type(exc).__name__, path)
        if isinstance(exc, Exception) and "UNIQUE" in str(exc).upper():
            raise Conflict(
                f"another ingest published version {number} of {name!r} at the same time",
                hint="run the ingest again",
            ) from exc
        raise
    return IngestResult(
        name, number, rows, len(parts), sum(p["size"] for p in parts), warnings=warnings
    )


def _chain(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest


def _write_parts(
    hub: Hub,
    backend: Backend,
    prefix: str,
    schema: pa.Schema,
    sensitivity: dict[str, str],
    pseudonymiser: Pseudonymiser,
    batches: Iterator[pa.RecordBatch],
    parts: list[dict[str, Any]],
    progress: Callable[[int, int], None] | None,
) -> int:
    """Write encrypted Parquet parts of up to ROWS_PER_PART rows; returns the row count.

    Each part is written (already encrypted by the Parquet writer) to a private temporary
    file, streamed to the location, then deleted: no plaintext reaches any disk.
    """
    total = 0
    properties = encryption_properties(hub.keys, schema, sensitivity)
    tmp_root = hub.settings.hub_dir / "tmp"
    tmp_root.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        writer: pq.ParquetWriter | None = None
        part_path = Path(tmp) / "part.parquet"
        part_rows = 0

        def close_part() -> None:
            nonlocal writer, part_rows
            if writer is None:
                return
            writer.close()
            key = f"{prefix}/part-{len(parts):05d}.parquet"
            stored = backend.put(key, _file_chunks(part_path))
            parts.append(
                {"key": key, "rows": part_rows, "size": stored.size, "sha256": stored.sha256}
            )
            writer, part_rows = None, 0

        for batch in batches:
            converted = pseudonymiser.apply(batch)
            if converted.schema != schema:
                converted = converted.cast(schema)
            if writer is None:
                writer = pq.ParquetWriter(part_path, schema, encryption_properties=properties)
            writer.write_batch(converted)
            part_rows += converted.num_rows
            total += converted.num_rows
            if progress is not None:
                progress(total, batch.nbytes)
            if part_rows >= ROWS_PER_PART:
                close_part()
        if writer is None and not parts:
            writer = pq.ParquetWriter(part_path, schema, encryption_properties=properties)
        close_part()
    return total


def _file_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


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
    found = versions(hub, name)
    if not found:
        raise NotFound(f"dataset {name!r} has no version", hint="ingest a file first")
    chosen = found[-1] if number is None else next((v for v in found if v.number == number), None)
    if chosen is None:
        raise NotFound(
            f"dataset {name!r} has no version {number}",
            hint=f"its versions are 1 to {found[-1].number}",
        )
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, chosen.location))
    tables = [read_part(hub, backend, part) for part in chosen.manifest["parts"]]
    return pa.concat_tables(tables)


def read_part(hub: Hub, backend: Backend, part: dict[str, Any]) -> pa.Table:
    """One encrypted Parquet part, checked against the SHA-256 in its version's manifest."""
    raw = backend.get(part["key"])
    name = f"part {part['key']!r} on {backend.describe}"
    if hashlib.sha256(raw).hexdigest() != part["sha256"]:
        raise TamperedObject(
            f"{name} does not match the SHA-256 recorded in its version's manifest",
            hint="it was altered or replaced; restore it from another copy",
        )
    try:
        return read_encrypted(pa.BufferReader(raw), hub.keys)
    except OSError as exc:
        raise TamperedObject(
            f"{name} cannot be decrypted ({exc})",
            hint="it was altered or its keys are gone; restore it from another copy",
        ) from None
