"""``/api/v1``: the data stewards' operations, as ``hdh catalog schemas|schema|export|
import-schema``, ``hdh dataset describe|ingest|quarantine`` and ``hdh person
object|objections|erase`` do them, with the same library calls and the same
authorisation (``hdh.authz``).

Files come as ``multipart/form-data`` and are written, as they arrive, into a private
folder under the hub's ``tmp/`` that is removed once the request is answered, whatever
happened. A person's identifier travels only in a JSON request body and is never
answered back: only the hub pseudonyms computed from it are kept and shown.
"""

from __future__ import annotations

import contextlib
import lzma
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

import python_multipart
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from hdh import authz
from hdh.api.catalog import VersionSummary, _summary
from hdh.api.deps import MAX_INT, Limit, Offset, Page, Who, authorise, hub_of, page
from hdh.catalog.export import export_healthdcat
from hdh.catalog.service import (
    ImportResult,
    SchemaEntry,
    describe,
    get_schema,
    import_schemas,
    list_schemas,
)
from hdh.errors import InvalidInput
from hdh.governance.erasure import erase_person
from hdh.governance.objections import ObjectionInfo, list_objections, record_objection
from hdh.hub import Hub
from hdh.ingest.service import IngestOptions, ingest_file, read_quarantine, version_info
from hdh.storage.objects import private_tmp

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(prefix="/api/v1")

#: The rules ``hdh dataset ingest --rule COLUMN=ACTION`` takes (``hdh.ingest.pseudonymise``).
Action = Literal["keep", "drop", "pseudonymise", "year", "month", "department", "band10"]
#: How often a dataset is updated (``hdh.catalog.models.FREQUENCIES``).
Frequency = Literal[
    "annual", "quarterly", "monthly", "weekly", "daily", "irregular", "never", "unknown"
]
Column = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=100)]

#: Largest schema upload: a Table Schema, an OMOP CDM field-level CSV, or an archive.
MAX_SCHEMA_UPLOAD = 64 * 1024 * 1024
#: Largest total of the Table Schemas an archive unpacks to, and its most members.
MAX_UNPACKED = 256 * 1024 * 1024
MAX_MEMBERS = 20_000
#: Largest text field of a form (besides the file).
MAX_FIELD_BYTES = 256 * 1024
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


# --- Uploads ----------------------------------------------------------------------------


@contextlib.contextmanager
def _scratch(hub: Hub) -> Iterator[Path]:
    """A private (0700) folder under the hub's ``tmp/``, removed on the way out."""
    with tempfile.TemporaryDirectory(dir=private_tmp(hub), prefix="upload-") as folder:
        yield Path(folder)


def _plain_name(raw: str) -> str:
    """The uploaded file's own name, refused when it is a path (or no name at all)."""
    if (
        not raw
        or raw in (".", "..")
        or any(c in raw for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in raw)
        or len(raw.encode("utf-8", "surrogateescape")) > 255
    ):
        raise InvalidInput(
            f"the file name {raw[:100]!r} is not a plain file name",
            hint="send the file under its own name, without folders (e.g. patients.csv)",
        )
    return raw


