"""The data stewards' work over the REST API, on real public files: uploads that become
versions (or are refused, naming why, leaving nothing behind), catalogue descriptions,
Table Schemas and the HealthDCAT-AP export, quarantined rows, and people's objections
and erasure, with identifiers only in request bodies and never in an answer."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any, get_args

from fastapi.testclient import TestClient

from hdh import audit
from hdh.api import create_app
from hdh.api.stewardship import Action, Frequency
from hdh.catalog.models import FREQUENCIES
from hdh.hub import Hub
from hdh.identity.service import add_user, create_token
from hdh.ingest.pseudonymise import ACTIONS
from hdh.ingest.service import ingest
from tests.conftest import SHARED_DATA

NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
PATIENTS = SHARED_DATA / "synthea_csv_100_ma" / "csv" / "patients.csv"
SNDS = SHARED_DATA / "snds_synthetic" / "schemas"
OMOP_FIELDS = SHARED_DATA / "omop_dqd_checks" / "OMOP_CDMv5.4_Field_Level.csv"
PATIENT_RULES = {
    "Id": "pseudonymise", "SSN": "pseudonymise", "DRIVERS": "drop", "PASSPORT": "drop",
    "PREFIX": "drop", "FIRST": "drop", "LAST": "drop", "SUFFIX": "drop", "MAIDEN": "drop",
    "ADDRESS": "drop", "LAT": "drop", "LON": "drop", "BIRTHDATE": "year",
    "DEATHDATE": "month", "ZIP": "department",
}  # fmt: skip


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def people(hub: Hub) -> dict[str, dict[str, str]]:
    """Bearer headers for a steward, a researcher and an administrator."""
    headers = {}
    for name, role in (("stella", "steward"), ("rex", "researcher"), ("ada", "admin")):
        add_user(hub, name, roles=[role], actor="os:test")
        headers[name] = {"Authorization": f"Bearer {create_token(hub, name, actor='os:test')[0]}"}
    return headers


def upload(
    client: TestClient,
    name: str,
    path: Path,
    headers: dict[str, str] | None = None,
    filename: str | None = None,
    **options: Any,
) -> Any:
    return client.post(
        f"/api/v1/datasets/{name}/versions",
        headers=headers,
        files={
            "file": (path.name if filename is None else filename, path.read_bytes(), "text/csv")
        },
        data={"options": json.dumps(options)} if options else None,
    )


def error(answer: Any) -> tuple[int, str]:
    assert set(answer.json()) == {"error"}
    assert set(answer.json()["error"]) == {"code", "message", "hint", "retryable"}
    return answer.status_code, answer.json()["error"]["code"]


def leftovers(hub: Hub) -> list[Path]:
    """What uploads left under the hub's tmp/ (which they made)."""
    tmp = hub.settings.hub_dir / "tmp"
    assert tmp.is_dir()
    return list(tmp.iterdir())


def test_the_enumerations_are_the_librarys() -> None:
    assert get_args(Frequency) == FREQUENCIES
    assert get_args(Action) == ACTIONS


