"""``hdh demo``: the whole story of a health data hub leaving Azure, on one machine.

It starts Azurite (the Azure Blob emulator) and SeaweedFS (S3) through the harness the
tests use, creates a hub with an ``azure-francecentral`` location (Azurite, exposed to
the US CLOUD Act) and a ``scaleway-fr-par`` location (SeaweedFS, declared SecNumCloud
and HDS), and then, one line per step: imports the SNDS schemas; ingests OMOP GiBleed
tables, the Synthea patients (direct identifiers pseudonymised or dropped) and the SNDS
DCIR tables (held to their schemas) into Azure; creates demo accounts; takes a project
through approval to a permit; runs a query and a job; passes a table through the
airlock; migrates everything to Scaleway, verified byte for byte, with the signed
report; and tightens the residency policy so that health data may no longer sit where
a non-EU law reaches. The public data comes from the ``data`` folder (``../shared/data``
in a clone of the project).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.errors import Conflict, InvalidInput
from hdh.hub import Hub

Say = Callable[[str], None]

#: The SNDS columns that name people, and what the steward decides for them.
SNDS_RULES = {
    **dict.fromkeys(
        ["ASS_NIR_ANO", "BEN_NIR_ANO", "BEN_NIR_IDT", "BEN_NIR_PSA", "NIR_ANO_17",
         "NIR_ANO_MAM"], "pseudonymise"),
    **dict.fromkeys(["IDE_TEL_NU1", "IDE_TEL_NU2"], "drop"),
    **dict.fromkeys(
        ["BEN_CDI_NIR", "NIR_RET", "COD_UCD", "UCD_COD", "UCD_UCD_COD", "PHA_CPA_PCP",
         "RSA_NUM"], "keep"),
}  # fmt: skip
SYNTHEA_RULES = (
    "Id=pseudonymise", "SSN=pseudonymise", "DRIVERS=drop", "PASSPORT=drop", "PREFIX=drop",
    "FIRST=drop", "LAST=drop", "SUFFIX=drop", "MAIDEN=drop", "ADDRESS=drop", "LAT=drop",
    "LON=drop", "BIRTHDATE=year", "DEATHDATE=month", "ZIP=department",
)  # fmt: skip
GIBLEED_TABLES = ("person", "condition_occurrence", "drug_exposure", "observation_period")
ACCOUNTS = (
    ("ada", "admin"), ("sam", "steward"), ("rita", "researcher"), ("rob", "reviewer"),
    ("aude", "auditor"),
)  # fmt: skip
PROJECT = "gi-bleeding"
AZURE, SCALEWAY = "azure-francecentral", "scaleway-fr-par"
JOB = """import hdh.workspace as ws
people = ws.table("person", as_="pandas")
ws.crosstab(people, "gender_concept_id", "race_concept_id").save("people.csv")
"""


@dataclass
class DemoResult:
    hub_dir: Path
    #: account -> (role, password for the pages, API token)
    accounts: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    migration: int = 0
    report: Path | None = None


def check_inputs(target: Path, data: Path) -> None:
    """Refuse a used target folder or a data folder without the demo's data."""
    if target.exists() and any(target.iterdir()):
        raise Conflict(
            f"{target} already exists and is not empty",
            hint="remove it (make demo does) or give another folder",
        )
    wanted = ("omop_eunomia_gibleed", "synthea_csv_100_ma", "snds_synthetic")
    missing = [w for w in wanted if not (data / w).is_dir()]
    if missing:
        raise InvalidInput(
            f"{data} does not hold the demo's public data ({', '.join(missing)} missing)",
            hint="give the data folder with --data (in a clone: ../shared/data)",
        )


def run_demo(
    target: Path, data: Path, azure: AzuriteServer, s3: SeaweedFSServer, say: Say
) -> DemoResult:
    """Build the demo hub in ``target`` (new or empty) on the two running servers."""
    from hdh.hub import init_hub

    check_inputs(target, data)
    with init_hub(target, database_url="sqlite:///hub.db", actor="os:demo") as hub:
        say(f"Created the hub in {target} (SQLite metadata, key file {hub.settings.key_path})")
        result = DemoResult(hub_dir=target)
        _locations(hub, azure, s3, say)
        _ingest(hub, data, say)
        _people(hub, result, say)
        _research(hub, say)
        _migrate(hub, target, result, say)
        _tighten(hub, say)
    return result