class _Form:
    """A ``multipart/form-data`` body read as it arrives: the one file part (field
    ``file``) written straight into ``folder`` under its own name, and a few small text
    fields kept. Anything else is refused (422) before it is stored."""

    def __init__(self, folder: Path, fields: tuple[str, ...], max_file_bytes: int | None) -> None:
        self.folder = folder
        self.allowed = fields
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.file: Path | None = None
        self._out: IO[bytes] | None = None
        self._pending: list[bytes] = []
        self._written = 0
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._name = ""
        self._data = bytearray()
        self._ended = False

    async def read(self, request: Request) -> None:
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise InvalidInput(
                "the request is not multipart/form-data",
                hint="send the file as the form field 'file' of a multipart/form-data body",
            )
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        parser = python_multipart.MultipartParser(boundary, callbacks)
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if self._pending:
                    await run_in_threadpool(self._flush)
            parser.finalize()
            await run_in_threadpool(self._flush)
        except FormParserError:
            raise InvalidInput(
                "the request body is not valid multipart/form-data",
                hint="send a form with the file as the field 'file'",
            ) from None
        except ClientDisconnect:
            self._ended = False
        finally:
            if self._out is not None:
                self._out.close()
                self._out = None
        if not self._ended:
            raise InvalidInput(
                "the form ends before its closing boundary: the upload was cut short",
                hint="send the whole form again",
            )

    def _end(self) -> None:
        self._ended = True

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if self._out is not None:
            self._out.write(b"".join(pending))

    def _begin(self) -> None:
        self._disposition, self._name, self._data = b"", "", bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = _decoded(options.get(b"name", b""))
        if not name:
            raise InvalidInput("a part of the form has no name", hint="name every form field")
        if b"filename" not in options:
            if name == "file":
                raise InvalidInput(
                    "the form field 'file' is not a file",
                    hint="send the file as a file part, with its file name",
                )
            if name not in self.allowed:
                raise InvalidInput(
                    f"the form has a field {name[:100]!r} this route does not take",
                    hint="its fields are: file, " + ", ".join(self.allowed),
                )
            if name in self.fields:
                raise InvalidInput(f"the form gives {name!r} twice", hint="give it once")
            self._name = name
            return
        if name != "file":
            raise InvalidInput(
                f"the form has a file in the field {name[:100]!r}",
                hint="send the file as the form field 'file'",
            )
        if self.file is not None:
            raise InvalidInput("the form holds more than one file", hint="send one file")
        # The parser keeps only the last piece of a name with backslashes (a Windows
        # path): such a name is refused as a path, like one with slashes.
        if b"\\" in self._disposition:
            raise InvalidInput(
                "the file name holds a backslash: it is a path",
                hint="send the file under its own name, without folders (e.g. patients.csv)",
            )
        plain = _plain_name(_decoded(options[b"filename"]))
        self.file = self.folder / plain
        self._out = self.file.open("xb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._written += end - start
            if self.max_file_bytes is not None and self._written > self.max_file_bytes:
                raise InvalidInput(
                    f"the file is larger than {self.max_file_bytes >> 20} MiB",
                    hint="send a smaller file, or use the command line on the hub's machine",
                )
            self._pending.append(data[start:end])
            return
        if len(self._data) + end - start > MAX_FIELD_BYTES:
            raise InvalidInput(
                f"the form field {self._name!r} is larger than {MAX_FIELD_BYTES >> 10} KiB",
                hint="send a shorter value",
            )
        self._data += data[start:end]

    def _part_end(self) -> None:
        if self._out is not None:
            self._flush()
            self._out.close()
            self._out = None
            return
        try:
            self.fields[self._name] = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"the form field {self._name!r} is not UTF-8 text", hint="send UTF-8"
            ) from None

    def the_file(self) -> Path:
        if self.file is None:
            raise InvalidInput(
                "the form has no file", hint="send the file as the form field 'file'"
            )
        return self.file


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _form_body(
    fields: dict[str, Any], description: str, json_fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The OpenAPI request body of a route that takes a file (``file``) and ``fields``
    (``json_fields`` among them are JSON text)."""
    encoding = {"encoding": {f: {"contentType": "application/json"} for f in json_fields}}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "additionalProperties": False,
                        "properties": {"file": {"type": "string", "format": "binary"}, **fields},
                    },
                    **(encoding if json_fields else {}),
                }
            },
        }
    }


# --- The catalogue: schemas and export --------------------------------------------------


class SchemaSummary(BaseModel):
    name: str
    #: table or nomenclature
    kind: str
    product: str
    title: str
    fields: int
    #: The file it came from (its path in the imported folder).
    source: str


class SchemaField(BaseModel):
    name: str
    type: str
    format: str
    description: str
    #: The nomenclature its codes come from (empty: none).
    nomenclature: str
    constraints: dict[str, Any]


class SchemaOut(BaseModel):
    name: str
    kind: str
    product: str
    title: str
    source: str
    sha256: str
    primary_key: list[str]
    fields: list[SchemaField]
    #: The Frictionless Table Schema as imported.
    descriptor: dict[str, Any]


class Imported(BaseModel):
    tables: int
    nomenclatures: int
    added: list[str]
    updated: list[str]
    unchanged: list[str]


class JSONLDResponse(JSONResponse):
    media_type = "application/ld+json"


def _schema_summary(e: SchemaEntry) -> SchemaSummary:
    return SchemaSummary(name=e.name, kind=e.kind, product=e.product, title=e.title,
                         fields=len(e.schema.fields), source=e.source)  # fmt: skip


@router.get("/catalog/schemas", response_model=Page[SchemaSummary], tags=["catalogue"])
def schemas(
    request: Request,
    who: Who,
    kind: Literal["table", "nomenclature"] | None = None,
    product: Annotated[
        str | None, Query(max_length=200, description="Only this product (e.g. EGB).")
    ] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Any:
    """The imported Table Schemas and nomenclatures, by product and name
    (``hdh catalog schemas``)."""
    hub = hub_of(request)
    authz.check(hub, who, "catalog.read")
    every = [_schema_summary(e) for e in list_schemas(hub, kind=kind, product=product)]
    return page(every, offset, limit)


@router.get("/catalog/schemas/{name:path}", response_model=SchemaOut, tags=["catalogue"])
def schema(request: Request, who: Who, name: str) -> SchemaOut:
    """One schema: its fields, types, constraints and nomenclatures, and the Table
    Schema itself (``hdh catalog schema``)."""
    hub = hub_of(request)
    authz.check(hub, who, "catalog.read")
    entry = get_schema(hub, name)
    fields = [
        SchemaField(
            name=f.name, type=f.type, format=f.format, description=f.description,
            nomenclature="" if f.nomenclature in ("", "-") else f.nomenclature,
            constraints=dict(f.constraints),
        )
        for f in entry.schema.fields
    ]  # fmt: skip
    return SchemaOut(
        name=entry.name, kind=entry.kind, product=entry.product, title=entry.title,
        source=entry.source, sha256=entry.sha256, primary_key=list(entry.schema.primary_key),
        fields=fields, descriptor=entry.schema.raw,
    )  # fmt: skip


@router.post(
    "/catalog/schemas", response_model=Imported, status_code=201, tags=["catalogue"],
    responses={200: {"model": Imported, "description": "Nothing new: every schema was "
                     "already imported or only updated."}},
    openapi_extra=_form_body(
        {"prefix": {"type": "string", "maxLength": 100,
                    "description": "OMOP: name the schemas PREFIX.table (default: omop-VERSION)."}},
        "The file (``file``): a Table Schema (.json), an OMOP CDM field-level CSV (.csv), "
        "or a folder of Table Schemas as .zip, .tar, .tar.gz or .tgz.",
    ),
)  # fmt: skip
async def import_schema(request: Request, response: Response, who: Who) -> Imported:
    """Import Table Schemas into the catalogue (``hdh catalog import-schema``), from one
    uploaded file (form field ``file``):

    * a Frictionless Table Schema (``.json``), named by its ``name`` or else its file;
    * an OHDSI OMOP CDM field-level CSV (``.csv``): one schema per CDM table, named
      ``PREFIX.table`` (form field ``prefix``, default ``omop-VERSION``);
    * a folder of Table Schemas as ``.zip``, ``.tar``, ``.tar.gz`` or ``.tgz``: its
      ``.json`` files, those under a ``nomenclatures`` folder being nomenclatures (the
      SNDS layout). Links, absolute paths and ``..`` are refused.

    All or nothing: one bad schema imports none. 201 when a schema was added, 200 when
    every one was already there (unchanged or updated)."""
    hub = hub_of(request)
    await authorise(hub, who, "catalog.manage")
    with _scratch(hub) as scratch:
        (scratch / "upload").mkdir()
        form = _Form(scratch / "upload", ("prefix",), MAX_SCHEMA_UPLOAD)
        await form.read(request)
        prefix = form.fields.get("prefix") or None
        if prefix is not None and len(prefix) > 100:
            raise InvalidInput("the prefix is longer than 100 characters", hint="shorten it")
        result = await run_in_threadpool(
            _import, hub, form.the_file(), scratch / "import", who.actor, prefix
        )
    if not result.added:
        response.status_code = 200
    return Imported(
        tables=result.tables, nomenclatures=result.nomenclatures, added=result.added,
        updated=result.updated, unchanged=result.unchanged,
    )  # fmt: skip


def _import(hub: Hub, upload: Path, work: Path, actor: str, prefix: str | None) -> ImportResult:
    name = upload.name
    lower = name.lower()
    if lower.endswith(".csv"):
        return import_schemas(hub, upload, actor=actor, prefix=prefix)
    archive = next((s for s in _ARCHIVES if lower.endswith(s)), None)
    if lower.endswith(".json"):
        folder = work / (name[: -len(".json")] or "schemas")
        folder.mkdir(parents=True)
        upload.rename(folder / f"{name[: -len('.json')]}.json")
    elif archive is not None:
        folder = work / (name[: -len(archive)] or "schemas")
        folder.mkdir(parents=True)
        _unpack(upload, folder, zipped=archive == ".zip")
        if next(folder.rglob("*.json"), None) is None:
            raise InvalidInput(
                f"{name} holds no .json file", hint="archive the folder of Table Schemas"
            )
    else:
        raise InvalidInput(
            f"{name}: the catalogue imports no such file",
            hint="send a Table Schema (.json), an OMOP CDM field-level CSV (.csv), or a "
            "folder of Table Schemas as " + ", ".join(_ARCHIVES),
        )
    return import_schemas(hub, folder, actor=actor, prefix=prefix)


def _member(into: Path, raw: str) -> Path | None:
    """Where an archive member goes under ``into`` (None: not a Table Schema, skipped);
    refused when it would land outside."""
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if raw.startswith(("/", "\\")) or ".." in parts or any(":" in p for p in parts[:1]):
        raise InvalidInput(
            f"the archive holds {raw[:200]!r}, a path outside its folder",
            hint="archive the folder with relative paths",
        )
    if not parts or not parts[-1].endswith(".json"):
        return None
    if parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None  # macOS resource forks, not schemas
    return into.joinpath(*parts)


def _unpack(archive: Path, into: Path, *, zipped: bool) -> None:
    """The ``.json`` members of a zip or tar archive, under ``into``, with bounds on their
    number and total size."""
    total = 0

    def copy(source: IO[bytes], target: Path) -> None:
        nonlocal total
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = target.open("xb")
        except FileExistsError:
            raise InvalidInput(
                f"the archive holds {target.relative_to(into)} twice", hint="archive it once"
            ) from None
        with out:
            while block := source.read(1024 * 1024):
                total += len(block)
                if total > MAX_UNPACKED:
                    raise InvalidInput(
                        f"the archive unpacks to more than {MAX_UNPACKED >> 20} MiB of schemas",
                        hint="import the folder in smaller archives",
                    )
                out.write(block)

    def too_many() -> InvalidInput:
        return InvalidInput(
            f"the archive holds more than {MAX_MEMBERS} files",
            hint="import the folder in smaller archives",
        )

    try:
        if zipped:
            with zipfile.ZipFile(archive) as zipped_file:
                members = zipped_file.infolist()
                if len(members) > MAX_MEMBERS:
                    raise too_many()
                for info in members:
                    target = None if info.is_dir() else _member(into, info.filename)
                    if target is not None:
                        with zipped_file.open(info) as source:
                            copy(source, target)
            return
        with tarfile.open(archive, "r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise too_many()
                if member.isdir():
                    continue
                target = _member(into, member.name)
                if not member.isfile():
                    if target is None:
                        continue
                    raise InvalidInput(
                        f"the archive member {member.name[:200]!r} is a link, not a file",
                        hint="archive the files themselves",
                    )
                packed = tar.extractfile(member)
                if target is not None and packed is not None:
                    with packed:
                        copy(packed, target)
    except (*_UNPACKING, lzma.LZMAError, zlib.error) as exc:
        # An OSError's text names the path it was writing: only its reason is shown.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(
            f"{archive.name} cannot be unpacked ({type(exc).__name__}: {reason[:200]})",
            hint="send a valid .zip, .tar, .tar.gz or .tgz archive",
        ) from None


#: What a damaged, encrypted or odd archive raises while it is read.
_UNPACKING = (
    zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError, NotImplementedError,
    ValueError,
)  # fmt: skip


@router.get(
    "/catalog/export", response_class=JSONLDResponse, tags=["catalogue"],
    responses={200: {"description": "The catalogue as a JSON-LD document.",
                     "content": {"application/ld+json": {"schema": {"type": "object"}}}}},
)  # fmt: skip
def export(
    request: Request,
    who: Who,
    fmt: Annotated[Literal["healthdcat-ap"], Query(alias="format")] = "healthdcat-ap",
) -> JSONLDResponse:
    """The catalogue as HealthDCAT-AP JSON-LD, the EHDS metadata standard (``hdh catalog
    export``): the datasets that have a version, their columns and row counts (as the
    profiles show them), never a row."""
    hub = hub_of(request)
    authz.check(hub, who, "catalog.read")
    return JSONLDResponse(export_healthdcat(hub))


# --- Datasets: description, ingestion, quarantine ----------------------------------------


class Description(BaseModel):
    """A dataset's catalogue description: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    producer: str | None = Field(default=None, max_length=300)
    frequency: Frequency | None = None
    legal_basis: str | None = Field(default=None, max_length=2_000)
    #: Replaces the keywords.
    keywords: list[Keyword] | None = Field(default=None, max_length=50)


class Described(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    title: str
    description: str
    producer: str
    frequency: str
    legal_basis: str
    sensitivity: str
    collection: str | None
    keywords: list[str]
    #: The imported Table Schema its versions are held to.
    table_schema: str | None = Field(alias="schema")
    created_at: str
    updated_at: str


@router.patch("/datasets/{name}", response_model=Described, tags=["datasets"])
def describe_dataset(request: Request, who: Who, name: str, body: Description) -> Described:
    """Set a dataset's catalogue description, only the fields given (``hdh dataset
    describe``); audited."""
    hub = hub_of(request)
    authz.check(hub, who, "catalog.manage")
    meta = describe(
        hub, name, actor=who.actor, title=body.title, description=body.description,
        producer=body.producer, frequency=body.frequency, legal_basis=body.legal_basis,
        keywords=body.keywords,
    )  # fmt: skip
    return Described.model_validate(meta)


class IngestRequest(Description):
    """What ``hdh dataset ingest`` takes as options, as one JSON object."""

    #: COLUMN -> ACTION. Every column that looks like a direct identifier needs one.
    rules: dict[Column, Action] = Field(default_factory=dict, max_length=5_000)
    #: An imported Table Schema the file must conform to.
    table_schema: str | None = Field(default=None, alias="schema", max_length=200)
    #: COLUMN -> strptime pattern of a date column, e.g. ``%d%m%Y``.
    formats: dict[Column, Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=dict, max_length=5_000
    )
    #: refuse: a file with rows that break the schema is refused whole; quarantine: those
    #: rows are kept apart, encrypted, and the others published.
    on_error: Literal["refuse", "quarantine"] = "refuse"
    location: str = Field(default="local", min_length=1, max_length=64)
    #: Text encoding of a CSV file.
    encoding: str = Field(default="utf-8", min_length=1, max_length=40)
    #: CSV delimiter (one character); detected when absent.
    delimiter: str | None = Field(default=None, pattern=r'^[^\r\n"]$')


class Ingested(BaseModel):
    dataset: str
    version: VersionSummary
    #: True: this source was already ingested with these rules; nothing new was published.
    already: bool
    #: Rows that broke the schema, kept apart (GET …/quarantine).
    quarantined: int
    #: Rows of people who object, left out of the version.
    objections_excluded: int
    warnings: list[str]


#: The ``options`` form field: a JSON object (``IngestRequest``).
_INGEST_OPTIONS = {"options": IngestRequest.model_json_schema(by_alias=True)}


@router.post(
    "/datasets/{name}/versions", response_model=Ingested, status_code=201, tags=["datasets"],
    responses={200: {"model": Ingested,
                     "description": "Already ingested: the existing version (already=true)."}},
    openapi_extra=_form_body(
        _INGEST_OPTIONS,
        "The file (``file``, under its own name: its suffix gives its format) and the "
        "options as JSON (``options``).",
        json_fields=("options",),
    ),
)  # fmt: skip
async def ingest_version(request: Request, response: Response, who: Who, name: str) -> Ingested:
    """Ingest an uploaded file as a new immutable version of dataset ``name`` (created on
    first ingest): checked, pseudonymised, encrypted (``hdh dataset ingest``).

    The body is ``multipart/form-data`` with two fields:

    * ``file``: the file under its own name (a name with folders is refused), a CSV
      (``.csv``, ``.tsv``, ``.txt``, gzipped or not), Parquet or SAS file: the format comes
      from the name's suffix;
    * ``options`` (optional): a JSON object, ``IngestRequest``: ``rules`` (COLUMN ->
      keep, drop, pseudonymise, year, month, department or band10), ``schema``,
      ``formats``, ``on_error``, ``location``, ``encoding``, ``delimiter``, and the
      catalogue description (``title``, ``description``, ``producer``, ``frequency``,
      ``legal_basis``, ``keywords``).

    Columns that look like direct identifiers must each get a rule: without, the file is
    refused (422, ``identifiers_found``, naming them). 201 with the new version; 200 with
    ``already`` true when the same source was ingested with the same rules before. The
    uploaded file is kept only while the request runs. For example::

        curl -H "Authorization: Bearer $TOKEN" -F file=@patients.csv \\
             -F 'options={"rules": {"SSN": "pseudonymise", "FIRST": "drop"}}' \\
             https://hub.example/api/v1/datasets/patients/versions
    """
    hub = hub_of(request)
    await authorise(hub, who, "dataset.ingest")
    with _scratch(hub) as scratch:
        form = _Form(scratch, ("options",), hub.settings.server.max_upload_mib << 20)
        await form.read(request)
        path = form.the_file()
        options = _ingest_options(form.fields.get("options", ""))
        done = await run_in_threadpool(_ingest, hub, path, name, who.actor, options)
    if done.already:
        response.status_code = 200
    return done


def _ingest_options(text: str) -> IngestOptions:
    try:
        asked = IngestRequest.model_validate_json(text.strip() or "{}")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "options", *e.get("loc", ()))} for e in exc.errors()]
        ) from None
    metadata = {
        "title": asked.title,
        "description": asked.description,
        "producer": asked.producer,
        "frequency": asked.frequency,
        "legal_basis": asked.legal_basis,
        "keywords": tuple(asked.keywords) if asked.keywords else None,
    }
    return IngestOptions(
        rules=tuple(f"{column}={action}" for column, action in asked.rules.items()),
        location=asked.location,
        encoding=asked.encoding,
        delimiter=asked.delimiter,
        schema=asked.table_schema,
        formats=tuple(f"{column}={pattern}" for column, pattern in asked.formats.items()),
        on_error=asked.on_error,
        metadata=tuple((k, v) for k, v in metadata.items() if v is not None),
    )


