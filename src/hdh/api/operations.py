"""``/api/v1``: the operators' operations, as ``hdh status``, ``hdh key``, ``hdh location
add|test|remove``, ``hdh object`` and ``hdh policy set|remove`` do them (all need
``hub.operate``). Credentials never travel through the API: a location names the
variables or the file that hold them on the serving machine, as on the command line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from hdh import authz, policy
from hdh.api.deps import Limit, Offset, Page, Who, authorise, hub_of, page
from hdh.crypto.service import (
    KeyUse,
    key_usage,
    retire_key,
    rotate_keys,
    rotate_pseudonym_secret,
)
from hdh.errors import InvalidInput
from hdh.hub import hub_status
from hdh.storage.locations import (
    LocationSpec,
    add_location,
    check_new_folder_in_hub,
    describe_location,
    get_location,
    open_backend,
    remove_location,
)
from hdh.storage.objects import (
    ObjectRecord,
    check_location,
    list_objects,
    read_object,
    write_object,
)

router = APIRouter(prefix="/api/v1")

Sensitivity = Literal["identifiers", "clinical", "other"]
#: Largest object ``PUT /objects`` takes in one request body.
MAX_PUT = 256 * 1024 * 1024


@router.get("/status", response_model=dict[str, Any], tags=["hub"])
def status(request: Request, who: Who) -> dict[str, Any]:
    """What the hub holds, its locations, its key file and whether its audit chain
    verifies (``hdh status --json``)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    return hub_status(hub).to_dict()


# --- Keys -----------------------------------------------------------------------------


class Rotation(BaseModel):
    #: One class, or all three when absent.
    sensitivity: Sensitivity | None = None


class Rotated(BaseModel):
    #: class -> its new current version
    versions: dict[str, int]


class PseudonymRotated(BaseModel):
    secret_version: int


@router.get("/keys", response_model=list[KeyUse], tags=["keys"])
def keys(request: Request, who: Who) -> list[KeyUse]:
    """Every KEK version: current, kept or retired, and how many data keys it wraps."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    return key_usage(hub)


@router.post("/keys/rotate", response_model=Rotated, tags=["keys"])
def rotate(request: Request, who: Who, body: Rotation) -> Rotated:
    """Add a KEK version and rewrap the data keys under it (no object is rewritten)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    return Rotated(versions=rotate_keys(hub, body.sensitivity, actor=who.actor))


@router.post("/keys/{sensitivity}/{version}/retire", status_code=204, tags=["keys"])
def retire(
    request: Request, who: Who, sensitivity: Sensitivity,
    version: Annotated[int, Path(ge=1, le=10**6)],
) -> Response:  # fmt: skip
    """Destroy an old KEK version; refused (409) while any data key still needs it."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    retire_key(hub, sensitivity, version, actor=who.actor)
    return Response(status_code=204)


@router.post("/keys/rotate-pseudonyms", response_model=PseudonymRotated, tags=["keys"])
def rotate_pseudonyms(request: Request, who: Who) -> PseudonymRotated:
    """Add a pseudonymisation secret version for the datasets ingested from now on;
    projects keep seeing the same pseudonyms across it."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    return PseudonymRotated(secret_version=rotate_pseudonym_secret(hub, actor=who.actor))


# --- Locations ------------------------------------------------------------------------


class NewLocation(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["local", "s3", "azure"] | None = None
    preset: str | None = Field(default=None, max_length=64)
    path: str | None = Field(default=None, max_length=1000)
    endpoint: str | None = Field(default=None, max_length=1000)
    bucket: str | None = Field(default=None, max_length=200)
    account: str | None = Field(default=None, max_length=200)
    container: str | None = Field(default=None, max_length=200)
    prefix: str | None = Field(default=None, max_length=400)
    region: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=8)
    provider: str | None = Field(default=None, max_length=200)
    certifications: list[str] = Field(default_factory=list, max_length=20)
    extraterritorial: list[str] = Field(default_factory=list, max_length=20)
    #: Names of the serving machine's variables holding the credentials (never values).
    access_key_env: str | None = Field(default=None, max_length=200)
    secret_key_env: str | None = Field(default=None, max_length=200)
    account_key_env: str | None = Field(default=None, max_length=200)
    #: A 0600 TOML file on the serving machine holding them instead.
    credentials_file: str | None = Field(default=None, max_length=1000)


class ProbeOut(BaseModel):
    location: str
    ok: bool
    steps: list[dict[str, Any]]


