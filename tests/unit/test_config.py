"""Reading hub.toml and HDH_* variables into settings, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdh.config import ENV_KEYS, load_settings, mask_url, render_hub_toml
from hdh.errors import ConfigError, HubNotFound

PASSWORD = "s3cr3t-Pa55"


def write_hub(folder: Path, text: str | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "hub.toml").write_text(
        text or render_hub_toml("demo", "sqlite:///hub.db", "keys/hub.key"), encoding="utf-8"
    )
    return folder


def test_rendered_hub_toml_reads_back(tmp_path: Path) -> None:
    settings = load_settings(write_hub(tmp_path / "hub"))
    assert settings.name == "demo"
    assert settings.server.port == 8400
    assert settings.key_path == tmp_path / "hub" / "keys" / "hub.key"
    assert settings.sqlalchemy_url() == f"sqlite:///{tmp_path / 'hub' / 'hub.db'}"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = {
        "HDH_DATABASE_URL": f"postgresql://hdh:{PASSWORD}@db.example:5432/hdh",
        "HDH_SERVER_PORT": "9000",
        "HDH_LOG_LEVEL": "DEBUG",
        "UNRELATED": "ignored",
    }
    settings = load_settings(write_hub(tmp_path / "hub"), environ)
    assert settings.server.port == 9000
    assert settings.log_level == "DEBUG"
    assert settings.sqlalchemy_url() == f"postgresql+psycopg://hdh:{PASSWORD}@db.example:5432/hdh"


def test_every_environment_variable_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "reference" / "configuration.md").read_text()
    for var in ENV_KEYS:
        assert f"`{var}`" in doc, f"{var} is not in docs/reference/configuration.md"


def test_secrets_never_print(tmp_path: Path) -> None:
    environ = {"HDH_DATABASE_URL": f"postgresql://hdh:{PASSWORD}@db.example/hdh"}
    settings = load_settings(write_hub(tmp_path / "hub"), environ)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert "**********" in repr(settings)
    assert mask_url(settings.database_url.get_secret_value()) == (
        "postgresql://hdh:***@db.example/hdh"
    )


def test_missing_hub_toml_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(HubNotFound) as caught:
        load_settings(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} is not a hub (it has no hub.toml): create one with `hdh init {tmp_path}`, "
        "or point --hub (or HDH_HUB) at an existing hub folder"
    )


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    hub = write_hub(tmp_path / "hub", 'name = "demo"\ndatabase_url = sqlite:///hub.db\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(hub)
    message = str(caught.value)
    assert message.startswith(f"{hub / 'hub.toml'} is not valid TOML: ")
    assert "(at line 2, column 16)" in message
    assert message.endswith("fix that line (see docs/reference/configuration.md for the keys)")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'name = "x"\ndatabase_url = "sqlite:///hub.db"\ndatabse = 1\n',
            "databse is not a setting the hub knows",
        ),
        ('name = "x"\n', "database_url is missing"),
        (
            'name = "x"\ndatabase_url = "sqlite:///hub.db"\n[server]\nport = "http"\n',
            "server.port is wrong: Input should be a valid integer",
        ),
        (
            'name = "x"\ndatabase_url = "mysql://a@b/c"\n',
            "database_url is wrong: Value error, unsupported database 'mysql'",
        ),
        (
            'hub_format = 7\nname = "x"\ndatabase_url = "sqlite:///hub.db"\n',
            "hub_format is wrong: Value error, this hdh reads hub format 1, the hub says 7",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    hub = write_hub(tmp_path / "hub", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(hub)
    assert str(caught.value).startswith(f"{hub / 'hub.toml'}: {expected}")


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_hub(tmp_path / "hub"), {"HDH_SERVER_PORT": "99999"})
    assert str(caught.value).startswith(
        "environment variable HDH_SERVER_PORT: server.port is wrong: "
        "Input should be less than or equal to 65535"
    )


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hub.toml").write_bytes(b'name = "h\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings(hub)


def test_the_command_lines_defaults_agree_with_the_library() -> None:
    from hdh.cli import job as job_cli
    from hdh.cli import query as query_cli
    from hdh.workspace import governed, jobs

    assert (job_cli.TIMEOUT_S, job_cli.MEMORY_MB) == (jobs.TIMEOUT_S, jobs.MEMORY_MB)
    assert query_cli.MAX_ROWS == governed.MAX_ROWS