def _ingest(hub: Hub, path: Path, name: str, actor: str, options: IngestOptions) -> Ingested:
    result = ingest_file(hub, path, name=name, actor=actor, options=options)
    chosen = version_info(hub, name, result.version)
    held = (chosen.manifest.get("validation") or {}).get("quarantine") or {}
    return Ingested(
        dataset=name, version=_summary(chosen), already=result.already,
        quarantined=int(held.get("rows", 0)),
        objections_excluded=int(chosen.manifest.get("objections_excluded") or 0),
        warnings=list(chosen.manifest.get("warnings") or []),
    )  # fmt: skip


class QuarantinedRow(BaseModel):
    #: Its row number in the source file (1: the first row after the header).
    row: int
    #: What it broke.
    problems: str
    #: The row as the source gave it (not pseudonymised).
    values: dict[str, Any]


class QuarantinePage(Page[QuarantinedRow]):
    dataset: str
    version: int


@router.get("/datasets/{name}/quarantine", response_model=QuarantinePage, tags=["datasets"])
def quarantine(
    request: Request,
    who: Who,
    name: str,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="Default: the latest.")
    ] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> QuarantinePage:
    """The rows a version kept apart because they broke its schema, with what each broke
    (``hdh dataset quarantine``). They are as the source gave them, not pseudonymised:
    every read is audited."""
    hub = hub_of(request)
    authz.check(hub, who, "dataset.read")
    number = version_info(hub, name, version).number
    table = read_quarantine(hub, name, number, actor=who.actor)
    total = table.num_rows
    items = [
        QuarantinedRow(
            row=row.pop("_row"),
            problems=row.pop("_problems") or "",
            values={k: _plain(v) for k, v in row.items()},
        )
        for row in table.slice(min(offset, total), limit).to_pylist()
    ]
    return QuarantinePage(
        dataset=name, version=number, items=items, total=total, offset=offset, limit=limit,
        next_offset=offset + limit if offset + limit < total else None,
    )  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return value


