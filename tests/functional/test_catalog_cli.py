"""``hdh catalog`` and folder ingestion as a steward uses them, through the real command."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import SHARED_DATA
from tests.helpers import hdh

EGB = SHARED_DATA / "snds_synthetic" / "schemas" / "EGB"


def test_schemas_folder_ingest_quarantine_search_and_export(hub_dir: Path, tmp_path: Path) -> None:
    def run(*args: str | Path) -> tuple[int, str, str]:
        done = hdh("--hub", hub_dir, *args)
        return done.returncode, done.stdout, done.stderr

    code, stdout, _ = run("catalog", "import-schema", EGB)
    assert code == 0
    assert stdout.startswith("Imported 15 table schemas and 0 nomenclatures")

    # Identifier columns without a rule: the whole folder is refused, nothing published.
    code, _, stderr = run("dataset", "ingest", EGB, "--schema", "auto")
    assert code == 6
    assert stderr.startswith("Error: 5 of 15 files in EGB cannot be ingested, so none was: ")
    assert "BEN_NIR_IDT (its name suggests a national id)" in stderr
    assert json.loads(run("dataset", "list", "--json")[1]) == []

    rules = ["--rule", "BEN_NIR_IDT=pseudonymise", "--rule", "PHA_CPA_PCP=keep"]
    # By default a table whose rows break its schema is refused; the others are published.
    code, stdout, stderr = run("dataset", "ingest", EGB, "--schema", "auto", *rules)
    assert code == 6
    assert "refused egb.eb_pha_f: EB_PHA_F.csv breaks schema 'EB_PHA_F' in 10 of 10 rows" in (
        stdout
    )
    assert stderr.startswith("Error: 1 table of EGB was refused: egb.eb_pha_f")
    assert "Published 'egb.eb_prs_f' version 1: 10 rows" in stdout

    code, stdout, _ = run(
        "dataset", "ingest", EGB, "--schema", "auto", *rules, "--on-error", "quarantine"
    )
    assert code == 0, stdout
    assert "Already ingested: EB_PRS_F.csv is version 1 of 'egb.eb_prs_f'" in stdout
    assert "Published 'egb.eb_pha_f' version 1: 0 rows" in stdout
    assert "10 rows broke the schema and are in quarantine" in stdout

    code, stdout, _ = run("dataset", "quarantine", "egb.eb_pha_f", "--rows", "1")
    assert code == 0
    assert stdout.splitlines()[0] == "10 quarantined rows of 'egb.eb_pha_f':"
    assert stdout.splitlines()[1].startswith("  row 1: PHA_ACT_QSN: maximum 9999")

    code, stdout, _ = run(
        "dataset", "describe", "egb.eb_prs_f", "--producer", "CNAM", "--frequency", "annual"
    )
    assert code == 0
    code, _, stderr = run("dataset", "describe", "egb.eb_prs_f", "--frequency", "sometimes")
    assert (code, stderr.splitlines()[0][:50]) == (
        6,
        "Error: update frequency 'sometimes' is not known: ",
    )

    hits = json.loads(run("catalog", "search", "prestations", "--json")[1])
    assert {"kind": "dataset", "name": "egb.eb_prs_f"}.items() <= hits[0].items()

    target = tmp_path / "out" / "catalogue.jsonld"
    code, stdout, _ = run("catalog", "export", "--output", target)
    assert code == 0
    assert stdout.strip() == f"Wrote {target}: 15 datasets, HealthDCAT-AP JSON-LD."
    document = json.loads(target.read_text(encoding="utf-8"))
    assert isinstance(document["@context"], dict)  # embedded: readable offline
    code, _, stderr = run("catalog", "export", "--format", "rdfxml")
    assert (code, stderr.strip()) == (6, "Error: --format 'rdfxml' is not known: use healthdcat-ap")

    # Settings the profile cannot use: a clear error naming them, no file written.
    blank = hdh("--hub", hub_dir, "catalog", "export", "--output", tmp_path / "blank.jsonld",
                env={**os.environ, "HDH_CATALOG_PUBLISHER": "  "})  # fmt: skip
    assert blank.returncode == 3
    assert blank.stderr.startswith(
        "Error: the catalogue cannot be written as HealthDCAT-AP: the hub needs a title and "
        "a publisher"
    )
    assert "[catalog] settings in hub.toml" in blank.stderr
    assert not (tmp_path / "blank.jsonld").exists()
