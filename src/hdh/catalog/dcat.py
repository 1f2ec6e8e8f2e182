"""The hub's catalogue as HealthDCAT-AP (Release 5), in JSON-LD with its context embedded.

Health datasets are described at the NON_PUBLIC tier: each names its health data access
body, its legislation, its provenance and a contact point, and each published version is a
Parquet distribution reachable only through the hub. The document must pass both the
HealthDCAT-AP NON_PUBLIC shapes (on DCAT-AP 3.0.0) and the DCAT-AP 3.0.1 shapes; ``validate``
checks that with pyshacl, a development dependency imported only when it is called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

CONTEXT: dict[str, str] = {
    "csvw": "http://www.w3.org/ns/csvw#",
    "dcat": "http://www.w3.org/ns/dcat#",
    "dcatap": "http://data.europa.eu/r5r/",
    "dct": "http://purl.org/dc/terms/",
    "dpv": "https://w3id.org/dpv#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "healthdcatap": "http://healthdataportal.eu/ns/health#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "spdx": "http://spdx.org/rdf/terms#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

_AUTHORITY = "http://publications.europa.eu/resource/authority/"
#: The European Health Data Space regulation, (EU) 2025/327.
EHDS = "http://data.europa.eu/eli/reg/2025/327/oj"
NON_PUBLIC = _AUTHORITY + "access-right/NON_PUBLIC"
HEALTH_THEME = _AUTHORITY + "data-theme/HEAL"
PERSONAL_DATA = _AUTHORITY + "dataset-type/PERSONAL_DATA"
# The hub does not record which EHDS category (art. 51) a dataset falls in; what it holds
# is mostly individual care records, so every dataset is filed under EHR for now.
HEALTH_CATEGORY = "http://healthdata.ec.europa.eu/authority/health-category/EHR"
_MEDICAL_HEALTH = "https://w3id.org/dpv/dpv-pd#MedicalHealth"
_SHA256 = "http://spdx.org/rdf/terms#checksumAlgorithm_sha256"
_IANA = "https://www.iana.org/assignments/media-types/"

#: The hub's words for how often a dataset changes, and the EU frequency each one means.
FREQUENCIES: dict[str, str] = {
    "annual": "ANNUAL",
    "quarterly": "QUARTERLY",
    "monthly": "MONTHLY",
    "weekly": "WEEKLY",
    "daily": "DAILY",
    "irregular": "IRREG",
    "unknown": "UNKNOWN",
    "never": "NEVER",
}

# ISO 639-1 codes of the EU/EEA languages, and their codes in the EU language authority.
_LANGUAGES: dict[str, str] = {
    "bg": "BUL", "cs": "CES", "da": "DAN", "de": "DEU", "el": "ELL", "en": "ENG",
    "es": "SPA", "et": "EST", "fi": "FIN", "fr": "FRA", "ga": "GLE", "hr": "HRV",
    "hu": "HUN", "is": "ISL", "it": "ITA", "lt": "LIT", "lv": "LAV", "mt": "MLT",
    "nb": "NOB", "nl": "NLD", "nn": "NNO", "no": "NOR", "pl": "POL", "pt": "POR",
    "ro": "RON", "sk": "SLK", "sl": "SLV", "sv": "SWE",
}  # fmt: skip

_FILE_TYPES: dict[str, str] = {
    "application/vnd.apache.parquet": "PARQUET",
    "application/x-parquet": "PARQUET",
    "text/csv": "CSV",
}

# Arrow type names (as the hub stores them) and the CSVW built-in datatype for each.
_CSVW_TYPES: dict[str, str] = {
    "bool": "boolean",
    "int8": "byte",
    "int16": "short",
    "int32": "int",
    "int64": "long",
    "uint8": "unsignedByte",
    "uint16": "unsignedShort",
    "uint32": "unsignedInt",
    "uint64": "unsignedLong",
    "halffloat": "float",
    "float": "float",
    "double": "double",
    "string": "string",
    "large_string": "string",
    "utf8": "string",
    "large_utf8": "string",
    "binary": "binary",
    "large_binary": "binary",
    "fixed_size_binary": "binary",
    "date32": "date",
    "date64": "date",
    "timestamp": "datetime",
    "time32": "time",
    "time64": "time",
    "duration": "duration",
    "decimal128": "decimal",
    "decimal256": "decimal",
    "list": "json",
    "large_list": "json",
    "fixed_size_list": "json",
    "struct": "json",
    "map": "json",
}

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_LANGUAGE_TAG = re.compile(r"([a-z]{2,3})(-[A-Za-z0-9]{1,8})*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ColumnDescription:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class VersionDescription:
    """One published version. ``sha256`` is of the published bytes, not of the source file."""

    number: int
    rows: int | None
    byte_size: int
    created: str
    media_type: str = "application/vnd.apache.parquet"
    sha256: str = ""


@dataclass(frozen=True)
class DatasetDescription:
    """One dataset. ``frequency`` is a key of FREQUENCIES; ``rows`` is None when suppressed;
    times are ISO-8601 with an offset, and the temporal bounds a year, month, day or time."""

    name: str
    title: str
    description: str
    producer: str
    frequency: str
    legal_basis: str
    sensitivity: str
    keywords: tuple[str, ...]
    created: str
    modified: str
    rows: int | None
    columns: tuple[ColumnDescription, ...]
    versions: tuple[VersionDescription, ...]
    collection: str | None = None
    population: str = ""
    temporal_start: str | None = None
    temporal_end: str | None = None


@dataclass(frozen=True)
class HubDescription:
    """The hub itself: ``base_uri`` prefixes every IRI minted; ``hdab`` names the health data
    access body, the publisher standing in when it is empty."""

    base_uri: str
    title: str
    description: str
    publisher: str
    contact_email: str
    language: str = "fr"
    hdab: str = ""


def healthdcat_document(
    hub: HubDescription, datasets: Sequence[DatasetDescription]
) -> dict[str, Any]:
    """The catalogue as a JSON-LD document (a dict, ready for json.dumps), @context embedded.

    Every dataset needs at least one version. Where the profile demands a value the hub may
    lack, a plain stand-in is used: the title for a missing description, the sensitivity
    and collection (or else the name) for missing keywords, the publisher for the access
    body. Raises ValueError on input that would make a wrong or unparseable document.
    """
    writer = _Writer(hub)
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError("dataset names must be unique: each one becomes an IRI")
    collections: dict[str, list[DatasetDescription]] = {}
    for dataset in datasets:
        if dataset.collection:
            collections.setdefault(dataset.collection, []).append(dataset)
    listed = [writer.dataset(d) for d in datasets]
    listed += [writer.series(name, members) for name, members in collections.items()]
    stamps = [_datetime(d.modified, f"{d.name} modified") for d in datasets]
    stamps += [_datetime(v.created, f"{d.name} v{v.number}") for d in datasets for v in d.versions]
    catalog: dict[str, Any] = {
        "@id": f"{writer.base}catalog",
        "@type": "dcat:Catalog",
        "dct:title": writer.text(hub.title.strip()),
        "dct:description": writer.text(hub.description.strip() or hub.title.strip()),
        "dct:publisher": {"@id": writer.publisher},
        "dct:language": {"@id": writer.language_iri},
        "foaf:homepage": {"@id": writer.base},
        "dcat:themeTaxonomy": {"@id": _AUTHORITY + "data-theme"},
        "dcatap:applicableLegislation": {"@id": EHDS},
        "dcat:dataset": [{"@id": node["@id"]} for node in listed],
    }
    if stamps:
        catalog["dct:modified"] = _typed(max(stamps).isoformat(), "xsd:dateTime")
    graph = [catalog, *listed, *writer.distributions, *writer.agents.values(), writer.contact()]
    return {"@context": dict(CONTEXT), "@graph": graph}


def validate(document: dict[str, Any], shapes: Path) -> tuple[bool, str]:
    """Whether ``document`` conforms to the SHACL ``shapes`` (Turtle), and pyshacl's report.

    No inference and no owl:imports: both would pull in outside graphs and give false
    results with these shapes. A remote @context is refused, since reading it needs the
    network.
    """
    from pyshacl import validate as shacl
    from rdflib import Graph
    from rdflib.plugins.parsers.jsonld import to_rdf

    contexts = document.get("@context")
    if not isinstance(contexts, list):
        contexts = [contexts]
    if any(isinstance(c, str) for c in contexts):
        raise ValueError("the JSON-LD @context must be embedded, not a link")
    data = Graph()
    # Round-tripped through JSON so that what is checked is what a reader of the file gets.
    # Graph.parse(format="json-ld") wraps the graph in a ConjunctiveGraph, which rdflib 7
    # deprecates with a warning; its JSON-LD reader fills a plain graph without one.
    to_rdf(json.loads(json.dumps(document)), data)
    shapes_graph = Graph().parse(shapes, format="turtle")
    conforms, _, text = shacl(
        data,
        shacl_graph=shapes_graph,
        inference="none",
        do_owl_imports=False,
        allow_warnings=False,
    )
    return bool(conforms), str(text)


class _Writer:
    """Mints the IRIs and builds the nodes of one document."""

    def __init__(self, hub: HubDescription) -> None:
        base = hub.base_uri.strip()
        if not re.match(r"https?://[^\s/]+", base) or any(c in base for c in ' <>"{}|\\^`'):
            raise ValueError(f"base_uri {hub.base_uri!r} is not an http(s) address")
        self.base = base if base.endswith("/") else base + "/"
        self.hub = hub
        self.language = _language(hub.language)
        self.language_iri = _AUTHORITY + "language/" + _LANGUAGES[self.language.split("-")[0]]
        if not hub.publisher.strip() or not hub.title.strip():
            raise ValueError("the hub needs a title and a publisher: the profile requires both")
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", hub.contact_email.strip()):
            raise ValueError(f"contact_email {hub.contact_email!r} is not an e-mail address")
        self.agents: dict[str, dict[str, Any]] = {}
        self.distributions: list[dict[str, Any]] = []
        self.publisher = self.agent(hub.publisher, contact=True)
        # The profile wants exactly one contact point for the access body too; requests to
        # it reach the hub first, so the hub's own contact is the honest one to give.
        self.hdab = self.agent(hub.hdab, contact=True) if hub.hdab.strip() else self.publisher

    def text(self, value: str) -> dict[str, str]:
        return {"@value": value, "@language": self.language}

    def dataset_iri(self, name: str) -> str:
        return f"{self.base}datasets/{quote(name, safe='')}"

    def agent(self, name: str, *, contact: bool = False) -> str:
        name = name.strip()
        iri = f"{self.base}agents/{quote(name, safe='')}"
        node = self.agents.setdefault(
            iri, {"@id": iri, "@type": ["foaf:Agent", "foaf:Organization"], "foaf:name": name}
        )
        if contact:
            node["dcat:contactPoint"] = {"@id": self._contact_iri}
        return iri

    @property
    def _contact_iri(self) -> str:
        return f"{self.base}contact"

    def contact(self) -> dict[str, Any]:
        # Typed vcard:Kind explicitly: the shapes check the class without inference.
        return {
            "@id": self._contact_iri,
            "@type": "vcard:Kind",
            "vcard:fn": self.hub.publisher.strip(),
            "vcard:hasEmail": {"@id": "mailto:" + self.hub.contact_email.strip()},
        }

    def dataset(self, dataset: DatasetDescription) -> dict[str, Any]:
        iri = self.dataset_iri(dataset.name)
        if dataset.frequency not in FREQUENCIES:
            raise ValueError(
                f"{dataset.name}: frequency {dataset.frequency!r} is not one of "
                f"{', '.join(FREQUENCIES)}"
            )
        if not dataset.versions:
            raise ValueError(f"{dataset.name} has no version: the profile needs a distribution")
        numbers = [v.number for v in dataset.versions]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"{dataset.name}: version numbers must be unique")
        title = dataset.title.strip() or dataset.name
        node: dict[str, Any] = {
            "@id": iri,
            "@type": "dcat:Dataset",
            "dct:identifier": iri,
            "dct:title": self.text(title),
            "dct:description": self.text(dataset.description.strip() or title),
            "dct:publisher": {"@id": self.publisher},
            "healthdcatap:hdab": {"@id": self.hdab},
            "dcat:contactPoint": {"@id": self._contact_iri},
            "dct:accessRights": {"@id": NON_PUBLIC},
            "dcatap:applicableLegislation": {"@id": EHDS},
            "dct:type": {"@id": PERSONAL_DATA},
            "dcat:theme": {"@id": HEALTH_THEME},
            "healthdcatap:healthCategory": {"@id": HEALTH_CATEGORY},
            "dcat:keyword": self._keywords(dataset),
            "dct:provenance": {
                "@type": "dct:ProvenanceStatement",
                "rdfs:label": {"@value": self._provenance(dataset), "@language": "en"},
            },
            "dct:accrualPeriodicity": {
                "@id": _AUTHORITY + "frequency/" + FREQUENCIES[dataset.frequency]
            },
            "dct:issued": _typed(
                _datetime(dataset.created, f"{dataset.name} created").isoformat(), "xsd:dateTime"
            ),
            "dct:modified": _typed(
                _datetime(dataset.modified, f"{dataset.name} modified").isoformat(),
                "xsd:dateTime",
            ),
            "dct:language": {"@id": self.language_iri},
            "dcat:version": str(max(numbers)),
            "dcat:distribution": [
                {"@id": self._distribution(dataset, v)}
                for v in sorted(dataset.versions, key=lambda v: v.number)
            ],
        }
        if dataset.producer.strip():
            node["dct:creator"] = {"@id": self.agent(dataset.producer)}
        if dataset.sensitivity == "health":
            node["dpv:hasPersonalData"] = {"@id": _MEDICAL_HEALTH}
        if dataset.legal_basis.strip():
            node["dpv:hasLegalBasis"] = {
                "@type": "dpv:LegalBasis",
                "dct:description": self.text(dataset.legal_basis.strip()),
            }
        if dataset.rows is not None:
            node["healthdcatap:numberOfRecords"] = _count(dataset.rows, f"{dataset.name} rows")
        if dataset.population.strip():
            node["healthdcatap:populationCoverage"] = self.text(dataset.population.strip())
        period = _period(dataset)
        if period:
            node["dct:temporal"] = period
        if dataset.collection:
            node["dcat:inSeries"] = {"@id": self._series_iri(dataset.collection)}
        if dataset.columns:
            # csvw:tableSchema is outside both shape sets; each column is still a csvw:Column,
            # which the HealthDCAT-AP shapes check for a name, title, description and type.
            node["csvw:tableSchema"] = {
                "@type": "csvw:Schema",
                "csvw:column": {"@list": [self._column(c) for c in dataset.columns]},
            }
        return node

    def series(self, name: str, members: list[DatasetDescription]) -> dict[str, Any]:
        modified = [_datetime(d.modified, f"{d.name} modified") for d in members]
        return {
            "@id": self._series_iri(name),
            "@type": "dcat:DatasetSeries",
            "dct:title": name,
            "dct:description": {
                "@value": f"The {len(members)} datasets of collection {name} "
                f"in {self.hub.title.strip()}.",
                "@language": "en",
            },
            "dct:publisher": {"@id": self.publisher},
            "dcat:contactPoint": {"@id": self._contact_iri},
            "dcatap:applicableLegislation": {"@id": EHDS},
            "dct:modified": _typed(max(modified).isoformat(), "xsd:dateTime"),
        }

    def _series_iri(self, name: str) -> str:
        return f"{self.base}collections/{quote(name, safe='')}"

    def _keywords(self, dataset: DatasetDescription) -> list[dict[str, str] | str]:
        words = [w.strip() for w in dataset.keywords if w.strip()]
        if words:
            return [self.text(w) for w in words]
        # The NON_PUBLIC tier requires a keyword; the hub's own codes are the only ones
        # known to be true, so they go untagged.
        codes = [w for w in (dataset.sensitivity, dataset.collection) if w]
        return list(codes or [dataset.name])

    def _provenance(self, dataset: DatasetDescription) -> str:
        published = (
            f"Published in {self.hub.title.strip()} as immutable, encrypted Parquet versions, "
            "readable only through the hub."
        )
        producer = dataset.producer.strip()
        return f"Supplied by {producer}. {published}" if producer else published

    def _distribution(self, dataset: DatasetDescription, version: VersionDescription) -> str:
        iri = f"{self.dataset_iri(dataset.name)}/versions/{version.number}"
        where = f"{dataset.name} v{version.number}"
        if version.number < 1:
            raise ValueError(f"{where}: version numbers start at 1")
        size = _count(version.byte_size, f"{where} byte_size")["@value"]
        media_type = version.media_type.strip().lower()
        if not _MEDIA_TYPE.fullmatch(media_type):
            raise ValueError(f"{where}: {version.media_type!r} is not a media type")
        rows = "" if version.rows is None else _count(version.rows, f"{where} rows")["@value"]
        facts = f"{rows} rows, {size} bytes" if rows else f"{size} bytes"
        node: dict[str, Any] = {
            "@id": iri,
            "@type": "dcat:Distribution",
            "dct:title": where,
            # The byte size is stated in prose only: DCAT-AP 3.0.0 types dcat:byteSize as
            # xsd:decimal and 3.0.1 as xsd:nonNegativeInteger, so no typed value passes both.
            "dct:description": {
                "@value": f"Version {version.number} of {dataset.name}: {facts}.",
                "@language": "en",
            },
            "dcat:accessURL": {"@id": self.dataset_iri(dataset.name)},
            "dcat:mediaType": {"@id": _IANA + media_type},
            "dct:issued": _typed(_datetime(version.created, where).isoformat(), "xsd:dateTime"),
            "dcatap:applicableLegislation": {"@id": EHDS},
        }
        if media_type in _FILE_TYPES:
            node["dct:format"] = {"@id": _AUTHORITY + "file-type/" + _FILE_TYPES[media_type]}
        if version.sha256:
            digest = version.sha256.strip().lower()
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(f"{where}: sha256 must be 64 hexadecimal digits")
            node["spdx:checksum"] = {
                "@type": "spdx:Checksum",
                "spdx:algorithm": {"@id": _SHA256},
                "spdx:checksumValue": _typed(digest, "xsd:hexBinary"),
            }
        self.distributions.append(node)
        return iri

    def _column(self, column: ColumnDescription) -> dict[str, Any]:
        description = column.description.strip()
        return {
            "@type": "csvw:Column",
            "csvw:name": column.name,
            "csvw:titles": column.name,
            "dct:description": (
                self.text(description) if description else f"{column.name} ({column.type})"
            ),
            "csvw:datatype": csvw_datatype(column.type),
        }


def csvw_datatype(arrow_type: str) -> str:
    """The CSVW built-in datatype closest to an Arrow type name such as ``timestamp[us]``."""
    dictionary = re.match(r"dictionary<values=([^,>]+)", arrow_type)
    if dictionary:
        return csvw_datatype(dictionary.group(1))
    head = re.match(r"[a-z_0-9]+", arrow_type.strip())
    return _CSVW_TYPES.get(head.group(0), "any") if head else "any"


def _language(tag: str) -> str:
    tag = tag.strip()
    if not _LANGUAGE_TAG.fullmatch(tag) or tag.split("-")[0] not in _LANGUAGES:
        raise ValueError(f"language {tag!r} is not a tag of one of {', '.join(sorted(_LANGUAGES))}")
    return tag


def _datetime(value: str, what: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an ISO-8601 timestamp") from None
    if stamp.tzinfo is None:
        raise ValueError(f"{what}: {value!r} has no UTC offset")
    return stamp.astimezone(UTC)


def _period(dataset: DatasetDescription) -> dict[str, Any] | None:
    period: dict[str, Any] = {}
    for key, value in (("dcat:startDate", dataset.temporal_start),
                       ("dcat:endDate", dataset.temporal_end)):  # fmt: skip
        if value:
            period[key] = _temporal(value.strip(), f"{dataset.name} {key}")
    return {"@type": "dct:PeriodOfTime", **period} if period else None


def _temporal(value: str, what: str) -> dict[str, str]:
    """A year, a month, a day or a timestamp, typed as the DCAT-AP shapes accept."""
    if re.fullmatch(r"\d{4}", value):
        return _typed(value, "xsd:gYear")
    if re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        return _typed(value, "xsd:gYearMonth")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return _typed(date.fromisoformat(value).isoformat(), "xsd:date")
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not a date") from None
    return _typed(_datetime(value, what).isoformat(), "xsd:dateTime")


def _count(value: int, what: str) -> dict[str, str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: {value!r} is not a count")
    return _typed(str(value), "xsd:nonNegativeInteger")


def _typed(value: str, datatype: str) -> dict[str, str]:
    return {"@value": value, "@type": datatype}
