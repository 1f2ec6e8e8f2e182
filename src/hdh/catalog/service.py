"""The catalogue: imported Table Schemas, dataset descriptions, and search.

``import_schemas`` loads every Table Schema under a folder (the SNDS layout: one folder
per product, ``nomenclatures/`` for reference tables; names with spaces and accents are
fine) in one transaction: a folder with one unreadable schema imports nothing.
``describe`` sets a dataset's catalogue metadata; ``search`` finds datasets and schemas
by name, title, description, keyword, producer, variable, and nomenclature.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hdh import audit
from hdh.catalog.models import FREQUENCIES, CatalogSchema, Dataset, DatasetVersion
from hdh.catalog.tableschema import BadSchema, TableSchema, parse_schema
from hdh.errors import InvalidInput, NotFound
from hdh.hub import Hub


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    tables: int = 0
    nomenclatures: int = 0


def import_schemas(
    hub: Hub, directory: Path, *, actor: str, prefix: str | None = None
) -> ImportResult:
    """Import every ``*.json`` Table Schema under ``directory`` (all or nothing), or the
    tables of an OMOP CDM described by an OHDSI field-level CSV (see :func:`omop_schemas`)."""
    if directory.is_file() and directory.name.lower().endswith(".csv"):
        return _store(hub, directory, omop_schemas(directory, prefix), actor=actor, files=1)
    if not directory.is_dir():
        raise InvalidInput(
            f"{directory} is not a folder",
            hint="give the folder holding the Table Schema JSON files, or an OMOP CDM "
            "field-level CSV",
        )
    files = sorted(p for p in directory.rglob("*.json") if p.is_file())
    if not files:
        raise InvalidInput(
            f"{directory} holds no .json file",
            hint="give the folder holding the Table Schema JSON files",
        )
    loaded: dict[str, tuple[TableSchema, str, str, str, str]] = {}
    problems: list[str] = []
    for path in files:
        relative = path.relative_to(directory)
        try:
            raw = path.read_bytes()
            schema = parse_schema(json.loads(raw.decode("utf-8")), origin=str(relative))
            if not schema.raw.get("name"):
                schema = replace(schema, name=path.stem)  # named as its file
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{relative}: not JSON ({exc})")
            continue
        except BadSchema as exc:
            problems.append(exc.message)
            continue
        if schema.name in loaded:
            problems.append(f"{relative}: schema {schema.name!r} is also {loaded[schema.name][2]}")
            continue
        parts = [p.lower() for p in relative.parts[:-1]]
        kind = "nomenclature" if "nomenclatures" in parts else "table"
        product = str(schema.raw.get("produit") or "") or (
            relative.parts[-2] if len(relative.parts) > 1 else ""
        )
        loaded[schema.name] = (
            schema,
            kind,
            str(relative),
            product,
            hashlib.sha256(raw).hexdigest(),
        )
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise BadSchema(
            f"{len(problems)} of {len(files)} schema files cannot be imported: {shown}",
            hint="fix or remove them and import again; nothing was imported",
        )
    return _store(hub, directory, loaded, actor=actor, files=len(files))


_OMOP_COLUMNS = {"cdmTableName", "cdmFieldName", "cdmDatatype", "isRequired", "isPrimaryKey"}


def omop_schemas(
    path: Path, prefix: str | None = None
) -> dict[str, tuple[TableSchema, str, str, str, str]]:
    """Table Schemas for the tables of an OMOP CDM, from an OHDSI field-level CSV (the
    Data Quality Dashboard's ``OMOP_CDMv5.4_Field_Level.csv`` lists every field with
    its type, whether it is required and whether it is the primary key).

    Each schema is named ``PREFIX.table`` (default prefix ``omop-5.4`` from the file
    name), so ``hdh dataset ingest FOLDER --schema auto:omop-5.4`` holds every CDM table
    to it: CSV and Parquet exports of one CDM then give identical versions.
    """
    raw = path.read_bytes()
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadSchema(
            f"{path.name}: cannot be read as CSV ({exc})", hint="give the field-level CSV"
        ) from None
    if not rows or not set(rows[0]) >= _OMOP_COLUMNS:
        raise BadSchema(
            f"{path.name}: is not an OMOP CDM field-level CSV (it needs the columns "
            f"{', '.join(sorted(_OMOP_COLUMNS))})",
            hint="give the folder of Table Schema JSON files, or OMOP_CDMv5.x_Field_Level.csv",
        )
    if prefix is None:
        found = re.search(r"v?(\d+\.\d+)", path.name)
        prefix = f"omop-{found.group(1)}" if found else "omop"
    tables: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        tables.setdefault(row["cdmTableName"].strip().lower(), []).append(row)
    sha = hashlib.sha256(raw).hexdigest()
    out: dict[str, tuple[TableSchema, str, str, str, str]] = {}
    for table, fields in tables.items():
        descriptor: dict[str, Any] = {
            "name": f"{prefix}.{table}",
            "title": f"OMOP CDM {table}",
            "fields": [_omop_field(f) for f in fields],
            "missingValues": [""],
        }
        key = [f["cdmFieldName"].strip() for f in fields if f["isPrimaryKey"].strip() == "Yes"]
        if key:
            descriptor["primaryKey"] = key
        schema = parse_schema(descriptor, origin=f"{path.name}: {table}")
        out[schema.name] = (schema, "table", path.name, f"OMOP CDM ({prefix})", sha)
    return out


def _omop_field(row: dict[str, str]) -> dict[str, Any]:
    datatype = row["cdmDatatype"].strip().lower()
    field: dict[str, Any] = {"name": row["cdmFieldName"].strip()}
    constraints: dict[str, Any] = {}
    if datatype in ("integer", "bigint", "int", "smallint"):
        field["type"] = "integer"
    elif datatype in ("float", "numeric", "real", "double"):
        field["type"] = "number"
    elif datatype in ("date", "datetime"):
        field["type"] = datatype
    else:
        field["type"] = "string"
        size = re.search(r"\((\d+)\)", datatype)
        if size:
            constraints["maxLength"] = int(size.group(1))
    if row["isRequired"].strip() == "Yes":
        constraints["required"] = True
    if constraints:
        field["constraints"] = constraints
    guidance = (row.get("userGuidance") or "").strip()
    if guidance:
        field["description"] = guidance
    return field


def _store(
    hub: Hub,
    origin: Path,
    loaded: dict[str, tuple[TableSchema, str, str, str, str]],
    *,
    actor: str,
    files: int,
) -> ImportResult:
    directory = origin
    result = ImportResult()
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        existing = {s.name: s for s in session.scalars(select(CatalogSchema))}
        for name, (schema, kind, source, product, sha) in loaded.items():
            if kind == "table":
                result.tables += 1
            else:
                result.nomenclatures += 1
            row = existing.get(name)
            if row is not None and row.sha256 == sha:
                result.unchanged.append(name)
                continue
            if row is None:
                row = CatalogSchema(name=name)
                session.add(row)
                result.added.append(name)
            else:
                result.updated.append(name)
            row.kind = kind
            row.product = product
            row.title = schema.title
            row.descriptor = schema.raw
            row.source = source
            row.sha256 = sha
            row.imported_at = now
        audit.record(
            session,
            actor=actor,
            action="catalog.import_schema",
            object_type="catalog",
            object_id=directory.name,
            details={
                "files": files,
                "added": len(result.added),
                "updated": len(result.updated),
                "unchanged": len(result.unchanged),
            },
        )
    return result


@dataclass(frozen=True)
class SchemaEntry:
    name: str
    kind: str
    product: str
    title: str
    source: str
    schema: TableSchema
    sha256: str = ""


def _entry(row: CatalogSchema) -> SchemaEntry:
    return SchemaEntry(
        row.name,
        row.kind,
        row.product,
        row.title,
        row.source,
        parse_schema(row.descriptor, origin=row.name),
        row.sha256,
    )


def list_schemas(
    hub: Hub, *, kind: str | None = None, product: str | None = None
) -> list[SchemaEntry]:
    with hub.read() as session:
        query = select(CatalogSchema).order_by(CatalogSchema.product, CatalogSchema.name)
        if kind:
            query = query.where(CatalogSchema.kind == kind)
        if product:
            query = query.where(CatalogSchema.product == product)
        return [_entry(row) for row in session.scalars(query)]


def schema_names(hub: Hub) -> set[str]:
    """The names of the imported schemas (without parsing them)."""
    with hub.read() as session:
        return set(session.scalars(select(CatalogSchema.name)))


def get_schema(hub: Hub, name: str) -> SchemaEntry:
    with hub.read() as session:
        row = session.scalar(select(CatalogSchema).where(CatalogSchema.name == name))
        if row is None:
            names = session.scalars(select(CatalogSchema.name)).all()
            near = [n for n in names if _fold(name) in _fold(n)][:5]
            raise NotFound(
                f"the catalogue has no schema named {name!r}",
                hint=(f"did you mean {', '.join(near)}? " if near else "")
                + "list them with hdh catalog schemas; import them with hdh catalog import-schema",
            )
        return _entry(row)


def describe(
    hub: Hub,
    name: str,
    *,
    actor: str,
    title: str | None = None,
    description: str | None = None,
    producer: str | None = None,
    frequency: str | None = None,
    legal_basis: str | None = None,
    keywords: list[str] | None = None,
) -> dict[str, Any]:
    """Set a dataset's catalogue metadata (only what is given); audited."""
    if frequency is not None and frequency not in FREQUENCIES:
        raise InvalidInput(
            f"update frequency {frequency!r} is not known",
            hint=f"use one of {', '.join(FREQUENCIES)}",
        )
    changes = {
        key: value
        for key, value in {
            "title": title,
            "description": description,
            "producer": producer,
            "frequency": frequency,
            "legal_basis": legal_basis,
            "keywords": keywords,
        }.items()
        if value is not None
    }
    if not changes:
        raise InvalidInput(
            "nothing to change", hint="give at least one of --title, --description, …"
        )
    with hub.transaction() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise NotFound(
                f"there is no dataset named {name!r}", hint="list them with hdh dataset list"
            )
        for key, value in changes.items():
            setattr(dataset, key, value)
        dataset.updated_at = audit.utc_timestamp()
        audit.record(
            session,
            actor=actor,
            action="dataset.describe",
            object_type="dataset",
            object_id=name,
            details={"changed": sorted(changes)},
        )
        return dataset_metadata(dataset)