@router.post("/locations", response_model=dict[str, Any], status_code=201, tags=["locations"])
def new_location(request: Request, who: Who, body: NewLocation) -> dict[str, Any]:
    """Record a storage location with its jurisdiction (``hdh location add``). Through
    the API a local location is a folder inside the hub's folder: its ``path`` is
    relative and does not climb out (``hdh location add`` on the hub's machine can name
    any folder)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    if body.path is not None:
        check_new_folder_in_hub(hub.settings.hub_dir, body.path)
    with hub.transaction() as session:
        location = add_location(session, LocationSpec(**body.model_dump()), actor=who.actor)
        return describe_location(location)


@router.post("/locations/{name}/test", response_model=ProbeOut, tags=["locations"])
def test_location(request: Request, who: Who, name: str) -> ProbeOut:
    """Write, read, range-read, list and delete a probe object, timing each step."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    steps = check_location(hub, name, actor=who.actor)
    return ProbeOut(
        location=name,
        ok=all(s.ok for s in steps),
        steps=[{"step": s.step, "ok": s.ok, "ms": round(s.ms, 1), "error": s.error}
               for s in steps],
    )  # fmt: skip


@router.delete("/locations/{name}", status_code=204, tags=["locations"])
def delete_location(request: Request, who: Who, name: str) -> Response:
    """Forget a location; refused (409) while it holds any object."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.read() as session:
        location = get_location(session, name)
    backend = open_backend(location, hub_dir=hub.settings.hub_dir, environ=os.environ)
    with hub.transaction() as session:
        remove_location(session, name, backend=backend, actor=who.actor)
    return Response(status_code=204)


# --- Objects --------------------------------------------------------------------------


@router.get("/locations/{name}/objects", response_model=Page[ObjectRecord], tags=["locations"])
def objects(request: Request, who: Who, name: str, offset: Offset = 0, limit: Limit = 50) -> Any:
    """The objects the hub wrote to a location (sizes, SHA-256 of the stored bytes)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    return page(list_objects(hub, name), offset, limit)


_BYTES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The object, decrypted."}
}


@router.get(
    "/locations/{name}/objects/{key:path}", response_class=Response, responses=_BYTES,
    tags=["locations"],
)  # fmt: skip
def get_object(request: Request, who: Who, name: str, key: str) -> Response:
    """Read, verify and decrypt an object. The first part is checked before the answer
    starts; a later part found altered cuts the answer short (the client sees a broken
    transfer, never altered bytes as whole)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    pieces = iter(read_object(hub, name, key))
    first = next(pieces, b"")

    def rest() -> Iterator[bytes]:
        yield bytes(first)
        for piece in pieces:
            yield bytes(piece)

    return StreamingResponse(rest(), media_type="application/octet-stream")


@router.put(
    "/locations/{name}/objects/{key:path}", response_model=ObjectRecord, status_code=201,
    tags=["locations"],
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)  # fmt: skip
async def put_object(
    request: Request,
    who: Who,
    name: str,
    key: str,
    data_class: Annotated[Literal["health", "other"], Query()] = "health",
    sensitivity: Annotated[Sensitivity, Query()] = "clinical",
) -> ObjectRecord:
    """Encrypt the request body and store it as ``key``, if the residency policy allows
    that data on the location (``hdh object put``)."""
    from starlette.concurrency import run_in_threadpool

    hub = hub_of(request)
    await authorise(hub, who, "hub.operate")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_PUT:
            raise InvalidInput(
                f"the object is larger than {MAX_PUT >> 20} MiB",
                hint="store large files with hdh object put on the hub's machine",
            )
    return await run_in_threadpool(
        write_object, hub, name, key, [bytes(body)], actor=who.actor, data_class=data_class,
        sensitivity=sensitivity,
    )  # fmt: skip


# --- Policy ---------------------------------------------------------------------------


class Rule(BaseModel):
    data_class: Literal["health", "other", "*"] = "health"
    #: Allowed countries (ISO codes, or EU); empty: any country.
    countries: list[str] = Field(default_factory=list, max_length=50)
    certifications: list[str] = Field(default_factory=list, max_length=20)
    forbid_extraterritorial: bool = True


@router.put("/policy/rules/{name}", response_model=dict[str, Any], tags=["locations"])
def set_rule(request: Request, who: Who, name: str, body: Rule) -> dict[str, Any]:
    """Create or replace a residency rule (``hdh policy set``)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.transaction() as session:
        rule = policy.set_rule(
            session, name, data_class=body.data_class, countries=body.countries,
            certifications=body.certifications,
            forbid_extraterritorial=body.forbid_extraterritorial, actor=who.actor,
        )  # fmt: skip
        return policy.describe_rule(rule)


@router.delete("/policy/rules/{name}", status_code=204, tags=["locations"])
def delete_rule(request: Request, who: Who, name: str) -> Response:
    """Remove a residency rule (``hdh policy remove``)."""
    hub = hub_of(request)
    authz.check(hub, who, "hub.operate")
    with hub.transaction() as session:
        policy.remove_rule(session, name, actor=who.actor)
    return Response(status_code=204)