# --- People: objections and erasure -----------------------------------------------------


class Person(BaseModel):
    """A person, by one of their identifiers as in the source files (e.g. their NIR), or
    by a hub pseudonym; never both. The identifier is hashed into pseudonyms and then
    forgotten: no answer, log or audit event holds it."""

    model_config = ConfigDict(extra="forbid")

    identifier: SecretStr | None = Field(default=None, min_length=1, max_length=200)
    pseudonym: str | None = Field(default=None, min_length=1, max_length=64)
    #: The secret version of ``pseudonym`` (default: the newest).
    secret_version: int | None = Field(default=None, ge=1, le=MAX_INT)
    #: The request's reference (kept in the audit trail).
    note: str = Field(default="", max_length=500)

    def identifier_value(self) -> str | None:
        return None if self.identifier is None else self.identifier.get_secret_value()


class Erased(BaseModel):
    #: The person's pseudonym under the newest secret.
    pseudonym: str
    rows: int
    #: dataset@version -> rows removed
    versions: dict[str, int]
    #: dataset@version -> quarantined rows removed
    quarantined: dict[str, int]
    #: Project extracts deleted (rebuilt without the person by the next query).
    extracts: int


@router.post(
    "/people/objections", response_model=list[ObjectionInfo], status_code=201, tags=["people"]
)
def object_(request: Request, who: Who, body: Person) -> list[ObjectionInfo]:
    """Record that a person objects to further use of their data (``hdh person
    object``): new versions and project reads leave their rows out. Only pseudonyms are
    kept (one per pseudonymisation secret version), never the identifier. 409 when the
    objection is already recorded."""
    return record_objection(
        hub_of(request), who, identifier=body.identifier_value(), pseudonym=body.pseudonym,
        secret_version=body.secret_version, note=body.note,
    )  # fmt: skip


@router.get("/people/objections", response_model=Page[ObjectionInfo], tags=["people"])
def objections(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    """The objections recorded, oldest first (pseudonyms, never identifiers)."""
    return page(list_objections(hub_of(request), who), offset, limit)


@router.post("/people/erasures", response_model=Erased, tags=["people"])
def erase(request: Request, who: Who, body: Person) -> Erased:
    """Erase a person's rows from every stored version and quarantine (``hdh person
    erase``): the parts that hold them are rewritten, their manifests record the erasure,
    and the objection is recorded. Administrators only; audited (pseudonyms and counts,
    never the identifier)."""
    report = erase_person(
        hub_of(request), who, identifier=body.identifier_value(), pseudonym=body.pseudonym,
        secret_version=body.secret_version, note=body.note,
    )  # fmt: skip
    return Erased(pseudonym=report.pseudonym, rows=report.rows, versions=report.versions,
                  quarantined=report.quarantined, extracts=report.extracts)  # fmt: skip