def test_a_steward_uploads_files_that_become_versions(hub: Hub) -> None:
    who = people(hub)
    with TestClient(create_app(hub)) as client:
        anonymous = upload(client, "nursery", NURSERY)
        assert error(anonymous) == (401, "authentication_failed")
        denied = upload(client, "nursery", NURSERY, who["rex"])
        assert error(denied) == (403, "permission_denied")
        assert "rex may not ingest files" in denied.json()["error"]["message"]

        made = upload(client, "nursery", NURSERY, who["stella"], title="Nursery applications")
        assert made.status_code == 201, made.text
        version = made.json()["version"]
        assert (made.json()["already"], version["number"]) == (False, 1)
        assert version["rows"] == len(rows_of(NURSERY))
        assert version["source_name"] == "nursery.csv"
        shown = client.get("/api/v1/datasets/nursery", headers=who["rex"]).json()
        assert shown["metadata"]["title"] == "Nursery applications"

        # Direct identifiers without rules: refused, each named, nothing published or kept.
        refused = upload(client, "patients", PATIENTS, who["stella"])
        assert error(refused) == (422, "identifiers_found")
        message = refused.json()["error"]["message"]
        assert message.startswith("patients.csv has columns that look like direct identifiers")
        assert "SSN (its name suggests a national id)" in message
        assert leftovers(hub) == []
        missing = client.get("/api/v1/datasets/patients", headers=who["stella"])
        assert error(missing) == (404, "not_found")

        accepted = upload(client, "patients", PATIENTS, who["stella"], rules=PATIENT_RULES)
        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["version"]["rows"] == len(rows_of(PATIENTS))
        assert accepted.json()["version"]["rules"]["SSN"] == "pseudonymise"
        again = upload(client, "patients", PATIENTS, who["stella"], rules=PATIENT_RULES)
        assert again.status_code == 200, again.text
        assert (again.json()["already"], again.json()["version"]["number"]) == (True, 1)
        versions = client.get("/api/v1/datasets/patients/versions", headers=who["stella"])
        assert versions.json()["total"] == 1
        assert leftovers(hub) == []

        # What is not a plain file with its options is refused before any ingest.
        for filename in ("../nursery.csv", "a/b.csv", "C:\\exports\\nursery.csv", ""):
            path_named = upload(client, "other", NURSERY, who["stella"], filename=filename)
            assert error(path_named) == (422, "invalid_input"), filename
        unknown_rule = upload(client, "other", NURSERY, who["stella"], rules={"index": "hide"})
        assert error(unknown_rule) == (422, "invalid_input")
        assert "options.rules.index" in unknown_rule.json()["error"]["message"]
        bad_json = client.post(
            "/api/v1/datasets/other/versions",
            headers=who["stella"],
            files={"file": ("nursery.csv", b"a,b\n1,2\n")},
            data={"options": "{rules"},
        )
        assert error(bad_json) == (422, "invalid_input")
        cut_short = client.post(
            "/api/v1/datasets/other/versions",
            headers={**who["stella"], "Content-Type": "multipart/form-data; boundary=xx"},
            content=b'--xx\r\nContent-Disposition: form-data; name="file"; filename="n.csv"'
            b"\r\n\r\n" + NURSERY.read_bytes()[:5000],
        )
        assert error(cut_short) == (422, "invalid_input")
        assert "cut short" in cut_short.json()["error"]["message"]
        no_file = client.post(
            "/api/v1/datasets/other/versions", headers=who["stella"], data={"options": "{}"}
        )
        assert error(no_file) == (422, "invalid_input")
        as_json = client.post(
            "/api/v1/datasets/other/versions", headers=who["stella"], json={"rules": {}}
        )
        assert error(as_json) == (422, "invalid_input")
        not_a_format = upload(client, "other", NURSERY, who["stella"], filename="nursery.xlsx")
        assert error(not_a_format) == (422, "bad_source")
        assert leftovers(hub) == []
        assert client.get("/api/v1/datasets/other", headers=who["stella"]).status_code == 404

    # A file over the server's upload limit is refused as it arrives; nothing is kept.
    large = hub.settings.hub_dir.parent / "large.csv"
    large.write_bytes(b"a,b\n" + b"1,2\n" * 300_000)  # 1.1 MiB
    with Hub.open(hub.settings.hub_dir, {"HDH_SERVER_MAX_UPLOAD_MIB": "1"}) as limited:
        with TestClient(create_app(limited)) as client:
            big = upload(client, "other", large, who["stella"])
            assert error(big) == (422, "invalid_input")
            assert big.json()["error"]["message"] == "the file is larger than 1 MiB"
        assert leftovers(limited) == []


