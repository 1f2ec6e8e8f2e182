"""The HealthDCAT-AP export passes both SHACL gates, and the gates can fail."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hdh.catalog.dcat import (
    ColumnDescription,
    DatasetDescription,
    HubDescription,
    VersionDescription,
    healthdcat_document,
    validate,
)
from tests.conftest import SHARED_DATA

SHACL = SHARED_DATA / "healthdcat_ap_shacl"
HEALTHDCAT = SHACL / "bundles" / "healthdcat-ap-r5-nonpublic_on_dcat-ap-3.0.0.ttl"
DCAT_AP = SHACL / "dcat-ap-3.0.1" / "shacl" / "shapes.ttl"
GATES = [pytest.param(HEALTHDCAT, id="healthdcat-r5"), pytest.param(DCAT_AP, id="dcat-ap-3.0.1")]

HUB = HubDescription(
    base_uri="https://hub.example.org/",
    title="Entrepôt de données de santé du CHU Exemple",
    description="Données pseudonymisées du CHU, accessibles sur autorisation.",
    publisher="CHU Exemple",
    contact_email="edc@chu-exemple.fr",
    language="fr",
    hdab="Health Data Hub",
)

PERSON_COLUMNS = (
    ColumnDescription("person_id", "int64", "Identifiant pseudonymisé"),
    ColumnDescription("year_of_birth", "int32", "Année de naissance"),
    ColumnDescription("gender_concept_id", "int64"),
)


def datasets() -> list[DatasetDescription]:
    return [
        DatasetDescription(
            name="patients",
            title="Patients",
            description="Une ligne par patient hospitalisé depuis 2015.",
            producer="Service d'information médicale",
            frequency="monthly",
            legal_basis="RGPD art. 6.1.e et 9.2.j ; autorisation CNIL",
            sensitivity="health",
            keywords=("patients", "hospitalisation"),
            created="2026-10-01T08:00:00+00:00",
            modified="2026-11-29T03:10:00+00:00",
            rows=48_210,
            columns=(
                ColumnDescription("patient_id", "string", "Pseudonyme du patient"),
                ColumnDescription("birth_date", "date32[day]", "Date de naissance, au mois"),
                ColumnDescription("admitted", "timestamp[us, tz=UTC]", "Entrée"),
                ColumnDescription("sex", "dictionary<values=string, indices=int32, ordered=0>"),
            ),
            versions=(
                VersionDescription(1, 47_002, 3_481_223, "2026-10-01T08:00:00+00:00"),
                VersionDescription(
                    2, 48_210, 3_570_114, "2026-11-29T03:10:00+00:00", sha256="ab" * 32
                ),
            ),
            population="Patients adultes hospitalisés au CHU Exemple",
            temporal_start="2015-01-01",
            temporal_end="2026-11",
        ),
        DatasetDescription(
            name="omop_person",
            title="OMOP person",
            description="Table person de la base OMOP GiBleed.",
            producer="OHDSI Eunomia",
            frequency="never",
            legal_basis="",
            sensitivity="health",
            keywords=("OMOP",),
            created="2026-11-02T10:00:00+00:00",
            modified="2026-11-02T10:00:00+00:00",
            rows=2_694,
            columns=PERSON_COLUMNS,
            versions=(VersionDescription(1, 2_694, 61_000, "2026-11-02T10:00:00+00:00"),),
            collection="gibleed",
        ),
        DatasetDescription(
            name="omop_visit_occurrence",
            title="OMOP visit_occurrence",
            description="Table visit_occurrence de la base OMOP GiBleed.",
            producer="OHDSI Eunomia",
            frequency="never",
            legal_basis="",
            sensitivity="health",
            keywords=(),
            created="2026-11-02T10:00:00+00:00",
            modified="2026-11-02T10:05:00+00:00",
            rows=None,
            columns=(ColumnDescription("visit_occurrence_id", "int64"),),
            versions=(VersionDescription(1, None, 1_200_000, "2026-11-02T10:05:00+00:00"),),
            collection="gibleed",
        ),
        DatasetDescription(
            name="rare_disease_registry",
            title="Registre maladies rares",
            description="Cas déclarés au registre régional.",
            producer="",
            frequency="irregular",
            legal_basis="RGPD art. 9.2.j",
            sensitivity="health",
            keywords=("maladies rares",),
            created="2026-06-15T12:00:00+02:00",
            modified="2026-06-15T12:00:00+02:00",
            rows=None,
            columns=(),
            versions=(VersionDescription(1, None, 9_800, "2026-06-15T12:00:00+02:00"),),
            temporal_start="2019",
        ),
    ]


def document() -> dict[str, Any]:
    """The export as a reader of the file gets it."""
    result: dict[str, Any] = json.loads(json.dumps(healthdcat_document(HUB, datasets())))
    return result


def node(doc: dict[str, Any], iri: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in doc["@graph"] if n["@id"] == iri)
    return found


@pytest.mark.parametrize("shapes", GATES)
def test_the_export_conforms(shapes: Path) -> None:
    conforms, report = validate(document(), shapes)
    assert conforms, report


def drop_description(doc: dict[str, Any]) -> None:
    del node(doc, "https://hub.example.org/datasets/patients")["dct:description"]


def drop_publisher(doc: dict[str, Any]) -> None:
    del node(doc, "https://hub.example.org/catalog")["dct:publisher"]


def drop_hdab(doc: dict[str, Any]) -> None:
    del node(doc, "https://hub.example.org/datasets/omop_person")["healthdcatap:hdab"]


@pytest.mark.parametrize(
    ("shapes", "breaks", "path"),
    [
        pytest.param(HEALTHDCAT, drop_description, "dct:description", id="healthdcat-desc"),
        pytest.param(DCAT_AP, drop_description, "dct:description", id="dcat-ap-desc"),
        pytest.param(HEALTHDCAT, drop_publisher, "dct:publisher", id="healthdcat-publisher"),
        pytest.param(DCAT_AP, drop_publisher, "dct:publisher", id="dcat-ap-publisher"),
        pytest.param(HEALTHDCAT, drop_hdab, "healthdcatap:hdab", id="healthdcat-hdab"),
    ],
)
def test_a_missing_mandatory_element_fails(shapes: Path, breaks: Any, path: str) -> None:
    doc = document()
    breaks(doc)
    conforms, report = validate(doc, shapes)
    assert not conforms
    assert f"Result Path: {path}" in report


def test_the_export_says_what_the_hub_knows() -> None:
    doc = document()
    patients = node(doc, "https://hub.example.org/datasets/patients")
    assert [d["@id"] for d in patients["dcat:distribution"]] == [
        "https://hub.example.org/datasets/patients/versions/1",
        "https://hub.example.org/datasets/patients/versions/2",
    ]
    assert patients["healthdcatap:numberOfRecords"]["@value"] == "48210"
    assert patients["dct:accrualPeriodicity"]["@id"].endswith("/frequency/MONTHLY")
    columns = patients["csvw:tableSchema"]["csvw:column"]["@list"]
    assert [(c["csvw:name"], c["csvw:datatype"]) for c in columns] == [
        ("patient_id", "string"),
        ("birth_date", "date"),
        ("admitted", "datetime"),
        ("sex", "string"),
    ]
    v2 = node(doc, "https://hub.example.org/datasets/patients/versions/2")
    assert v2["dct:format"]["@id"].endswith("/file-type/PARQUET")
    assert v2["dcat:accessURL"]["@id"] == "https://hub.example.org/datasets/patients"
    assert v2["spdx:checksum"]["spdx:checksumValue"]["@value"] == "ab" * 32
    assert "3570114 bytes" in v2["dct:description"]["@value"]

    suppressed = node(doc, "https://hub.example.org/datasets/omop_visit_occurrence")
    assert "healthdcatap:numberOfRecords" not in suppressed
    assert (
        "rows"
        not in node(doc, suppressed["dcat:distribution"][0]["@id"])["dct:description"]["@value"]
    )

    series = node(doc, "https://hub.example.org/collections/gibleed")
    assert series["@type"] == "dcat:DatasetSeries"
    members = [n["@id"] for n in doc["@graph"] if n.get("dcat:inSeries", {}).get("@id")]
    assert members == [
        "https://hub.example.org/datasets/omop_person",
        "https://hub.example.org/datasets/omop_visit_occurrence",
    ]
    catalog = node(doc, "https://hub.example.org/catalog")
    assert {"@id": series["@id"]} in catalog["dcat:dataset"]
    assert catalog["dct:modified"]["@value"] == "2026-11-29T03:10:00+00:00"
    assert (
        patients["healthdcatap:hdab"]["@id"] == "https://hub.example.org/agents/Health%20Data%20Hub"
    )


def test_the_publisher_stands_in_for_a_missing_access_body() -> None:
    hub = replace(HUB, hdab="")
    doc = healthdcat_document(hub, datasets())
    patients = node(doc, "https://hub.example.org/datasets/patients")
    assert patients["healthdcatap:hdab"] == patients["dct:publisher"]


def test_a_bad_frequency_names_the_allowed_words() -> None:
    bad = [replace(datasets()[0], frequency="fortnightly")]
    with pytest.raises(ValueError, match="fortnightly") as raised:
        healthdcat_document(HUB, bad)
    for word in ("annual", "quarterly", "monthly", "weekly", "daily", "irregular", "unknown"):
        assert word in str(raised.value)
    assert "never" in str(raised.value)


def contexts(value: Any) -> list[Any]:
    """Every @context value anywhere in a JSON-LD tree."""
    if isinstance(value, dict):
        found = [value["@context"]] if "@context" in value else []
        return found + [c for v in value.values() for c in contexts(v)]
    if isinstance(value, list):
        return [c for v in value for c in contexts(v)]
    return []


def test_the_context_is_embedded() -> None:
    found = contexts(document())
    assert found
    assert all(isinstance(c, dict) for c in found)
    remote = {"@context": "https://example.org/context.jsonld", "@graph": []}
    with pytest.raises(ValueError, match="embedded"):
        validate(remote, DCAT_AP)
