"""Storage locations: adding, listing, testing and removing them, and opening their backend.

A location names a folder, S3 bucket or Azure container together with the jurisdiction
it sits in (country, region, provider), the certifications the operator declares for
it, and its exposure to laws from outside the EU (e.g. ``us-cloud-act`` for a US-owned
provider, even in an EU region). Credentials are never stored: the location records
*where* to find them (environment variable names or a credentials file, 0600).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from obstore.store import AzureStore, LocalStore, S3Store
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hdh import audit
from hdh.errors import ConfigError, Conflict, HubError, InvalidInput, NotFound
from hdh.storage.backend import Backend, Features
from hdh.storage.models import Location, StoredObject
from hdh.storage.multipart import ResumableUploads

if TYPE_CHECKING:
    from obstore.store import ClientConfig

KINDS = ("local", "s3", "azure")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOKEN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

#: Country codes of the European Union, for rules that say "EU".
EU = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    }
)


@dataclass(frozen=True)
class Preset:
    kind: str
    provider: str
    endpoint: str | None = None
    region: str | None = None
    country: str | None = None
    extraterritorial: tuple[str, ...] = ()
    note: str = ""


#: Common locations in one flag. Certifications are not preset: they depend on the
#: offer contracted, so the operator declares them (--certification).
PRESETS: dict[str, Preset] = {
    "scaleway-fr-par": Preset("s3", "scaleway", "https://s3.fr-par.scw.cloud", "fr-par", "FR"),
    "scaleway-nl-ams": Preset("s3", "scaleway", "https://s3.nl-ams.scw.cloud", "nl-ams", "NL"),
    "scaleway-pl-waw": Preset("s3", "scaleway", "https://s3.pl-waw.scw.cloud", "pl-waw", "PL"),
    "ovhcloud-gra": Preset("s3", "ovhcloud", "https://s3.gra.io.cloud.ovh.net", "gra", "FR"),
    "ovhcloud-sbg": Preset("s3", "ovhcloud", "https://s3.sbg.io.cloud.ovh.net", "sbg", "FR"),
    "ovhcloud-rbx": Preset("s3", "ovhcloud", "https://s3.rbx.io.cloud.ovh.net", "rbx", "FR"),
    "outscale-eu-west-2": Preset(
        "s3", "outscale", "https://oos.eu-west-2.outscale.com", "eu-west-2", "FR"
    ),
    "outscale-cloudgouv-eu-west-1": Preset(
        "s3",
        "outscale",
        "https://oos.cloudgouv-eu-west-1.outscale.com",
        "cloudgouv-eu-west-1",
        "FR",
    ),
    "azure": Preset(
        "azure",
        "microsoft-azure",
        extraterritorial=("us-cloud-act",),
        note="US-owned provider: subject to the US CLOUD Act in every region",
    ),
    "minio": Preset("s3", "minio"),
    "seaweedfs": Preset("s3", "seaweedfs"),
}

#: Azure regions and the country they are in (give --country for any other).
AZURE_REGIONS = {
    "francecentral": "FR",
    "francesouth": "FR",
    "westeurope": "NL",
    "northeurope": "IE",
    "germanywestcentral": "DE",
    "germanynorth": "DE",
    "swedencentral": "SE",
    "polandcentral": "PL",
    "italynorth": "IT",
    "spaincentral": "ES",
    "switzerlandnorth": "CH",
    "norwayeast": "NO",
    "uksouth": "GB",
    "eastus": "US",
    "westus": "US",
}


@dataclass
class LocationSpec:
    """What ``hdh location add`` is given, before validation."""

    name: str
    kind: str | None = None
    preset: str | None = None
    path: str | None = None
    endpoint: str | None = None
    bucket: str | None = None
    container: str | None = None
    account: str | None = None
    prefix: str | None = None
    region: str | None = None
    country: str | None = None
    provider: str | None = None
    certifications: list[str] = field(default_factory=list)
    extraterritorial: list[str] = field(default_factory=list)
    access_key_env: str | None = None
    secret_key_env: str | None = None
    account_key_env: str | None = None
    credentials_file: str | None = None


def _invalid(message: str, hint: str) -> InvalidInput:
    return InvalidInput(message, hint=hint)


def build_location(spec: LocationSpec, *, created_at: str) -> Location:
    """Validate ``spec`` (applying its preset) into a :class:`Location` row."""
    if not NAME.match(spec.name):
        raise _invalid(
            f"location name {spec.name!r} is not allowed",
            "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
        )
    preset = None
    if spec.preset is not None:
        preset = PRESETS.get(spec.preset)
        if preset is None:
            raise _invalid(
                f"there is no preset {spec.preset!r}",
                f"use one of {', '.join(sorted(PRESETS))}, or give --kind and the details",
            )
    kind = spec.kind or (preset.kind if preset else None)
    if kind not in KINDS:
        raise _invalid(
            f"location kind {kind!r} is not one the hub knows"
            if kind
            else "no location kind given",
            "give --kind local, s3 or azure, or a --preset",
        )
    if preset is not None and preset.kind != kind:
        raise _invalid(
            f"preset {spec.preset!r} is for {preset.kind} locations, not {kind}",
            "drop --kind or choose another preset",
        )
    region = spec.region or (preset.region if preset else None)
    country = spec.country or (preset.country if preset else None)
    if kind == "azure" and country is None and region:
        country = AZURE_REGIONS.get(region.lower())
    if country is None:
        raise _invalid(
            f"location {spec.name!r} has no country",
            "give --country with the ISO 3166 code of where the data is stored (e.g. FR)",
        )
    country = country.upper()
    if len(country) != 2 or not country.isalpha():
        raise _invalid(
            f"country must be a two-letter ISO 3166 code such as FR, not {country!r}",
            "give --country FR (or the country where the data is stored)",
        )
    certifications = sorted({c.lower() for c in spec.certifications})
    exposure = set(preset.extraterritorial if preset else ()) | {
        e.lower() for e in spec.extraterritorial
    }
    for token in [*certifications, *exposure]:
        if not TOKEN.match(token):
            raise _invalid(
                f"{token!r} is not a valid certification or exposure name",
                "use lower-case words such as hds, secnumcloud, us-cloud-act",
            )
    options: dict[str, Any] = {}
    credentials: dict[str, Any] = {}
    if spec.credentials_file:
        credentials["file"] = str(Path(spec.credentials_file).expanduser().absolute())
    if kind == "local":
        if not spec.path:
            raise _invalid("a local location needs --path", "give the folder to store objects in")
        uri = spec.path
    elif kind == "s3":
        endpoint = spec.endpoint or (preset.endpoint if preset else None)
        if not endpoint or not spec.bucket:
            raise _invalid(
                f"an S3 location needs --endpoint and --bucket (got {endpoint or 'no endpoint'}, "
                f"{spec.bucket or 'no bucket'})",
                "give both, or a --preset that sets the endpoint",
            )
        _check_endpoint(endpoint)
        options.update(endpoint=endpoint, bucket=spec.bucket)
        if not credentials:
            credentials["env"] = {
                "access_key_id": spec.access_key_env or _env_name(spec.name, "ACCESS_KEY_ID"),
                "secret_access_key": spec.secret_key_env
                or _env_name(spec.name, "SECRET_ACCESS_KEY"),
            }
        uri = f"s3://{spec.bucket}/{spec.prefix or ''}"
    else:
        if not spec.account or not spec.container:
            raise _invalid(
                "an Azure location needs --account and --container",
                "give the storage account name and the container",
            )
        endpoint = spec.endpoint or f"https://{spec.account}.blob.core.windows.net"
        _check_endpoint(endpoint)
        if ".blob.core.windows.net" in endpoint:
            # Microsoft is a US company: its Azure regions are all reachable by US law.
            exposure.add("us-cloud-act")
        options.update(endpoint=endpoint, account=spec.account, container=spec.container)
        if not credentials:
            credentials["env"] = {
                "account_key": spec.account_key_env or _env_name(spec.name, "ACCOUNT_KEY")
            }
        uri = f"az://{spec.account}/{spec.container}/{spec.prefix or ''}"
    if spec.prefix:
        options["prefix"] = spec.prefix.strip("/")
    return Location(
        name=spec.name,
        kind=kind,
        uri=uri,
        provider=spec.provider or (preset.provider if preset else kind),
        region=region,
        country=country,
        certifications=certifications,
        extraterritorial=sorted(exposure),
        options=options,
        credentials=credentials,
        preset=spec.preset,
        created_at=created_at,
    )


def _env_name(location: str, what: str) -> str:
    return f"HDH_LOC_{location.upper().replace('-', '_')}_{what}"


def _check_endpoint(endpoint: str) -> None:
    if not re.match(r"^https?://[^/\s]+", endpoint):
        raise _invalid(
            f"endpoint {endpoint!r} is not an http(s) URL",
            "give it as https://HOST[:PORT] (plain http is for test servers only)",
        )


def add_location(session: Session, spec: LocationSpec, *, actor: str) -> Location:
    """Record a new location (audited in the same transaction)."""
    location = build_location(spec, created_at=audit.utc_timestamp())
    if session.scalar(select(Location.id).where(Location.name == location.name)) is not None:
        raise Conflict(
            f"a location named {location.name!r} already exists",
            hint="choose another name, or remove the old one first",
        )
    session.add(location)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="location.add",
        object_type="location",
        object_id=location.name,
        details=describe_location(location),
    )
    return location


def get_location(session: Session, name: str) -> Location:
    location = session.scalar(select(Location).where(Location.name == name))
    if location is None:
        names = session.scalars(select(Location.name).order_by(Location.name)).all()
        raise NotFound(
            f"there is no location named {name!r}",
            hint=f"the locations are: {', '.join(names) or 'none'} (hdh location list)",
        )
    return location


def list_locations(session: Session) -> list[Location]:
    return list(session.scalars(select(Location).order_by(Location.name)))


def describe_location(location: Location) -> dict[str, Any]:
    """Everything about a location that may be shown, credentials excepted."""
    return {
        "name": location.name,
        "kind": location.kind,
        "uri": location.uri,
        "provider": location.provider,
        "region": location.region,
        "country": location.country,
        "certifications": list(location.certifications),
        "extraterritorial": list(location.extraterritorial),
        "endpoint": location.options.get("endpoint"),
        "preset": location.preset,
        "credentials": _describe_credentials(location.credentials),
    }


def _describe_credentials(credentials: Mapping[str, Any]) -> str:
    if "file" in credentials:
        return f"file {credentials['file']}"
    if "env" in credentials:
        return "environment " + ", ".join(sorted(credentials["env"].values()))
    return "none"


def _read_credentials(location: Location, environ: Mapping[str, str]) -> dict[str, str]:
    refs = location.credentials
    if "file" in refs:
        path = Path(refs["file"])
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"the credentials file {path} of location {location.name!r} can be read by "
                    f"other users (mode {mode:04o})",
                    hint=f"run `chmod 600 {path}`",
                )
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"the credentials file {path} of location {location.name!r} is missing",
                hint="restore it, or remove and add the location again with other credentials",
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"the credentials file {path} is not valid TOML: {exc}", hint="fix that line"
            ) from None
        return {str(k): str(v) for k, v in data.items()}
    found: dict[str, str] = {}
    for what, var in refs.get("env", {}).items():
        value = environ.get(var)
        if not value:
            raise ConfigError(
                f"location {location.name!r} needs its {what.replace('_', ' ')} in the "
                f"environment variable {var}, which is not set",
                hint=f"export {var}=… before running hdh",
            )
        found[what] = value
    return found


#: What a hub folder holds of its own: a location made through the API never goes there.
HUB_ENTRIES = frozenset(
    {"audit", "hub.db", "hub.toml", "keys", "logs", "reports", "storage", "tmp"}
)


def check_new_folder_in_hub(hub_dir: Path, path: str) -> None:
    """Refuse a local location's path unless it is a new folder of the hub's folder,
    apart from the hub's own files and folders (for locations made from afar, through
    the API: ``hdh location add`` on the hub's machine may name any folder)."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    first = parts[0] if parts else ""
    if (
        PurePosixPath(path).is_absolute()
        or PureWindowsPath(path).is_absolute()
        or not parts
        or ".." in parts
        or first in (".", "~")
        or first in HUB_ENTRIES
        or Path(hub_dir, first).exists()
    ):
        raise InvalidInput(
            f"path {path!r} is not a new folder inside the hub's folder: through the API a "
            "local location's path is relative to it, without '..', and does not reach "
            "the hub's own files and folders or another location's",
            hint="give a new relative path, or run hdh location add on the hub's machine",
        )