def test_describing_a_dataset_changes_what_the_catalogue_shows(hub: Hub, tmp_path: Path) -> None:
    who = people(hub)
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    with TestClient(create_app(hub)) as client:
        body = {
            "title": "Nursery applications",
            "producer": "UCI Machine Learning Repository",
            "frequency": "never",
            "keywords": ["nursery", "ranking"],
        }
        assert error(client.patch("/api/v1/datasets/nursery", json=body)) == (
            401,
            "authentication_failed",
        )
        denied = client.patch("/api/v1/datasets/nursery", headers=who["rex"], json=body)
        assert error(denied) == (403, "permission_denied")
        described = client.patch("/api/v1/datasets/nursery", headers=who["stella"], json=body)
        assert described.status_code == 200, described.text
        assert described.json()["producer"] == "UCI Machine Learning Repository"
        shown = client.get("/api/v1/datasets/nursery", headers=who["rex"]).json()["metadata"]
        assert (shown["title"], shown["frequency"], shown["keywords"]) == (
            "Nursery applications",
            "never",
            ["nursery", "ranking"],
        )
        only = {"legal_basis": "CC BY 4.0, public data"}
        client.patch("/api/v1/datasets/nursery", headers=who["stella"], json=only)
        shown = client.get("/api/v1/datasets/nursery", headers=who["rex"]).json()["metadata"]
        assert (shown["title"], shown["legal_basis"]) == (
            "Nursery applications",
            only["legal_basis"],
        )

        for wrong in ({"frequency": "hourly"}, {}, {"colour": "blue"}):
            refused = client.patch("/api/v1/datasets/nursery", headers=who["stella"], json=wrong)
            assert error(refused) == (422, "invalid_input"), wrong
        missing = client.patch("/api/v1/datasets/nope", headers=who["stella"], json=body)
        assert error(missing) == (404, "not_found")


