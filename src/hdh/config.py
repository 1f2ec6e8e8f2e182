"""The hub's settings: ``hub.toml`` in the hub folder, overridden by ``HDH_*`` variables.

Settings are read once, at the edge (the CLI, the server), into a frozen
:class:`Settings` and passed down; nothing in the hub reads the environment or the
file on its own. Secrets (the database URL, which may carry a password) are
:class:`pydantic.SecretStr`: their ``repr`` and ``str`` show ``**********``.

Environment variables, each overriding one key of ``hub.toml``:

======================  =====================
``HDH_NAME``            ``name``
``HDH_DATABASE_URL``    ``database_url``
``HDH_KEY_FILE``        ``key_file``
``HDH_LOG_LEVEL``       ``log_level``
``HDH_SERVER_HOST``     ``[server] host``
``HDH_SERVER_PORT``     ``[server] port``
======================  =====================

``HDH_HUB`` is not a setting: it names the hub folder when ``--hub`` is not given.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from hdh.errors import ConfigError, HubNotFound

__all__ = [
    "CONFIG_FILE",
    "ENV_KEYS",
    "HUB_FORMAT",
    "ServerSettings",
    "Settings",
    "load_settings",
    "mask_url",
    "render_hub_toml",
]

CONFIG_FILE = "hub.toml"
HUB_FORMAT = 1

#: ``HDH_*`` variable -> (section or None, key) in hub.toml.
ENV_KEYS: dict[str, tuple[str | None, str]] = {
    "HDH_NAME": (None, "name"),
    "HDH_DATABASE_URL": (None, "database_url"),
    "HDH_KEY_FILE": (None, "key_file"),
    "HDH_LOG_LEVEL": (None, "log_level"),
    "HDH_SERVER_HOST": ("server", "host"),
    "HDH_SERVER_PORT": ("server", "port"),
    "HDH_SERVER_MAX_UPLOAD_MIB": ("server", "max_upload_mib"),
    "HDH_CATALOG_BASE_URI": ("catalog", "base_uri"),
    "HDH_CATALOG_PUBLISHER": ("catalog", "publisher"),
    "HDH_CATALOG_CONTACT_EMAIL": ("catalog", "contact_email"),
    "HDH_AIRLOCK_APPROVALS": ("airlock", "approvals"),
    "HDH_MIGRATE_GRACE_DAYS": ("migrate", "grace_days"),
}


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8400, ge=1, le=65535)
    #: The largest file the API takes in one upload (ingestion); it is written to the
    #: hub's ``tmp/`` while the request runs. Larger files: ``hdh dataset ingest``.
    max_upload_mib: int = Field(default=4096, ge=1, le=1 << 20)


class CatalogSettings(BaseModel):
    """How the hub presents its catalogue to the outside (``hdh catalog export``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Base of the identifiers minted for the catalogue, its datasets and versions.
    base_uri: str = Field(default="https://hdh.invalid/", pattern=r"^https?://\S+/$")
    title: str = ""
    description: str = ""
    publisher: str = "hdh"
    contact_email: str = Field(default="contact@hdh.invalid", pattern=r"^[^@\s]+@[^@\s]+$")
    #: The health data access body that grants permits (EHDS), when not the publisher.
    access_body: str = ""
    #: ISO 639-1 code of an EU/EEA language (the export needs its EU vocabulary entry).
    language: Literal[
        "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "ga", "hr", "hu", "is",
        "it", "lt", "lv", "mt", "nb", "nl", "nn", "no", "pl", "pt", "ro", "sk", "sl", "sv",
    ] = "fr"  # fmt: skip


class AirlockSettings(BaseModel):
    """What may leave a project (``hdh airlock``): disclosure thresholds (defaults as
    ACRO's) and the review rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Approvals a request needs, from reviewers other than the requester.
    approvals: int = Field(default=1, ge=1, le=3)
    safe_threshold: int = Field(default=10, ge=1)
    safe_dof_threshold: int = Field(default=10, ge=1)
    nk_n: int = Field(default=2, ge=1)
    nk_k: float = Field(default=0.9, gt=0, le=1)
    p_ratio: float = Field(default=0.1, gt=0, le=1)
    zeros_are_disclosive: bool = True
    #: 0 for no rounding; otherwise released frequency tables are rounded to this base.
    round_base: int = Field(default=0, ge=0)
    max_file_mb: int = Field(default=10, ge=1)
    #: A table without a declaration and with more rows than this is refused as row-level.
    max_undeclared_rows: int = Field(default=100, ge=1)


class MigrateSettings(BaseModel):
    """How the hub moves between locations (``hdh migrate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Objects copied at once by one ``hdh migrate run`` process.
    concurrency: int = Field(default=16, ge=1, le=64)
    #: Tries of an object after a transient error (the location did not answer).
    retries: int = Field(default=5, ge=0, le=20)
    #: Seconds before the first retry; doubled at each try, up to 30 s.
    backoff_s: float = Field(default=0.5, ge=0, le=30)
    #: Seconds after which a claim by a worker that stopped renewing it lapses.
    lease_s: int = Field(default=600, ge=10)
    #: Days between the last cutover and the deletion of the source copies.
    grace_days: float = Field(default=7, ge=0)


class Settings(BaseModel):
    """Everything the hub needs to know about itself, read once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hub_dir: Path
    hub_format: int = HUB_FORMAT
    name: str = Field(min_length=1, max_length=100)
    database_url: SecretStr
    key_file: Path = Path("keys/hub.key")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    server: ServerSettings = ServerSettings()
    catalog: CatalogSettings = CatalogSettings()
    airlock: AirlockSettings = AirlockSettings()
    migrate: MigrateSettings = MigrateSettings()

    @field_validator("hub_format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != HUB_FORMAT:
            raise ValueError(
                f"this hdh reads hub format {HUB_FORMAT}, the hub says {value}; "
                "upgrade hdh to open this hub"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database {scheme or '(none)'!r}; use sqlite:///FILE "
                "or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        return value

    @property
    def key_path(self) -> Path:
        return self.key_file if self.key_file.is_absolute() else self.hub_dir / self.key_file

    @property
    def log_path(self) -> Path:
        return self.hub_dir / "logs" / "hdh.log"

    @property
    def storage_dir(self) -> Path:
        return self.hub_dir / "storage"

    @property
    def audit_head_path(self) -> Path:
        return self.hub_dir / "audit" / "head.json"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None on a server database."""
        url = self.sqlalchemy_url()
        return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None

    def sqlalchemy_url(self) -> str:
        """The database URL with the driver the hub uses, SQLite paths made absolute."""
        return to_sqlalchemy_url(self.database_url.get_secret_value(), self.hub_dir)


def to_sqlalchemy_url(url: str, hub_dir: Path) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        raw = url[len(parts.scheme) + len(":///") :]
        path = Path(raw)
        if not path.is_absolute():
            path = hub_dir / path
        return f"sqlite:///{path}"
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for display and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HubNotFound(
            f"{path.parent} is not a hub (it has no {CONFIG_FILE})",
            hint=f"create one with `hdh init {path.parent}`, or point --hub (or HDH_HUB) "
            "at an existing hub folder",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="save it as UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}",
            hint="fix that line (see docs/reference/configuration.md for the keys)",
        ) from None


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Overlay the ``HDH_*`` variables on ``data``; return {dotted key: variable} applied."""
    applied: dict[str, str] = {}
    for var, (section, key) in ENV_KEYS.items():
        if var not in environ:
            continue
        target = data
        if section is not None:
            existing = data.setdefault(section, {})
            if not isinstance(existing, dict):
                raise ConfigError(
                    f"{CONFIG_FILE}: [{section}] must be a table, not {type(existing).__name__}",
                    hint=f"write it as a [{section}] section",
                )
            target = existing
        target[key] = environ[var]
        applied[key if section is None else f"{section}.{key}"] = var
    return applied


def load_settings(hub_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``hub_dir/hub.toml`` and the ``HDH_*`` overrides into :class:`Settings`.

    Raises :class:`HubNotFound` when there is no hub.toml and :class:`ConfigError`
    when it cannot be read or a value is wrong, naming the key and what it should be.
    """
    hub_dir = hub_dir.expanduser().resolve()
    data = _read_toml(hub_dir / CONFIG_FILE)
    from_env = _apply_env(data, environ or {})
    data["hub_dir"] = hub_dir
    return settings_from_mapping(data, source=str(hub_dir / CONFIG_FILE), from_env=from_env)


def settings_from_mapping(
    data: Mapping[str, Any], *, source: str, from_env: Mapping[str, str] | None = None
) -> Settings:
    """Validate ``data``; an error names the key and where it came from: ``source``
    (the file) or the ``HDH_*`` variable in ``from_env``."""
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        if from_env and where in from_env:
            source = f"environment variable {from_env[where]}"
        count = exc.error_count()
        more = f" (and {count - 1} more)" if count > 1 else ""
        if first["type"] == "extra_forbidden":
            problem = "is not a setting the hub knows"
            hint = "remove it or fix its spelling (docs/reference/configuration.md lists the keys)"
        elif first["type"] == "missing":
            problem = "is missing"
            hint = "add it (docs/reference/configuration.md lists the keys)"
        else:
            problem = f"is wrong: {first['msg']}"
            hint = "fix the value (docs/reference/configuration.md lists the keys)"
        raise ConfigError(f"{source}: {where} {problem}{more}", hint=hint) from None


def render_hub_toml(name: str, database_url: str, key_file: str) -> str:
    """The hub.toml that ``hdh init`` writes, commented for the operator who opens it."""

    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "# hdh hub configuration. HDH_* environment variables override these keys;\n"
        "# see docs/reference/configuration.md.\n"
        f"hub_format = {HUB_FORMAT}\n"
        f"name = {q(name)}\n"
        "# sqlite:///FILE (relative to this folder) or postgresql://USER:PASSWORD@HOST:PORT/DB\n"
        f"database_url = {q(database_url)}\n"
        "# The local key file; its permissions must stay 0600.\n"
        f"key_file = {q(key_file)}\n"
        'log_level = "INFO"\n'
        "\n"
        "[server]\n"
        'host = "127.0.0.1"\n'
        "port = 8400\n"
    )