def get_metadata(hub: Hub, name: str) -> dict[str, Any]:
    """A dataset's catalogue description."""
    with hub.read() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise NotFound(
                f"there is no dataset named {name!r}", hint="list them with hdh dataset list"
            )
        return dataset_metadata(dataset)


def dataset_metadata(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "title": dataset.title,
        "description": dataset.description,
        "producer": dataset.producer,
        "frequency": dataset.frequency,
        "legal_basis": dataset.legal_basis,
        "sensitivity": dataset.data_class,
        "collection": dataset.collection,
        "keywords": list(dataset.keywords or []),
        "schema": dataset.schema_name,
        "created_at": dataset.created_at,
        "updated_at": dataset.updated_at or dataset.created_at,
    }


@dataclass(frozen=True)
class Hit:
    kind: str  # "dataset", "table schema" or "nomenclature"
    name: str
    title: str
    matched: tuple[str, ...]  # where the words were found, e.g. "variable BEN_NIR_IDT"
    score: int


def _fold(text: str) -> str:
    """Lower case without accents: 'Décès' matches 'deces'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True)
class _Entry:
    """One searchable thing, its fields folded and split once."""

    kind: str
    name: str
    title: str
    #: (where, weight, folded value, its words)
    fields: tuple[tuple[str, int, str, tuple[str, ...]], ...]
    #: Every folded value joined: a word absent from it matches no field.
    blob: str


#: The search index of each hub's database, with the catalogue stamp it was built at.
_INDEXES: dict[tuple[str, str], tuple[tuple[Any, ...], list[_Entry]]] = {}
_INDEX_LOCK = threading.Lock()


def _stamp(session: Session) -> tuple[Any, ...]:
    """What changes whenever something searchable does: datasets described, versions
    published, schemas imported."""
    datasets = session.execute(
        select(func.count(Dataset.id), func.max(Dataset.updated_at), func.max(Dataset.created_at))
    ).one()
    versions = session.execute(
        select(func.count(DatasetVersion.id), func.max(DatasetVersion.id))
    ).one()
    schemas = session.execute(
        select(func.count(CatalogSchema.id), func.max(CatalogSchema.imported_at))
    ).one()
    return (*datasets, *versions, *schemas)


def _entry_of(kind: str, name: str, title: str, fields: list[tuple[str, str, int]]) -> _Entry:
    folded = []
    for where, value, weight in fields:
        text = _fold(value)
        folded.append((where, weight, text, tuple(t for t in _TOKEN.split(text) if t)))
    return _Entry(kind, name, title, tuple(folded), "\n".join(f[2] for f in folded))


def _build_index(session: Session) -> list[_Entry]:
    entries: list[_Entry] = []
    schemas = {row.name: row for row in session.scalars(select(CatalogSchema))}
    latest: dict[int, DatasetVersion] = {}
    for version in session.scalars(select(DatasetVersion).order_by(DatasetVersion.number)):
        latest[version.dataset_id] = version
    for dataset in session.scalars(select(Dataset).order_by(Dataset.name)):
        fields: list[tuple[str, str, int]] = [
            ("name", dataset.name, 8),
            ("title", dataset.title, 6),
            ("description", dataset.description, 3),
            ("producer", dataset.producer, 2),
            ("collection", dataset.collection or "", 4),
        ]
        fields += [("keyword", k, 5) for k in dataset.keywords or []]
        newest = latest.get(dataset.id)
        columns = [c["name"] for c in newest.manifest.get("schema", [])] if newest else []
        fields += [(f"variable {c}", c, 4) for c in columns]
        row = schemas.get(dataset.schema_name or "")
        if row is not None:
            fields += _schema_fields(row.descriptor, set(columns))
        entries.append(_entry_of("dataset", dataset.name, dataset.title, fields))
    for row in schemas.values():
        fields = [("name", row.name, 8), ("title", row.title, 6), ("product", row.product, 3)]
        fields += _schema_fields(row.descriptor, None)
        kind = "nomenclature" if row.kind == "nomenclature" else "table schema"
        entries.append(_entry_of(kind, row.name, row.title, fields))
    return entries


def _index(hub: Hub) -> list[_Entry]:
    """The hub's search index, rebuilt when the catalogue changed since it was made."""
    # The folder too: a SQLite URL is relative to it.
    key = (str(hub.settings.hub_dir), hub.settings.database_url.get_secret_value())
    with hub.read() as session:
        stamp = _stamp(session)
    cached = _INDEXES.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with _INDEX_LOCK:  # one build at a time: a burst of searches waits for it
        cached = _INDEXES.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        # Built after the stamp was read: at worst newer than its stamp, never older.
        with hub.read() as session:
            entries = _build_index(session)
        _INDEXES[key] = (stamp, entries)
    return entries