def test_schemas_import_list_show_export_and_quarantine(hub: Hub, tmp_path: Path) -> None:
    who = people(hub)
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    schemas = "/api/v1/catalog/schemas"
    with TestClient(create_app(hub)) as client:
        one = SNDS / "EGB" / "EB_PHA_F.json"
        files = {"file": (one.name, one.read_bytes(), "application/json")}
        denied = client.post(schemas, headers=who["rex"], files=files)
        assert error(denied) == (403, "permission_denied")
        made = client.post(schemas, headers=who["stella"], files=files)
        assert made.status_code == 201, made.text
        assert (made.json()["added"], made.json()["tables"]) == (["EB_PHA_F"], 1)
        again = client.post(schemas, headers=who["stella"], files=files)
        assert (again.status_code, again.json()["unchanged"]) == (200, ["EB_PHA_F"])

        # A folder as an archive, with its nomenclatures (the SNDS layout).
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as archive:
            for path in sorted((SNDS / "BENEFICIAIRE").glob("*.json")):
                archive.write(path, f"schemas/BENEFICIAIRE/{path.name}")
            nomenclature = SHARED_DATA / "snds_synthetic" / "nomenclatures" / "ORAVAL"
            archive.write(nomenclature / "DS_ACC_V.json", "nomenclatures/ORAVAL/DS_ACC_V.json")
            archive.writestr("schemas/BENEFICIAIRE/IR_BEN_R.csv", "not a schema, skipped")
        files = {"file": ("snds.zip", packed.getvalue(), "application/zip")}
        zipped = client.post(schemas, headers=who["stella"], files=files)
        assert zipped.status_code == 201, zipped.text
        assert (zipped.json()["tables"], zipped.json()["nomenclatures"]) == (2, 1)
        assert sorted(zipped.json()["added"]) == ["DS_ACC_V", "IR_BEN_R", "IR_IBA_R"]

        tarred = io.BytesIO()
        with tarfile.open(fileobj=tarred, mode="w:gz") as archive:
            archive.add(SNDS / "EGB" / "EB_BIO_F.json", "EGB/EB_BIO_F.json")
        files = {"file": ("egb.tar.gz", tarred.getvalue(), "application/gzip")}
        assert client.post(schemas, headers=who["stella"], files=files).json()["added"] == [
            "EB_BIO_F"
        ]
        fields = {"file": (OMOP_FIELDS.name, OMOP_FIELDS.read_bytes(), "text/csv")}
        omop = client.post(schemas, headers=who["stella"], files=fields, data={"prefix": "cdm"})
        assert omop.status_code == 201, omop.text
        assert "cdm.person" in omop.json()["added"]

        escaping = io.BytesIO()
        with zipfile.ZipFile(escaping, "w") as archive:
            archive.writestr("../../evil.json", '{"name": "EVIL", "fields": []}')
        empty = io.BytesIO()
        with zipfile.ZipFile(empty, "w") as archive:
            archive.writestr("README.md", "no schema here")
        refusals = {
            "evil.zip": escaping.getvalue(),
            "notes.txt": b"hello",
            "broken.zip": b"PK\x03\x04 not really",
            "empty.zip": empty.getvalue(),
            "bad.json": b'{"name": "B", "fields": [{"type": "z"}]}',
        }
        answers = {}
        for name, content in refusals.items():
            answers[name] = client.post(
                schemas, headers=who["stella"], files={"file": (name, content)}
            )
            assert error(answers[name])[0] == 422, (name, answers[name].text)
            assert str(hub.settings.hub_dir) not in answers[name].text  # no server path
        assert "a path outside its folder" in answers["evil.zip"].json()["error"]["message"]
        hint = answers["notes.txt"].json()["error"]["hint"]
        assert "send a Table Schema (.json), an OMOP CDM field-level CSV" in hint
        assert error(answers["bad.json"]) == (422, "bad_schema")
        assert leftovers(hub) == []

        listed = client.get(f"{schemas}?kind=table&product=EGB", headers=who["rex"]).json()
        assert [s["name"] for s in listed["items"]] == ["EB_BIO_F", "EB_PHA_F"]
        paged = client.get(f"{schemas}?limit=2", headers=who["rex"]).json()
        assert (len(paged["items"]), paged["next_offset"]) == (2, 2)
        assert paged["total"] == 5 + len(omop.json()["added"])
        nomenclatures = client.get(f"{schemas}?kind=nomenclature", headers=who["rex"]).json()
        assert [s["name"] for s in nomenclatures["items"]] == ["DS_ACC_V"]
        shown = client.get(f"{schemas}/EB_PHA_F", headers=who["rex"]).json()
        assert (shown["product"], shown["kind"]) == ("EGB", "table")
        prs = next(f for f in shown["fields"] if f["name"] == "PHA_PRS_IDE")
        assert prs["constraints"]["maximum"] == 9999999
        assert shown["descriptor"]["name"] == "EB_PHA_F"
        assert error(client.get(f"{schemas}/EB_PHA", headers=who["rex"])) == (404, "not_found")

        # Rows that break their schema: refused whole, or kept apart on request.
        source = SNDS / "EGB" / "EB_PHA_F.csv"
        options = {"rules": {"PHA_CPA_PCP": "keep"}, "schema": "EB_PHA_F"}
        broken = upload(client, "egb-pha", source, who["stella"], **options)
        assert error(broken) == (422, "schema_violation")
        assert "breaks schema 'EB_PHA_F' in 10 of 10 rows" in broken.json()["error"]["message"]
        assert leftovers(hub) == []
        kept = upload(client, "egb-pha", source, who["stella"], **options, on_error="quarantine")
        assert kept.status_code == 201, kept.text
        assert (kept.json()["version"]["rows"], kept.json()["quarantined"]) == (0, 10)
        assert error(client.get("/api/v1/datasets/egb-pha/quarantine", headers=who["rex"])) == (
            403,
            "permission_denied",
        )
        held = client.get("/api/v1/datasets/egb-pha/quarantine?limit=4", headers=who["stella"])
        assert held.status_code == 200, held.text
        page = held.json()
        assert (page["total"], page["version"], page["next_offset"]) == (10, 1, 4)
        assert [r["row"] for r in page["items"]] == [1, 2, 3, 4]
        assert "PHA_PRS_IDE: maximum 9999999" in page["items"][0]["problems"]
        assert page["items"][0]["values"]["PHA_PRS_IDE"] == rows_of(source)[0]["PHA_PRS_IDE"]
        last = client.get(
            "/api/v1/datasets/egb-pha/quarantine?offset=8", headers=who["stella"]
        ).json()
        assert ([r["row"] for r in last["items"]], last["next_offset"]) == ([9, 10], None)
        none_kept = client.get("/api/v1/datasets/nursery/quarantine", headers=who["stella"])
        assert error(none_kept) == (404, "not_found")

        # The export names every dataset that has a version.
        exported = client.get("/api/v1/catalog/export", headers=who["rex"])
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/ld+json")
        document = exported.json()
        assert isinstance(document["@context"], dict)
        named = {
            node["@id"].rsplit("/", 1)[1]: node["dct:title"]["@value"]
            for node in document["@graph"]
            if node.get("@type") == "dcat:Dataset"
        }
        assert named == {"nursery": "nursery", "egb-pha": shown["title"]}  # the schema's
        wrong = client.get("/api/v1/catalog/export?format=dcat-us", headers=who["rex"])
        assert error(wrong) == (422, "invalid_input")
        assert error(client.get("/api/v1/catalog/export")) == (401, "authentication_failed")