def open_backend(
    location: Location, *, hub_dir: Path, environ: Mapping[str, str] | None = None
) -> Backend:
    """The :class:`Backend` for ``location``, with its credentials read now."""
    env = os.environ if environ is None else environ
    options = location.options
    prefix = options.get("prefix") or None
    if location.kind == "local":
        folder = Path(location.uri)
        if not folder.is_absolute():
            folder = hub_dir / folder
        folder.mkdir(parents=True, exist_ok=True)
        return Backend(
            LocalStore(folder, mkdir=True),
            kind="local",
            describe=f"location {location.name!r} ({folder})",
            features=Features(multipart=True, server_checksum=None),
            folder=folder,
        )
    creds = _read_credentials(location, env)
    endpoint = options["endpoint"]
    client_options: ClientConfig = {"allow_http": True} if endpoint.startswith("http://") else {}
    if location.kind == "s3":
        try:
            store = S3Store(
                options["bucket"],
                prefix=prefix,
                endpoint=endpoint,
                region=location.region or "us-east-1",
                access_key_id=creds.get("access_key_id"),
                secret_access_key=creds.get("secret_access_key"),
                virtual_hosted_style_request=False,
                checksum_algorithm="sha256",
                client_options=client_options,
            )
        except Exception as exc:
            raise ConfigError(
                f"location {location.name!r} cannot be opened: {exc}",
                hint="check its endpoint and bucket (hdh location list)",
            ) from exc
        describe = f"location {location.name!r} ({location.uri} at {endpoint})"
        return Backend(
            store,
            kind="s3",
            describe=describe,
            features=Features(multipart=True, server_checksum="sha256"),
            resumable=ResumableUploads(
                endpoint=endpoint,
                bucket=options["bucket"],
                prefix=prefix,
                region=location.region or "us-east-1",
                access_key_id=creds.get("access_key_id"),
                secret_access_key=creds.get("secret_access_key"),
                describe=describe,
            ),
        )
    try:
        azure = AzureStore(
            options["container"],
            prefix=prefix,
            account_name=options["account"],
            account_key=creds.get("account_key"),
            endpoint=endpoint if not endpoint.endswith(".blob.core.windows.net") else None,
            client_options=client_options,
        )
    except Exception as exc:
        raise ConfigError(
            f"location {location.name!r} cannot be opened: {exc}",
            hint="check its account, container and endpoint (hdh location list)",
        ) from exc
    return Backend(
        azure,
        kind="azure",
        describe=f"location {location.name!r} ({location.uri})",
        features=Features(multipart=True, server_checksum=None),
    )