def _locations(hub: Hub, azure: AzuriteServer, s3: SeaweedFSServer, say: Say) -> None:
    from hdh import policy
    from hdh.storage.locations import LocationSpec, add_location

    container = azure.create_container("hdh-demo")
    bucket = s3.create_bucket("hdh-demo")
    os.environ["HDH_LOC_AZURE_FRANCECENTRAL_ACCOUNT_KEY"] = azure.key
    os.environ["HDH_LOC_SCALEWAY_FR_PAR_ACCESS_KEY_ID"] = s3.access_key
    os.environ["HDH_LOC_SCALEWAY_FR_PAR_SECRET_ACCESS_KEY"] = s3.secret_key
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name=AZURE, preset="azure", account=azure.account, container=container,
            endpoint=azure.endpoint, region="francecentral",
        ), actor="os:demo")  # fmt: skip
        add_location(session, LocationSpec(
            name=SCALEWAY, preset="seaweedfs", endpoint=s3.endpoint, bucket=bucket,
            country="FR", provider="scaleway", certifications=["secnumcloud", "hds"],
        ), actor="os:demo")  # fmt: skip
        # Where the story starts: health data on a US-owned cloud, tolerated.
        policy.set_rule(
            session, "health-data-in-eu", data_class="health", countries=["EU"],
            certifications=[], forbid_extraterritorial=False, actor="os:demo",
        )  # fmt: skip
    say(f"Added {AZURE} (Azurite: Azure Blob, FR, exposed to the US CLOUD Act) and "
        f"{SCALEWAY} (SeaweedFS: S3, FR, SecNumCloud and HDS); the policy tolerates "
        "the CLOUD Act for now")  # fmt: skip


def _ingest(hub: Hub, data: Path, say: Say) -> None:
    from hdh.catalog.service import import_schemas
    from hdh.ingest.service import IngestOptions, ingest, ingest_folder

    snds = data / "snds_synthetic"
    imported = import_schemas(hub, snds, actor="user:sam")
    say(f"Imported the SNDS catalogue: {imported.tables} table schemas and "
        f"{imported.nomenclatures} nomenclatures")  # fmt: skip
    gibleed = data / "omop_eunomia_gibleed" / "csv"
    rows = 0
    for table in GIBLEED_TABLES:
        chosen = ["person_id=pseudonymise"] + (
            ["person_source_value=drop"] if table == "person" else []
        )
        done = ingest(hub, gibleed / f"{table}.csv.gz", name=table, actor="user:sam",
                      location=AZURE, rules=chosen)  # fmt: skip
        rows += done.rows
    say(f"Ingested OMOP GiBleed into {AZURE}: {', '.join(GIBLEED_TABLES)} ({rows:,} rows; "
        "person ids pseudonymised)")  # fmt: skip
    patients = ingest(hub, data / "synthea_csv_100_ma" / "csv" / "patients.csv",
                      name="synthea-patients", actor="user:sam", location=AZURE,
                      rules=list(SYNTHEA_RULES))  # fmt: skip
    say(f"Ingested the Synthea patients: {patients.rows} rows; SSN and ids pseudonymised, "
        "names, addresses and coordinates dropped, birth dates to the year")  # fmt: skip
    dcir = snds / "schemas" / "DCIR"
    columns = {c for p in dcir.glob("*.csv") for c in _header(p)}
    rules = tuple(f"{c}={a}" for c, a in SNDS_RULES.items() if c in columns)
    folder = ingest_folder(
        hub, dcir, actor="user:sam",
        options=IngestOptions(rules=rules, schema="auto", on_error="quarantine",
                              location=AZURE, rules_where_present=True),
    )  # fmt: skip
    total = sum(r.rows for r in folder.results)
    say(f"Ingested {len(folder.results)} SNDS DCIR tables against their schemas "
        f"({total:,} rows; beneficiary NIRs pseudonymised)")  # fmt: skip


def _header(path: Path) -> list[str]:
    import csv

    with path.open(encoding="utf-8") as fh:
        return next(csv.reader(fh))


def _people(hub: Hub, result: DemoResult, say: Say) -> None:
    from hdh.identity.service import add_user, create_token

    for name, role in ACCOUNTS:
        password = secrets.token_urlsafe(12)  # made here, printed once, never stored in clear
        add_user(hub, name, roles=[role], actor="os:demo", password=password)
        token, _ = create_token(hub, name, actor="os:demo", days=30, label="demo")
        result.accounts[name] = (role, password, token)
    say("Created the accounts " + ", ".join(f"{n} ({r})" for n, r in ACCOUNTS))


