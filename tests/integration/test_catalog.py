"""The catalogue with real data: the SNDS Table Schemas and synthetic tables, OMOP GiBleed
held to the OMOP CDM's types, Synthea and SAS files; search; HealthDCAT-AP export
validated with the SHACL shapes. One hub is built for the module (SQLite)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hdh import audit
from hdh.catalog.dcat import validate
from hdh.catalog.export import export_healthdcat
from hdh.catalog.service import describe, import_schemas, list_schemas, search
from hdh.catalog.tableschema import BadSchema, SchemaViolation
from hdh.hub import Hub, init_hub
from hdh.ingest.service import (
    IngestOptions,
    IngestResult,
    ingest,
    ingest_file,
    ingest_folder,
    list_datasets,
    read_quarantine,
    read_version,
    version_info,
    versions,
)
from tests.conftest import SHARED_DATA

SNDS = SHARED_DATA / "snds_synthetic"
DQD = SHARED_DATA / "omop_dqd_checks"
GIBLEED = SHARED_DATA / "omop_eunomia_gibleed"
SHACL = SHARED_DATA / "healthdcat_ap_shacl"
ACTOR = "os:steward"
# What a steward decides for the SNDS columns the hub flags: pseudonymised patient keys,
# dropped phone numbers, and codes kept (drug codes that look like phone numbers, flags).
SNDS_RULES = {
    **dict.fromkeys(
        ["ASS_NIR_ANO", "BEN_NIR_ANO", "BEN_NIR_IDT", "BEN_NIR_PSA", "ben_nir_psa",
         "NIR_ANO_17", "NIR_ANO_MAM"], "pseudonymise"),
    **dict.fromkeys(["IDE_TEL_NU1", "IDE_TEL_NU2"], "drop"),
    **dict.fromkeys(
        ["BEN_CDI_NIR", "NIR_RET", "COD_UCD", "UCD_COD", "UCD_UCD_COD", "PHA_CPA_PCP",
         "RSA_NUM"], "keep"),
}  # fmt: skip
# Tables whose CDM schema differs from the GiBleed export (a misspelt column in cost, 5.4
# columns in cdm_source and metadata): ingested without a schema, so left out here.
OMOP_MISFITS = ("cost", "cdm_source", "metadata")


@dataclass
class Built:
    hub: Hub
    snds: dict[str, list[IngestResult]] = field(default_factory=dict)
    snds_rows: dict[str, int] = field(default_factory=dict)


def header(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return next(csv.reader(fh))


def rows_in(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def linked(folder: Path, target: Path, leave_out: tuple[str, ...]) -> Path:
    target.mkdir()
    for source in folder.iterdir():
        if not source.name.startswith(leave_out):
            (target / source.name).symlink_to(source)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("catalogue")
    with init_hub(root / "hub", actor="test:init") as hub:
        out = Built(hub)
        import_schemas(hub, SNDS, actor=ACTOR)
        import_schemas(hub, DQD / "OMOP_CDMv5.3_Field_Level.csv", actor=ACTOR)
        import_schemas(hub, DQD / "OMOP_CDMv5.4_Field_Level.csv", actor=ACTOR)
        for folder in sorted({p.parent for p in (SNDS / "schemas").rglob("*.csv")}):
            columns = {c for p in folder.glob("*.csv") for c in header(p)}
            rules = tuple(f"{c}={a}" for c, a in SNDS_RULES.items() if c in columns)
            result = ingest_folder(
                hub,
                folder,
                actor=ACTOR,
                options=IngestOptions(rules=rules, schema="auto", on_error="quarantine"),
            )
            assert result.failed == [], result.failed
            out.snds[folder.name] = result.results
            for p in folder.glob("*.csv"):
                out.snds_rows[p.stem] = rows_in(p)
        omop = IngestOptions(
            rules=("address_1=drop", "address_2=drop", "provider_name=drop"),
            schema="auto:omop-5.3,omop-5.4",
            on_error="quarantine",
        )
        for fmt in ("csv", "parquet"):
            folder = linked(GIBLEED / fmt, root / f"gibleed-{fmt}", OMOP_MISFITS)
            result = ingest_folder(
                hub, folder, actor=ACTOR, options=omop, collection=f"gibleed-{fmt}"
            )
            assert result.failed == []
        describe(
            hub,
            "gibleed-csv.person",
            actor=ACTOR,
            title="Eunomia GiBleed persons",
            producer="OHDSI",
            frequency="never",
            legal_basis="Synthetic data, no legal basis needed",
            keywords=["OMOP", "gastrointestinal bleeding"],
        )
        ingest(
            hub,
            SHARED_DATA / "synthea_csv_100_ma" / "csv" / "patients.csv",
            name="synthea-patients",
            actor=ACTOR,
            rules=["Id=pseudonymise", "SSN=pseudonymise", "DRIVERS=drop", "PASSPORT=drop",
                   "PREFIX=drop", "FIRST=drop", "LAST=drop", "SUFFIX=drop", "MAIDEN=drop",
                   "ADDRESS=drop", "LAT=drop", "LON=drop", "BIRTHDATE=year",
                   "DEATHDATE=month", "ZIP=department"],
        )  # fmt: skip
        ingest(
            hub,
            SHARED_DATA / "sas7bdat" / "pyreadstat" / "basic" / "sample.sas7bdat",
            name="sas-sample",
            actor=ACTOR,
        )
        yield out


def test_the_snds_schemas_import_from_folders_with_spaces_and_accents(built: Built) -> None:
    schemas = list_schemas(built.hub)
    assert sum(1 for s in schemas if s.kind == "table" and not s.name.startswith("omop")) == 191
    assert sum(1 for s in schemas if s.kind == "nomenclature") == 175
    deaths = {s.name for s in schemas if s.source.startswith("schemas/Causes de décès/")}
    assert deaths == {"KI_CCI_R", "KI_ECD_R"}
    again = import_schemas(built.hub, SNDS, actor=ACTOR)
    assert (len(again.added), len(again.updated), len(again.unchanged)) == (0, 0, 366)


def test_a_rule_for_a_column_no_file_has_is_refused(built: Built) -> None:
    from hdh.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"rule BEN_NIR=drop: no file in EGB has that column"):
        ingest_folder(
            built.hub,
            SNDS / "schemas" / "EGB",
            actor=ACTOR,
            options=IngestOptions(
                rules=("BEN_NIR=drop", "BEN_NIR_IDT=pseudonymise", "PHA_CPA_PCP=keep"),
                schema="auto",
            ),
            collection="typo",
        )
    assert not [d for d in list_datasets(built.hub) if d["name"].startswith("typo.")]


def test_a_folder_with_one_bad_schema_imports_nothing(built: Built, tmp_path: Path) -> None:
    (tmp_path / "GOOD.json").write_text(json.dumps({"name": "NEW_T", "fields": [{"name": "a"}]}))
    (tmp_path / "BAD.json").write_text('{"name": "B", "fields": [{"name": "x", "type": "z"}]}')
    with pytest.raises(BadSchema, match=r"1 of 2 schema files cannot be imported: BAD.json"):
        import_schemas(built.hub, tmp_path, actor=ACTOR)
    assert "NEW_T" not in {s.name for s in list_schemas(built.hub)}


def test_every_snds_table_is_published_or_quarantined_row_for_row(built: Built) -> None:
    results = [r for found in built.snds.values() for r in found]
    assert len(results) == 191
    quarantined_tables = 0
    for result in results:
        table = result.dataset.rsplit(".", 1)[1].upper()
        source_rows = next(v for k, v in built.snds_rows.items() if k.upper() == table)
        assert result.rows + result.quarantined == source_rows, result.dataset
        quarantined_tables += result.quarantined > 0
    # The synthetic rows break their own schemas in these tables (codes longer than
    # maxLength, duplicate keys, text in integer columns): measured, not assumed.
    assert quarantined_tables == 51
    bio = version_info(built.hub, "dcirs.ns_bio_f")
    problems = {p["column"]: p for p in bio.manifest["validation"]["problems"]}
    assert problems["CAI_LIQ_COD"]["check"] == "maxLength 3"
    assert problems["CAI_LIQ_COD"]["count"] == 10
    assert "03C018" not in json.dumps(bio.manifest)  # values stay in the quarantine


def test_a_conformant_snds_table_is_typed_by_its_schema(built: Built) -> None:
    table = read_version(built.hub, "beneficiaire.ir_ben_r")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["BEN_NAI_ANN"] == "int16"  # year
    assert types["BEN_DCD_AME"] == "string"  # yearmonth, as YYYY-MM
    assert table.column("BEN_DCD_AME").to_pylist()[0] == "2020-03"
    assert types["BEN_IDT_TOP"] == "bool"
    assert types["BEN_NIR_PSA"] == "string"  # pseudonymised
    # Until the steward writes one, the dataset has its schema's title.
    hit = next(h for h in search(built.hub, "ir_ben_r") if h.kind == "dataset")
    assert hit.title == "Référentiel des bénéficiaires du SNIIRAM-SNDS"


def test_quarantined_rows_are_kept_encrypted_and_reading_them_is_audited(built: Built) -> None:
    rows = read_quarantine(built.hub, "egb.eb_pha_f", actor=ACTOR)
    assert rows.num_rows == 10
    assert rows.column("_row").to_pylist() == list(range(1, 11))
    assert "PHA_PRS_IDE: maximum 9999999" in rows.column("_problems")[0].as_py()
    storage = built.hub.settings.hub_dir / "storage"
    stored = b"".join(p.read_bytes() for p in storage.rglob("*") if p.is_file())
    assert b"3400921600506" not in stored  # a bad value, only inside the encrypted file
    with built.hub.read() as session:
        events = audit.list_events(session, audit.EventFilter(action="dataset.quarantine.read"))
    assert [e.object_id for e in events][-1:] == ["egb.eb_pha_f@1"]


def test_a_file_that_breaks_its_schema_is_refused_whole_by_default(
    built: Built, tmp_path: Path
) -> None:
    source = SNDS / "schemas" / "EGB" / "EB_PHA_F.csv"
    with pytest.raises(SchemaViolation) as caught:
        ingest(built.hub, source, name="refused-pha", actor=ACTOR, schema="EB_PHA_F",
               rules=["PHA_CPA_PCP=keep"])  # fmt: skip
    message = str(caught.value)
    assert "breaks schema 'EB_PHA_F' in 10 of 10 rows" in message
    assert "PHA_PRS_IDE: maximum 9999999 in 10 rows (e.g. row 1: '3400921600506'" in message
    assert "--on-error quarantine" in message
    assert "refused-pha" not in {d["name"] for d in list_datasets(built.hub)}
    with built.hub.read() as session:
        failure = audit.list_events(session, audit.EventFilter(action="dataset.ingest"))[-1]
    assert failure.outcome == "failure"
    assert "3400921600506" not in failure.details  # no value in the audit log
    assert "PHA_PRS_IDE maximum 9999999 (10)" in failure.details


def test_omop_csv_and_parquet_give_identical_versions(built: Built) -> None:
    tables = [
        d["name"].split(".", 1)[1]
        for d in list_datasets(built.hub)
        if d["name"].startswith("gibleed-csv.")
    ]
    assert len(tables) == 34
    for table in tables:
        from_csv = read_version(built.hub, f"gibleed-csv.{table}")
        from_parquet = read_version(built.hub, f"gibleed-parquet.{table}")
        assert from_csv.equals(from_parquet), table
    person = read_version(built.hub, "gibleed-csv.person")
    assert person.num_rows == 2694
    assert str(person.schema.field("birth_datetime").type) == "timestamp[ms]"
    # GiBleed repeats some primary keys: those rows are kept apart, not published.
    drugs = versions(built.hub, "gibleed-csv.drug_exposure")[-1]
    assert drugs.rows + drugs.manifest["validation"]["quarantine"]["rows"] == 67707


def test_search_finds_datasets_by_variable_nomenclature_and_accents(built: Built) -> None:
    by_variable = {h.name for h in search(built.hub, "BEN_NIR_IDT") if h.kind == "dataset"}
    assert "egb.eb_prs_f" in by_variable
    by_nomenclature = search(built.hub, "IR_TOC_V")
    assert any(h.name == "egb.eb_prs_f" for h in by_nomenclature)
    assert any(h.kind == "nomenclature" and h.name == "IR_TOC_V" for h in by_nomenclature)
    deaths = {h.name for h in search(built.hub, "deces lieu")}
    assert "DS_LIE_V" in deaths  # "Lieu du décès", found without the accents
    described = search(built.hub, "gastrointestinal")
    assert [h.name for h in described] == ["gibleed-csv.person"]
    assert search(built.hub, "nir fournir-nothing-like-this") == []


def test_the_healthdcat_export_validates_against_both_shape_sets(built: Built) -> None:
    document = export_healthdcat(built.hub)
    datasets = [n for n in document["@graph"] if n.get("@type") == "dcat:Dataset"]
    assert len(datasets) == len(list_datasets(built.hub))
    text = json.dumps(document)
    assert "Eunomia GiBleed persons" in text
    for shapes in (
        SHACL / "bundles" / "healthdcat-ap-r5-nonpublic_on_dcat-ap-3.0.0.ttl",
        SHACL / "dcat-ap-3.0.1" / "shacl" / "shapes.ttl",
    ):
        conforms, report = validate(document, shapes)
        assert conforms, report[:3000]


def test_dates_written_sas_style_are_read_by_declared_formats(built: Built, tmp_path: Path) -> None:
    source = tmp_path / "stays.csv"
    source.write_text(
        "stay;admitted;birth\n"
        + "".join(f"{i};09032023;06DEC1959:00:00:00\n" for i in range(20))
        + "20;31022023;06DEC1959:00:00:00\n",
        encoding="utf-8",
    )
    formats = ["admitted=%d%m%Y", "birth=%d%b%Y:%H:%M:%S"]
    with pytest.raises(SchemaViolation, match=r"admitted: type: not a valid date in 1 row"):
        ingest(built.hub, source, name="stays", actor=ACTOR, formats=formats)
    result = ingest_file(
        built.hub,
        source,
        name="stays",
        actor=ACTOR,
        options=IngestOptions(formats=tuple(formats), on_error="quarantine"),
    )
    assert (result.rows, result.quarantined) == (20, 1)
    table = read_version(built.hub, "stays")
    assert str(table.schema.field("admitted").type) == "date32[day]"
    assert table.column("birth")[0].as_py().year == 1959


def test_catalogue_metadata_is_checked_and_audited(built: Built) -> None:
    from hdh.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput, match=r"update frequency 'sometimes' is not known"):
        describe(built.hub, "sas-sample", actor=ACTOR, frequency="sometimes")
    with pytest.raises(NotFound):
        describe(built.hub, "no-such-dataset", actor=ACTOR, title="x")
    meta = describe(built.hub, "sas-sample", actor=ACTOR, producer="Roche pyreadstat tests")
    assert meta["producer"] == "Roche pyreadstat tests"
    with built.hub.read() as session:
        events = audit.list_events(session, audit.EventFilter(action="dataset.describe"))
    assert json.loads(events[-1].details) == {"changed": ["producer"]}


def test_search_sees_each_change_to_the_catalogue_at_once(hub: Hub) -> None:
    """The search index is kept between searches; a description, a new dataset or a
    new schema is found by the very next search."""
    nursery = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
    ingest(hub, nursery, name="nursery", actor=ACTOR)
    assert search(hub, "kindergarten") == []
    describe(hub, "nursery", actor=ACTOR, keywords=["kindergarten"])
    assert [h.name for h in search(hub, "kindergarten")] == ["nursery"]
    ingest(hub, nursery, name="creche", actor=ACTOR)
    assert {h.name for h in search(hub, "has_nurs")} == {"nursery", "creche"}
    assert search(hub, "IR_TOC_V") == []
    import_schemas(hub, SNDS, actor=ACTOR)
    assert any(h.name == "IR_TOC_V" for h in search(hub, "IR_TOC_V"))