@dataclass(frozen=True)
class ProbeStep:
    step: str
    ok: bool
    ms: float
    error: str | None = None


def probe_location(backend: Backend) -> list[ProbeStep]:
    """Write, read, range-read, list and delete a probe object; time each step.

    Stops at the first failure (later steps would only repeat it) and always tries to
    delete the probe.
    """
    key = f".hdh-probe/{secrets.token_hex(8)}"
    body = secrets.token_bytes(64 * 1024)
    steps: list[ProbeStep] = []

    def run(step: str, fn: Any) -> bool:
        began = time.perf_counter()
        try:
            fn()
        except (HubError, AssertionError) as exc:
            message = str(exc) or "returned different bytes"
            steps.append(ProbeStep(step, False, (time.perf_counter() - began) * 1000, message))
            return False
        steps.append(ProbeStep(step, True, (time.perf_counter() - began) * 1000))
        return True

    def check(condition: bool, what: str) -> None:
        if not condition:
            raise AssertionError(what)

    try:
        ok = run("write", lambda: backend.put(key, body))
        ok = ok and run(
            "read", lambda: check(backend.get(key) == body, "read back different bytes")
        )
        ok = ok and run(
            "ranged read",
            lambda: check(backend.get_range(key, 100, 200) == body[100:200], "wrong range"),
        )
        ok = ok and run(
            "list",
            lambda: check(
                any(o.key == key for o in backend.list(".hdh-probe/")), "probe not listed"
            ),
        )
        ok and run("delete", lambda: backend.delete(key))
    finally:
        if not steps or not steps[-1].ok or steps[-1].step != "delete":
            with contextlib.suppress(HubError):
                backend.delete(key)
    return steps


def remove_location(session: Session, name: str, *, backend: Backend | None, actor: str) -> None:
    """Forget a location, refused while it holds objects (checked on the location itself)."""
    location = get_location(session, name)
    recorded = session.scalar(
        select(func.count())
        .select_from(StoredObject)
        .where(StoredObject.location_id == location.id)
    )
    if recorded:
        raise Conflict(
            f"location {name!r} still holds {recorded} object{'s' if recorded != 1 else ''} "
            "the hub wrote",
            hint="move or delete them first (hdh migrate plan --from this location)",
        )
    if backend is not None:
        held = next(iter(backend.list()), None)
        if held is not None:
            raise Conflict(
                f"location {name!r} still holds data (for example {held.key!r})",
                hint="move or delete its objects first (hdh migrate plan --from this location)",
            )
    session.delete(location)
    audit.record(
        session,
        actor=actor,
        action="location.remove",
        object_type="location",
        object_id=name,
    )