def _research(hub: Hub, say: Say) -> None:
    from hdh.airlock.service import request_export, review
    from hdh.governance.permits import decide, request_permit
    from hdh.governance.projects import create_project, transition
    from hdh.identity.service import Principal
    from hdh.ingest.service import versions
    from hdh.workspace.governed import run_query
    from hdh.workspace.jobs import run_job, submit_job

    rita = Principal("rita", frozenset({"researcher"}))
    ada = Principal("ada", frozenset({"admin"}))
    rob = Principal("rob", frozenset({"reviewer"}))
    create_project(hub, rita, PROJECT, title="GI bleeding after NSAIDs",
                   purpose="Incidence of GI bleeding among NSAID users",
                   legal_basis="Public interest research (GDPR 9.2.j)")  # fmt: skip
    transition(hub, rita, PROJECT, "submit")
    transition(hub, ada, PROJECT, "approve", approval_ref="CNIL DR-2026-042")
    transition(hub, ada, PROJECT, "activate")
    for table in GIBLEED_TABLES:
        columns = [c["name"] for c in versions(hub, table)[-1].manifest["schema"]]
        permit = request_permit(hub, rita, PROJECT, table, columns=columns)
        decide(hub, ada, permit.id, "grant")
    say(f"Project {PROJECT} (lead rita) approved under CNIL DR-2026-042 and active, with "
        f"permits on {', '.join(GIBLEED_TABLES)}")  # fmt: skip
    bleeding = run_query(hub, rita, PROJECT, "select count(distinct person_id) n from "
                         "condition_occurrence where condition_concept_id = 192671")  # fmt: skip
    say(f"rita's query: {bleeding.table.to_pylist()[0]['n']} persons with a GI bleeding "
        "(concept 192671), under the project's own pseudonyms")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "people.py"
        script.write_text(JOB, encoding="utf-8")
        job = run_job(hub, rita, submit_job(hub, rita, PROJECT, script).id)
    if job.status != "succeeded":
        raise Conflict(f"the demo job {job.id} {job.status}: {job.error}",
                       hint="see hdh job logs")  # fmt: skip
    asked = request_export(hub, rita, PROJECT, [f"{job.id}/people.csv"], note="Table 1")
    verdict = asked.files[0].verdict
    released = review(hub, rob, asked.id, "approve", comment="checked")
    say(f"Job {job.id} ran sandboxed and made a table; airlock request {asked.id} was "
        f"checked ({verdict}), approved by rob and {released.status}")  # fmt: skip


def _migrate(hub: Hub, target: Path, result: DemoResult, say: Say) -> None:
    import json

    from hdh.identity.service import operator
    from hdh.migrate.report import migration_report, to_markdown
    from hdh.migrate.service import cutover, plan_migration, run_migration, verify_migration

    ops = operator("os:demo")
    plan = plan_migration(hub, ops, AZURE, SCALEWAY)
    say(f"Planned migration {plan.id}: {plan.objects} objects "
        f"({plan.bytes / 1e6:.1f} MB) in {len(plan.waves)} waves; the policy allows "
        f"{SCALEWAY}")  # fmt: skip
    done = run_migration(hub, ops, plan.id)
    rate = done.bytes / done.seconds / 1e6 if done.seconds else 0.0
    say(f"Copied {done.copied} objects as ciphertext ({rate:.1f} MB/s), each SHA-256 "
        "checked at the source and by the target")  # fmt: skip
    switched = cutover(hub, ops, plan.id)
    checked = verify_migration(hub, ops, plan.id, full=True)
    say(f"Cut over every wave ({switched['dataset_versions']} dataset versions now read "
        f"from {SCALEWAY}); verified byte for byte: {len(checked.missing)} missing, "
        f"{len(checked.wrong_hash)} altered")  # fmt: skip
    report = migration_report(hub, ops, plan.id)
    folder = target / "reports"
    folder.mkdir(exist_ok=True)
    base = folder / f"migration-{plan.id}-report"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2), "utf-8")
    base.with_suffix(".md").write_text(to_markdown(report), "utf-8")
    result.migration, result.report = plan.id, base.with_suffix(".md")
    say(f"Wrote the signed migration report: {result.report}")


def _tighten(hub: Hub, say: Say) -> None:
    from hdh import policy

    with hub.transaction() as session:
        policy.set_rule(
            session, "health-data-in-eu", data_class="health", countries=["EU"],
            certifications=[], forbid_extraterritorial=True, actor="user:ada",
        )  # fmt: skip
        refused = [
            p["location"]
            for p in policy.placement_table(session)
            if p["data_class"] == "health" and not p["allowed"]
        ]
    say("Tightened the policy: health data may no longer be placed where a non-EU law "
        f"reaches (refused now: {', '.join(refused) or 'none'})")  # fmt: skip
