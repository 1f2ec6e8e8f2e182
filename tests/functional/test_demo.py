"""``hdh demo --no-serve`` tells the whole story on real public data: Azure to a
sovereign cloud, verified, with every step on one line; bad input is refused clearly."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.hub import Hub
from hdh.migrate.report import check_report, hub_public_key
from tests.conftest import SHARED_DATA
from tests.helpers import hdh, only_line

pytestmark = [pytest.mark.s3, pytest.mark.azure]


def test_the_demo_moves_a_working_hub_off_azure(tmp_path: Path) -> None:
    target = tmp_path / "demo-hub"
    ran = hdh("demo", target, "--no-serve", "--data", SHARED_DATA)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    for expected in (
        "Imported the SNDS catalogue: 191 table schemas and 175 nomenclatures",
        "Ingested OMOP GiBleed into azure-francecentral",
        "Ingested 16 SNDS DCIR tables against their schemas",
        "rita's query: 479 persons with a GI bleeding",
        "approved by rob and released",
        "verified byte for byte: 0 missing, 0 altered",
        "refused now: azure-francecentral",
    ):
        assert any(expected in line for line in lines), (expected, ran.stdout)
    accounts = target / "demo-accounts.txt"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    rows = [line.split("\t") for line in accounts.read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ["ada", "sam", "rita", "rob", "aude"]
    with Hub.open(target, os.environ) as hub:
        # The printed password opens the pages; a wrong one does not.
        client = TestClient(create_app(hub), base_url="http://127.0.0.1")
        rita = next(row for row in rows if row[0] == "rita")
        assert client.post("/login", data={"name": "rita", "password": "x" * 16}
                           ).status_code == 401  # fmt: skip
        signed = client.post("/login", data={"name": "rita", "password": rita[2]})
        assert signed.status_code == 200
        client.cookies.set("hdh_lang", "en")
        for dataset in ("person", "condition_occurrence", "synthea-patients"):
            assert f'href="/catalogue/{dataset}"' in client.get("/catalogue").text
        assert "gi-bleeding" in client.get("/projects").text
        report = json.loads((target / "reports" / "migration-1-report.json").read_text())
        summary = check_report(report, public_key=hub_public_key(hub))
    assert (summary["target"], summary["verified"]["ok"]) == ("scaleway-fr-par", True)
    assert summary["sha256_matched"] == summary["objects"] > 50


def test_the_demo_refuses_a_used_folder_and_missing_data(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    refused = hdh("demo", used, "--no-serve", "--data", SHARED_DATA)
    assert refused.returncode != 0
    assert "already exists and is not empty" in only_line(refused.stderr)
    assert (used / "notes.txt").read_text() == "mine"
    nodata = hdh("demo", tmp_path / "new", "--no-serve", "--data", tmp_path)
    assert nodata.returncode != 0
    assert "does not hold the demo's public data" in only_line(nodata.stderr)