def test_objections_and_erasure_keep_identifiers_out_of_urls_and_answers(hub: Hub) -> None:
    who = people(hub)
    ingest(hub, PATIENTS, name="patients", actor="os:steward",
           rules=[f"{c}={a}" for c, a in PATIENT_RULES.items()])  # fmt: skip
    rows = rows_of(PATIENTS)
    ssn = rows[3]["SSN"]
    theirs = sum(1 for r in rows if r["SSN"] == ssn)
    assert theirs >= 1
    with TestClient(create_app(hub)) as client:
        person = {"identifier": ssn, "note": "DPO-2026-17"}
        anonymous = client.post("/api/v1/people/objections", json=person)
        assert error(anonymous) == (401, "authentication_failed")
        denied = client.post("/api/v1/people/objections", headers=who["rex"], json=person)
        assert error(denied) == (403, "permission_denied")
        made = client.post("/api/v1/people/objections", headers=who["stella"], json=person)
        assert made.status_code == 201, made.text
        [recorded] = made.json()
        assert (recorded["secret_version"], recorded["note"]) == (1, "DPO-2026-17")
        twice = client.post("/api/v1/people/objections", headers=who["stella"], json=person)
        assert error(twice) == (409, "conflict")
        both = {"identifier": ssn, "pseudonym": recorded["pseudonym"]}
        assert error(client.post("/api/v1/people/objections", headers=who["stella"],
                                 json=both)) == (422, "invalid_input")  # fmt: skip
        listed = client.get("/api/v1/people/objections", headers=who["stella"])
        assert [o["pseudonym"] for o in listed.json()["items"]] == [recorded["pseudonym"]]
        assert error(client.get("/api/v1/people/objections", headers=who["rex"])) == (
            403,
            "permission_denied",
        )

        # A later ingest of the same file leaves the person's rows out.
        later = upload(client, "patients-later", PATIENTS, who["stella"], rules=PATIENT_RULES)
        assert later.status_code == 201, later.text
        assert later.json()["version"]["rows"] == len(rows) - theirs
        assert later.json()["objections_excluded"] == theirs

        # Erasure: administrators only; the rows go from the versions made before.
        refused = client.post("/api/v1/people/erasures", headers=who["stella"], json=person)
        assert error(refused) == (403, "permission_denied")
        erased = client.post("/api/v1/people/erasures", headers=who["ada"], json=person)
        assert erased.status_code == 200, erased.text
        assert erased.json()["versions"] == {"patients@1": theirs}
        assert erased.json()["pseudonym"] == recorded["pseudonym"]
        shown = client.get("/api/v1/datasets/patients", headers=who["rex"]).json()
        assert shown["version"]["rows"] == len(rows) - theirs

        answers = [made, twice, listed, later, refused, erased, denied]
        assert not [a for a in answers if ssn in a.text]
        with hub.read() as session:
            events = audit.list_events(session, audit.EventFilter(), limit=1000)
        assert not [e for e in events if ssn in e.details or ssn in e.object_id]

        # The document offers the identifier nowhere but in a body, never in an answer.
        document = client.get("/openapi.json").json()
        for path in ("/api/v1/people/objections", "/api/v1/people/erasures"):
            for operation in document["paths"][path].values():
                assert "identifier" not in json.dumps(operation.get("parameters", []))
                assert "identifier" not in json.dumps(operation["responses"])
        body = document["components"]["schemas"]["Person"]["properties"]["identifier"]
        assert body["anyOf"][0]["writeOnly"] is True
