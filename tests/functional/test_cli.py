"""The ``hdh`` command as a user runs it: output, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hdh import __version__, audit, db
from hdh.cli import main
from hdh.devservers import free_port
from hdh.hub import Hub
from tests.helpers import TAMPERINGS, add_events, hdh, only_line, tamper


def test_version_and_help() -> None:
    assert hdh("--version").stdout == f"hdh {__version__}\n"
    result = hdh("--help")
    assert result.returncode == 0
    for command in ("init", "status", "audit", "serve", "upgrade"):
        assert command in result.stdout


def test_init_then_status(tmp_path: Path, database_url: str) -> None:
    target = tmp_path / "demo-hub"
    created = hdh("init", target, "--database-url", database_url, "--country", "fr")
    assert created.returncode == 0, created.stderr
    assert f"Created hub 'demo-hub' in {target}" in created.stdout
    assert "Back it up now" in created.stdout

    status = hdh("--hub", target, "status")
    assert status.returncode == 0, status.stderr
    assert "Hub 'demo-hub'" in status.stdout
    assert "chain:     verifies (head #1" in status.stdout
    assert "mode 0600" in status.stdout
    assert "│ local │ local │ storage │ local-disk │ FR" in status.stdout
    if "@" in database_url:
        assert database_url.split(":")[2].split("@")[0] not in status.stdout  # the password

    as_json = json.loads(hdh("--hub", target, "status", "--json").stdout)
    assert as_json["audit_chain"] == {"ok": True, "events": 1, "head": 1, "problem": None}
    assert as_json["locations"][0]["country"] == "FR"


def test_upgrade_on_a_current_hub_changes_nothing(hub: Hub) -> None:
    result = hdh("--hub", hub.settings.hub_dir, "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"The database schema is up to date (revision {db.SCHEMA_HEAD}).\n"
    with hub.read() as session:
        assert [e.action for e in audit.list_events(session)] == ["hub.init"]


def test_an_older_schema_is_refused_until_upgraded(hub: Hub) -> None:
    from alembic import command

    from hdh.db.engine import _alembic_config

    command.downgrade(_alembic_config(hub.engine), "0001")
    refused = hdh("--hub", hub.settings.hub_dir, "status")
    assert refused.returncode == 3
    assert only_line(refused.stderr) == (
        f"Error: the hub's database schema is at revision 0001, this hdh uses {db.SCHEMA_HEAD}: "
        "run `hdh upgrade` to bring the database up to date"
    )
    upgraded = hdh("--hub", hub.settings.hub_dir, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout == f"Upgraded the database schema from 0001 to {db.SCHEMA_HEAD}.\n"
    assert hdh("--hub", hub.settings.hub_dir, "status").returncode == 0
    with hub.read() as session:
        last = audit.list_events(session)[-1]
    assert (last.action, json.loads(last.details)) == (
        "hub.upgrade",
        {"from": "0001", "to": db.SCHEMA_HEAD},
    )


def test_hub_folder_from_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "hub"
    assert hdh("init", target).returncode == 0
    env = {**os.environ, "HDH_HUB": str(target)}
    result = hdh("audit", "verify", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Audit chain intact: 1 event, head #1 ")


def test_init_into_a_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "papers"
    target.mkdir()
    (target / "thesis.pdf").write_bytes(b"%PDF")
    result = hdh("init", target)
    assert result.returncode == 5
    assert only_line(result.stderr) == (
        f"Error: {target} is not empty and is not a hub: choose a new or empty folder for the hub"
    )
    assert [p.name for p in target.iterdir()] == ["thesis.pdf"]
    assert [p.name for p in tmp_path.iterdir()] == ["papers"]


def test_malformed_hub_toml(tmp_path: Path) -> None:
    target = tmp_path / "hub"
    assert hdh("init", target).returncode == 0
    config = target / "hub.toml"
    config.write_text(config.read_text().replace('name = "hub"', "name = hub"))
    result = hdh("--hub", target, "status")
    assert result.returncode == 3
    line = only_line(result.stderr)
    assert line.startswith(f"Error: {config} is not valid TOML: ")
    assert "line 4" in line
    assert line.endswith("fix that line (see docs/reference/configuration.md for the keys)")


def test_unreachable_database_url(tmp_path: Path) -> None:
    target = tmp_path / "hub"
    url = f"postgresql://hdh:pw-123@127.0.0.1:{free_port()}/hdh"
    result = hdh("init", target, "--database-url", url)
    assert result.returncode == 7
    line = only_line(result.stderr)
    assert line.startswith("Error: cannot reach the database at postgresql://hdh:***@")
    assert "pw-123" not in line
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_not_a_hub(tmp_path: Path) -> None:
    result = hdh("--hub", tmp_path, "status")
    assert result.returncode == 4
    assert only_line(result.stderr).startswith(f"Error: {tmp_path} is not a hub")


def test_bad_option_value_is_the_parsers_error(tmp_path: Path) -> None:
    result = hdh("--hub", tmp_path, "audit", "log", "--limit", "zero")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--limit'" in result.stderr


@pytest.mark.parametrize("how", TAMPERINGS)
def test_audit_verify_names_the_first_bad_event(hub: Hub, how: str) -> None:
    add_events(hub, 5)
    intact = hdh("--hub", hub.settings.hub_dir, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("Audit chain intact: 6 events, head #6 ")

    tamper(hub, how)
    broken = hdh("--hub", hub.settings.hub_dir, "audit", "verify")
    assert broken.returncode == 8
    expected = {
        "edit": "event #3: event #3 was edited: its content no longer matches its hash",
        "delete": "event #4: event #4 is missing (removed from the log)",
        "reorder": "event #3: event #3 does not follow event #2",
        "truncate": "event #5: the log ends at event #4 but the head witness records #6: "
        "events #5..#6 were removed from the end",
    }[how]
    assert only_line(broken.stderr).startswith(f"Error: audit chain broken at {expected}")

    status = hdh("--hub", hub.settings.hub_dir, "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["audit_chain"]["ok"] is False

    as_json = hdh("--hub", hub.settings.hub_dir, "audit", "verify", "--json")
    assert as_json.returncode == 8
    assert json.loads(as_json.stdout)["problem"]["kind"] in {
        "edited",
        "missing",
        "out_of_order",
        "truncated",
    }


def test_audit_log_lists_and_filters(hub: Hub) -> None:
    add_events(hub, 3, actor="os:alice")
    add_events(hub, 1, actor="os:bob")
    table = hdh("--hub", hub.settings.hub_dir, "audit", "log")
    assert table.returncode == 0, table.stderr
    assert "hub.init" in table.stdout
    assert "os:bob" in table.stdout

    rows = json.loads(
        hdh("--hub", hub.settings.hub_dir, "audit", "log", "--actor", "os:alice", "--json").stdout
    )
    assert [r["seq"] for r in rows] == [2, 3, 4]
    assert rows[0]["details"] == {"i": 0, "note": "données de santé"}

    last = json.loads(
        hdh("--hub", hub.settings.hub_dir, "audit", "log", "--limit", "1", "--json").stdout
    )
    assert [r["actor"] for r in last] == ["os:bob"]

    on_object = json.loads(
        hdh("--hub", hub.settings.hub_dir, "audit", "log", "--object", "hub:hub", "--json").stdout
    )
    assert [r["action"] for r in on_object] == ["hub.init"]

    bad = hdh("--hub", hub.settings.hub_dir, "audit", "log", "--since", "last week")
    assert bad.returncode == 6
    assert only_line(bad.stderr) == (
        "Error: --since 'last week' is not a date or time: "
        "write it as 2026-11-29 or 2026-11-29T14:30:00Z"
    )


def test_internal_error_points_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "hub"
    assert main(["init", str(target)]) == 0
    capsys.readouterr()

    def broken(_hub: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("hdh.cli.hubcmd.hub_status", broken)
    assert main(["--hub", str(target), "status"]) == 70
    err = capsys.readouterr().err
    log_path = target / "logs" / "hdh.log"
    assert only_line(err) == (
        "Error: internal error (RuntimeError: a bug). This is a bug in hdh; the traceback is in "
        f"{log_path}, or rerun with --debug to see it."
    )
    assert "Traceback" in log_path.read_text()

    assert main(["--debug", "--hub", str(target), "status"]) == 70
    assert "Traceback" in capsys.readouterr().err

    monkeypatch.setenv("HDH_DEBUG", "1")
    assert main(["--hub", str(target), "status"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    target = tmp_path / "hub"
    assert hdh("init", target).returncode == 0
    (target / "hub.db").unlink()
    result = hdh("--hub", target, "status")
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        f"Error: the hub's database file {target / 'hub.db'} does not exist: restore it from a "
        "backup, or fix database_url in hub.toml (or HDH_DATABASE_URL)"
    )
    assert not (target / "hub.db").exists()


def test_unreadable_witness_fails_status_and_verify(hub: Hub) -> None:
    hub.witness.path.write_text("{not json")
    status = hdh("--hub", hub.settings.hub_dir, "status")
    assert status.returncode == 1
    assert "chain:     BROKEN: the audit head witness" in status.stdout
    verify = hdh("--hub", hub.settings.hub_dir, "audit", "verify")
    assert verify.returncode == 8
    assert only_line(verify.stderr).startswith(
        f"Error: the audit head witness {hub.witness.path} is unreadable"
    )
