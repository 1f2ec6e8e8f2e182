"""``hdh location`` as an operator uses it, on a local folder and on the real S3 and Azure
servers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hdh import audit
from hdh.devservers import AzuriteServer, SeaweedFSServer
from hdh.hub import Hub
from tests.helpers import hdh, only_line


def test_add_list_test_remove_a_local_location(hub_dir: Path, tmp_path: Path) -> None:
    added = hdh(
        "--hub", hub_dir, "location", "add", "archive", "--kind", "local",
        "--path", tmp_path / "archive", "--country", "fr", "--certification", "HDS",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "Added location 'archive': local" in added.stdout

    listed = json.loads(hdh("--hub", hub_dir, "location", "list", "--json").stdout)
    archive = next(r for r in listed if r["name"] == "archive")
    assert (archive["country"], archive["certifications"]) == ("FR", ["hds"])

    probe = hdh("--hub", hub_dir, "location", "test", "archive", "--json")
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert report["ok"] is True
    assert [s["step"] for s in report["steps"]] == [
        "write", "read", "ranged read", "list", "delete",
    ]  # fmt: skip
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == []  # probe deleted

    (tmp_path / "archive" / "kept.bin").write_bytes(b"data")
    refused = hdh("--hub", hub_dir, "location", "remove", "archive")
    assert refused.returncode == 5
    assert only_line(refused.stderr) == (
        "Error: location 'archive' still holds data (for example 'kept.bin'): move or delete "
        "its objects first (hdh migrate plan --from this location)"
    )
    (tmp_path / "archive" / "kept.bin").unlink()
    assert hdh("--hub", hub_dir, "location", "remove", "archive").returncode == 0

    with Hub.open(hub_dir) as hub, hub.read() as session:
        actions = [e.action for e in audit.list_events(session)]
    assert actions == ["hub.init", "location.add", "location.test", "location.remove"]


@pytest.mark.s3
def test_an_s3_location_with_credentials_from_the_environment(
    hub_dir: Path, s3_server: SeaweedFSServer
) -> None:
    bucket = s3_server.create_bucket("hub-objects")
    added = hdh(
        "--hub", hub_dir, "location", "add", "seaweed", "--preset", "seaweedfs",
        "--endpoint", s3_server.endpoint, "--bucket", bucket, "--country", "FR",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "credentials: environment HDH_LOC_SEAWEED_ACCESS_KEY_ID, " in added.stdout

    missing = hdh("--hub", hub_dir, "location", "test", "seaweed")
    assert missing.returncode == 3
    assert only_line(missing.stderr) == (
        "Error: location 'seaweed' needs its access key id in the environment variable "
        "HDH_LOC_SEAWEED_ACCESS_KEY_ID, which is not set: export "
        "HDH_LOC_SEAWEED_ACCESS_KEY_ID=… before running hdh"
    )
    env = {
        **os.environ,
        "HDH_LOC_SEAWEED_ACCESS_KEY_ID": s3_server.access_key,
        "HDH_LOC_SEAWEED_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    ok = hdh("--hub", hub_dir, "location", "test", "seaweed", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Location 'seaweed' works." in ok.stdout

    env["HDH_LOC_SEAWEED_SECRET_ACCESS_KEY"] = "wrong"
    bad = hdh("--hub", hub_dir, "location", "test", "seaweed", "--json", env=env)
    assert bad.returncode == 1
    steps = json.loads(bad.stdout)["steps"]
    assert (steps[0]["step"], steps[0]["ok"]) == ("write", False)
    # Secrets never reach the database.
    assert s3_server.secret_key.encode() not in (hub_dir / "hub.db").read_bytes()


@pytest.mark.azure
def test_an_azure_location_is_marked_us_cloud_act(
    hub_dir: Path, azure_server: AzuriteServer, tmp_path: Path
) -> None:
    container = azure_server.create_container("hub-objects")
    creds = tmp_path / "azure.toml"
    creds.write_text(f'account_key = "{azure_server.key}"\n')
    creds.chmod(0o600)
    added = hdh(
        "--hub", hub_dir, "location", "add", "azure-fr", "--preset", "azure",
        "--account", azure_server.account, "--container", container,
        "--endpoint", azure_server.endpoint, "--region", "francecentral",
        "--credentials-file", creds,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "exposure to non-EU law: us-cloud-act" in added.stdout
    listed = json.loads(hdh("--hub", hub_dir, "location", "list", "--json").stdout)
    azure = next(r for r in listed if r["name"] == "azure-fr")
    assert (azure["country"], azure["extraterritorial"]) == ("FR", ["us-cloud-act"])
    assert hdh("--hub", hub_dir, "location", "test", "azure-fr").returncode == 0

    creds.chmod(0o644)
    exposed = hdh("--hub", hub_dir, "location", "test", "azure-fr")
    assert exposed.returncode == 3
    assert "can be read by other users (mode 0644)" in exposed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["x", "--preset", "nowhere"],
            "Error: there is no preset 'nowhere': use one of azure, minio,",
        ),
        (
            ["x", "--kind", "s3", "--bucket", "b", "--country", "FR"],
            "Error: an S3 location needs --endpoint and --bucket (got no endpoint, b)",
        ),
        (["x", "--kind", "local", "--path", "objects"], "Error: location 'x' has no country"),
        (["Bad Name", "--kind", "local"], "Error: location name 'Bad Name' is not allowed"),
        (
            ["local", "--kind", "local", "--path", "objects", "--country", "FR"],
            "Error: a location named 'local' already exists",
        ),
    ],
)
def test_bad_locations_are_refused_with_a_reason(
    hub_dir: Path, args: list[str], message: str
) -> None:
    result = hdh("--hub", hub_dir, "location", "add", *args)
    assert result.returncode in (5, 6)
    assert only_line(result.stderr).startswith(message)


def test_unknown_location(hub_dir: Path) -> None:
    result = hdh("--hub", hub_dir, "location", "test", "nowhere")
    assert result.returncode == 4
    assert only_line(result.stderr) == (
        "Error: there is no location named 'nowhere': the locations are: local (hdh location list)"
    )
