"""Objects, keys and the policy from the command line, as a steward and an operator use them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hdh.devservers import AzuriteServer
from tests.helpers import hdh, only_line


def test_put_get_rotate_retire(hub_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "visits.csv"
    source.write_bytes(b"patient;visit\n" + b"p1;2024-03-01\n" * 100_000)
    put = hdh("--hub", hub_dir, "object", "put", "local", "raw/visits.csv", source)
    assert put.returncode == 0, put.stderr
    assert f"Stored 'raw/visits.csv' on 'local': {source.stat().st_size} bytes" in put.stdout
    assert b"patient" not in (hub_dir / "storage" / "raw" / "visits.csv").read_bytes()

    rotated = hdh("--hub", hub_dir, "key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "clinical: now version 2; data keys rewrapped." in rotated.stdout
    keys = json.loads(hdh("--hub", hub_dir, "key", "list", "--json").stdout)
    clinical = {k["version"]: k for k in keys if k["sensitivity"] == "clinical"}
    assert (clinical[1]["data_keys"], clinical[2]["data_keys"], clinical[2]["current"]) == (
        0,
        1,
        True,
    )
    assert hdh("--hub", hub_dir, "key", "retire", "clinical", "1").returncode == 0
    refused = hdh("--hub", hub_dir, "key", "retire", "clinical", "2")
    assert refused.returncode == 5
    assert only_line(refused.stderr).startswith("Error: clinical key version 2 is the current one")
    pseudonyms = hdh("--hub", hub_dir, "key", "rotate-pseudonyms")
    assert pseudonyms.returncode == 0, pseudonyms.stderr
    assert "Pseudonymisation secret now version 2" in pseudonyms.stdout

    back = tmp_path / "back.csv"
    got = hdh("--hub", hub_dir, "object", "get", "local", "raw/visits.csv", back)
    assert got.returncode == 0, got.stderr
    assert back.read_bytes() == source.read_bytes()

    listed = json.loads(hdh("--hub", hub_dir, "object", "list", "local", "--json").stdout)
    assert [(o["key"], o["data_class"]) for o in listed] == [("raw/visits.csv", "health")]


def test_tampered_object_is_refused_and_nothing_written(hub_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "results.csv"
    source.write_bytes(os.urandom(3_000_000))
    assert (
        hdh("--hub", hub_dir, "object", "put", "local", "out/results.csv", source).returncode == 0
    )
    stored = hub_dir / "storage" / "out" / "results.csv"
    damaged = bytearray(stored.read_bytes())
    damaged[2_000_000] ^= 0x10
    stored.write_bytes(damaged)
    target = tmp_path / "results-copy.csv"
    got = hdh("--hub", hub_dir, "object", "get", "local", "out/results.csv", target)
    assert got.returncode == 8
    assert only_line(got.stderr).startswith(
        "Error: object 'out/results.csv' on location 'local' failed authentication at chunk 1"
    )
    assert not target.exists()
    assert list(tmp_path.glob(".results-copy*")) == []


def test_policy_set_show_and_refusal(hub_dir: Path, tmp_path: Path) -> None:
    shown = json.loads(hdh("--hub", hub_dir, "policy", "show", "--json").stdout)
    assert [r["name"] for r in shown["rules"]] == ["health-data-in-eu"]
    assert {(p["location"], p["data_class"], p["allowed"]) for p in shown["placements"]} == {
        ("local", "health", True),
        ("local", "other", True),
    }
    set_ = hdh(
        "--hub", hub_dir, "policy", "set", "health-on-hds", "--data-class", "health",
        "--country", "EU", "--certification", "hds",
    )  # fmt: skip
    assert set_.returncode == 0, set_.stderr
    source = tmp_path / "x.csv"
    source.write_text("a;b\n")
    refused = hdh("--hub", hub_dir, "object", "put", "local", "x.csv", source)
    assert refused.returncode == 9
    assert only_line(refused.stderr) == (
        "Error: policy rule 'health-on-hds' refuses object 'x.csv' on location 'local': "
        "location 'local' does not declare the certification hds that health data requires: "
        "choose a location the policy allows (hdh policy show), or change the policy"
    )
    log = json.loads(hdh("--hub", hub_dir, "audit", "log", "--outcome", "denied", "--json").stdout)
    assert [(e["action"], e["details"]["rules"][0]["rule"]) for e in log] == [
        ("placement.refused", "health-on-hds")
    ]
    assert hdh("--hub", hub_dir, "policy", "remove", "health-on-hds").returncode == 0
    assert hdh("--hub", hub_dir, "object", "put", "local", "x.csv", source).returncode == 0


@pytest.mark.azure
def test_health_data_is_refused_on_azure(hub_dir: Path, azure_server: AzuriteServer) -> None:
    container = azure_server.create_container("hub-azure")
    added = hdh(
        "--hub", hub_dir, "location", "add", "azure-fr", "--preset", "azure",
        "--account", azure_server.account, "--container", container,
        "--endpoint", azure_server.endpoint, "--region", "francecentral",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = json.loads(hdh("--hub", hub_dir, "policy", "show", "--json").stdout)
    [azure] = [
        p for p in shown["placements"] if (p["location"], p["data_class"]) == ("azure-fr", "health")
    ]
    assert azure["allowed"] is False
    assert "us-cloud-act" in azure["reasons"][0]
    file = hub_dir.parent / "f.csv"
    file.write_text("x\n")
    env = {**os.environ, "HDH_LOC_AZURE_FR_ACCOUNT_KEY": azure_server.key}
    refused = hdh("--hub", hub_dir, "object", "put", "azure-fr", "f.csv", file, env=env)
    assert refused.returncode == 9
    assert "refuses object 'f.csv' on location 'azure-fr'" in refused.stderr


def test_a_location_with_recorded_objects_cannot_be_removed(hub_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    assert hdh(
        "--hub", hub_dir, "location", "add", "archive", "--kind", "local",
        "--path", archive, "--country", "FR",
    ).returncode == 0  # fmt: skip
    source = tmp_path / "f.csv"
    source.write_text("x\n")
    assert hdh("--hub", hub_dir, "object", "put", "archive", "f.csv", source).returncode == 0
    (archive / "f.csv").unlink()  # gone from the folder, still recorded by the hub
    refused = hdh("--hub", hub_dir, "location", "remove", "archive")
    assert refused.returncode == 5
    assert only_line(refused.stderr) == (
        "Error: location 'archive' still holds 1 object the hub wrote: move or delete them "
        "first (hdh migrate plan --from this location)"
    )


def test_bad_certification_and_double_retirement(hub_dir: Path) -> None:
    bad = hdh("--hub", hub_dir, "policy", "set", "r", "--certification", "HDS 2")
    assert bad.returncode == 6
    assert only_line(bad.stderr).startswith("Error: 'HDS 2' is not a valid certification name")
    assert hdh("--hub", hub_dir, "key", "rotate", "--class", "other").returncode == 0
    assert hdh("--hub", hub_dir, "key", "retire", "other", "1").returncode == 0
    again = hdh("--hub", hub_dir, "key", "retire", "other", "1")
    assert again.returncode == 5
    assert only_line(again.stderr).startswith("Error: other key version 1 is already retired")


def test_migrate_a_location_from_the_command_line(hub_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "visits.csv"
    source.write_text("visit,ward\n1,w1\n")
    assert hdh("--hub", hub_dir, "dataset", "ingest", source, "--name", "visits").returncode == 0
    added = hdh(
        "--hub", hub_dir, "location", "add", "archive", "--kind", "local",
        "--path", tmp_path / "archive", "--country", "FR",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    planned = hdh("--hub", hub_dir, "migrate", "plan", "--from", "local", "--to", "archive")
    assert planned.returncode == 0, planned.stderr
    assert "Migration 1: local -> archive, policy checked" in planned.stdout
    assert "datasets" in planned.stdout
    ran = hdh("--hub", hub_dir, "migrate", "run", "1")
    assert ran.returncode == 0, ran.stderr
    assert "Copied 2 objects" in ran.stdout  # the part and the manifest
    checked = hdh("--hub", hub_dir, "migrate", "verify", "1", "--full")
    assert (checked.returncode, "2 objects byte for byte: 0 missing" in checked.stdout) == (0, True)
    status = hdh("--hub", hub_dir, "migrate", "status", "1")
    assert "copied (2 copied)" in status.stdout
    switched = hdh("--hub", hub_dir, "migrate", "cutover", "1")
    assert switched.returncode == 0, switched.stderr
    assert "1 dataset versions" in switched.stdout
    shown = hdh("--hub", hub_dir, "dataset", "show", "visits", "--rows", "1")
    assert (shown.returncode, "w1" in shown.stdout) == (0, True)
    # The report: Markdown for people, JSON with a signed summary; an altered copy fails.
    made = hdh("--hub", hub_dir, "migrate", "report", "1", "--out", tmp_path, "--full")
    assert made.returncode == 0, made.stderr
    assert "2 of 2 objects matched on the target; verification passed" in made.stdout
    markdown = (tmp_path / "migration-1-report.md").read_text()
    assert "| visits | 2 |" in markdown  # the dataset, its part and manifest
    assert "| target | archive | FR |" in markdown
    report_file = tmp_path / "migration-1-report.json"
    checked = hdh("--hub", hub_dir, "migrate", "check-report", report_file)
    assert checked.returncode == 0, checked.stderr
    assert "is signed by this hub and unaltered" in checked.stdout
    report = json.loads(report_file.read_text())
    report["summary"]["objects"] = 3
    report_file.write_text(json.dumps(report))
    forged = hdh("--hub", hub_dir, "migrate", "check-report", report_file)
    assert forged.returncode != 0
    assert "does not match its signature: it was altered" in only_line(forged.stderr)
    listed = hdh("--hub", hub_dir, "migrate", "list")
    assert "cut over" in listed.stdout
