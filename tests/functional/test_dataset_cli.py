"""``hdh dataset`` as a steward uses it on real files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import SHARED_DATA
from tests.helpers import hdh

PATIENTS = SHARED_DATA / "synthea_csv_100_ma" / "csv" / "patients.csv"


def test_ingest_list_versions_show(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    assert hdh("init", hub).returncode == 0
    refused = hdh("--hub", hub, "dataset", "ingest", PATIENTS, "--name", "patients")
    assert refused.returncode == 6
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "Error: patients.csv has columns that look like direct identifiers: SSN (its name "
        "suggests a national id)"
    )
    rules = [
        "Id=pseudonymise", "SSN=pseudonymise", "DRIVERS=drop", "PASSPORT=drop", "PREFIX=drop",
        "FIRST=drop", "LAST=drop", "SUFFIX=drop", "MAIDEN=drop", "ADDRESS=drop", "LAT=drop",
        "LON=drop", "BIRTHDATE=year", "DEATHDATE=month", "ZIP=department",
    ]  # fmt: skip
    args = [arg for r in rules for arg in ("--rule", r)]
    done = hdh("--hub", hub, "dataset", "ingest", PATIENTS, "--name", "patients", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Published 'patients' version 1: 107 rows in 1 encrypted part")
    again = hdh("--hub", hub, "dataset", "ingest", PATIENTS, "--name", "patients", *args)
    assert "Already ingested: patients.csv is version 1 of 'patients'" in again.stdout

    listed = json.loads(hdh("--hub", hub, "dataset", "list", "--json").stdout)
    assert [(d["name"], d["latest_version"]) for d in listed] == [("patients", 1)]
    found = json.loads(hdh("--hub", hub, "dataset", "versions", "patients", "--json").stdout)
    assert found[0]["manifest"]["rules"]["SSN"] == "pseudonymise"
    assert found[0]["manifest"]["pseudonym_secret_version"] == 1
    shown = hdh("--hub", hub, "dataset", "show", "patients")
    assert "  SSN: string (pseudonymise)" in shown.stdout
    assert "  BIRTHDATE: int32 (year)" in shown.stdout
    assert "      nulls 0; distinct 2; top F (" in shown.stdout  # GENDER, no small counts

    missing = hdh("--hub", hub, "dataset", "versions", "nope")
    assert missing.returncode == 4
    assert "there is no dataset named 'nope'" in missing.stderr