def search(hub: Hub, text: str, *, limit: int = 50) -> list[Hit]:
    """Datasets and schemas matching every word of ``text``, best first.

    A dataset is searched through its metadata, its latest version's columns, and the
    descriptions and nomenclatures its schema gives those columns.
    """
    words = [_fold(w) for w in text.split() if w.strip()]
    if not words:
        raise InvalidInput("nothing to search for", hint="give one or more words")
    hits: list[Hit] = []
    for entry in _index(hub):
        if all(word in entry.blob for word in words):
            hit = _match(entry, words)
            if hit is not None:
                hits.append(hit)
    hits.sort(key=lambda h: (-h.score, h.kind != "dataset", h.name))
    return hits[:limit]


def _schema_fields(descriptor: dict[str, Any], only: set[str] | None) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for f in descriptor.get("fields", []):
        name = str(f.get("name", ""))
        if only is not None and name not in only:
            continue
        if only is None:
            out.append((f"variable {name}", name, 4))
        if f.get("description"):
            out.append((f"variable {name}", str(f["description"]), 2))
        nomenclature = str(f.get("nomenclature") or "")
        if nomenclature not in ("", "-"):
            out.append((f"nomenclature {nomenclature}", nomenclature, 3))
    return out


_TOKEN = re.compile(r"[^0-9a-z]+")


def _found(word: str, anywhere: bool, folded: str, tokens: tuple[str, ...]) -> bool:
    """A word matches the start of a word of the value ('nir' finds BEN_NIR_IDT, not
    'fournir'); a word with punctuation in it (``anywhere``: 'eb_prs') matches anywhere."""
    if word not in folded:
        return False
    return anywhere or any(token.startswith(word) for token in tokens)


def _match(entry: _Entry, words: list[str]) -> Hit | None:
    score = 0
    matched: list[str] = []
    for word in words:
        anywhere = bool(_TOKEN.search(word))
        found = [
            (where, weight)
            for where, weight, folded, tokens in entry.fields
            if _found(word, anywhere, folded, tokens)
        ]
        if not found:
            return None
        score += max(weight for _, weight in found)
        for where, _ in found:
            if where not in matched:
                matched.append(where)
    return Hit(entry.kind, entry.name, entry.title, tuple(matched[:5]), score)
