"""``init_hub`` on SQLite and PostgreSQL: what a new hub holds, and refusals that leave
nothing behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from hdh import db
from hdh.config import to_sqlalchemy_url
from hdh.devservers import PostgresServer, free_port
from hdh.errors import Conflict, DatabaseUnavailable, FolderNotEmpty, InvalidInput
from hdh.hub import Hub, hub_status, init_hub


def test_new_hub_holds_config_database_key_and_local_location(hub: Hub) -> None:
    root = hub.settings.hub_dir
    assert (root / "hub.toml").is_file()
    assert stat.S_IMODE(hub.settings.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(hub.settings.key_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "storage").is_dir()
    st = hub_status(hub)
    assert st.name == "hub"
    assert st.schema_revision == db.SCHEMA_HEAD
    assert [loc["name"] for loc in st.locations] == ["local"]
    assert st.locations[0]["country"] == "FR"
    assert st.audit_events == 1
    assert st.chain.ok
    # No staging folder is left next to the hub.
    assert [p.name for p in root.parent.iterdir()] == ["hub"]


def test_reopening_a_hub_sees_the_same_state(hub: Hub) -> None:
    hub_id = hub_status(hub).hub_id
    with Hub.open(hub.settings.hub_dir) as again:
        assert hub_status(again).hub_id == hub_id


def test_init_into_an_existing_empty_folder(tmp_path: Path, database_url: str) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    with init_hub(target, database_url=database_url, name="Hub de démo") as hub:
        assert hub_status(hub).name == "Hub de démo"


def test_init_refuses_a_non_empty_folder_and_touches_nothing(
    tmp_path: Path, database_url: str
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FolderNotEmpty) as caught:
        init_hub(target, database_url=database_url)
    assert str(caught.value) == (
        f"{target} is not empty and is not a hub: choose a new or empty folder for the hub"
    )
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]
    if database_url.startswith("postgresql"):
        assert _tables(database_url, tmp_path) == []


def test_init_refuses_an_existing_hub(hub: Hub) -> None:
    with pytest.raises(Conflict, match="is already a hub"):
        init_hub(hub.settings.hub_dir)


def test_init_refuses_a_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        init_hub(tmp_path / "no" / "such" / "hub")
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_a_bad_country(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="two-letter ISO 3166 code"):
        init_hub(tmp_path / "hub", country="France")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_database_creates_nothing(tmp_path: Path) -> None:
    url = f"postgresql://hdh:secret-pw@127.0.0.1:{free_port()}/hdh"
    with pytest.raises(DatabaseUnavailable) as caught:
        init_hub(tmp_path / "hub", database_url=url)
    message = str(caught.value)
    assert message.startswith("cannot reach the database at postgresql://hdh:***@")
    assert "secret-pw" not in message
    assert message.endswith(
        "check that the server is running and that database_url in hub.toml "
        "(or HDH_DATABASE_URL) is right"
    )
    assert caught.value.retryable
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_init_refuses_a_database_that_already_holds_tables(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    url = pg_server.create_database("t_occupied")
    with init_hub(tmp_path / "first", database_url=url):
        pass
    with pytest.raises(Conflict, match="already holds tables"):
        init_hub(tmp_path / "second", database_url=url)
    assert [p.name for p in tmp_path.iterdir()] == ["first"]


def _tables(url: str, hub_dir: Path) -> list[str]:
    engine = create_engine(to_sqlalchemy_url(url, hub_dir))
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("step", ["witness", "rename"])
def test_failure_at_the_last_steps_leaves_no_folder_and_no_tables(
    tmp_path: Path, pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    url = pg_server.create_database(f"t_fail_{step}")

    def explode(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    if step == "witness":
        monkeypatch.setattr("hdh.audit.FileWitness.create", explode)
    else:
        monkeypatch.setattr(Path, "rename", explode)
    with pytest.raises(OSError, match="disk full"):
        init_hub(tmp_path / "hub", database_url=url)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert _tables(url, tmp_path) == []
    # The same database and folder then make a good hub.
    with init_hub(tmp_path / "hub", database_url=url) as hub:
        assert hub_status(hub).chain.ok
