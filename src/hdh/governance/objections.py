"""The right to object: a person's data is left out of new versions and project reads.

A steward records an objection by one of the person's identifiers (for example their
NIR, as it appears in the source files): the hub computes its pseudonym under every
pseudonymisation secret version it holds and keeps only those pseudonyms, never the
identifier. From then on, ``hdh dataset ingest`` drops the rows whose pseudonymised
columns hold one of them (the manifest counts them), and a project's reads leave them
out. Versions published before stay as they are until the person's rows are erased.

After a rotation of the secret, an objection recorded before it has no pseudonym under
the new secret: versions made under it are checked through their links to the anchor
(the oldest secret), on the person's anchor pseudonym.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from hdh import audit, authz
from hdh.errors import Conflict, InvalidInput
from hdh.governance.models import Objection
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.ingest.pseudonymise import PSEUDONYM_HEX, Pseudonymiser


@dataclass
class ObjectionInfo:
    id: int
    pseudonym: str
    secret_version: int
    recorded_by: str
    recorded_at: str
    note: str


def record_objection(
    hub: Hub,
    principal: Principal,
    *,
    identifier: str | None = None,
    pseudonym: str | None = None,
    secret_version: int | None = None,
    note: str = "",
) -> list[ObjectionInfo]:
    """Record that a person objects, by ``identifier`` (hashed here under every secret
    version) or by a hub ``pseudonym`` of a given ``secret_version``."""
    authz.check(hub, principal, "person.object")
    wanted = [
        (p, v) for v, p in person_pseudonyms(hub, identifier, pseudonym, secret_version).items()
    ]
    now = audit.utc_timestamp()
    with hub.transaction() as session:
        existing = {
            (o.pseudonym, o.secret_version)
            for o in session.scalars(
                select(Objection).where(Objection.pseudonym.in_([p for p, _ in wanted]))
            )
        }
        fresh = [w for w in wanted if w not in existing]
        if not fresh:
            raise Conflict("this person's objection is already recorded", hint="nothing to do")
        rows = [
            Objection(pseudonym=p, secret_version=v, recorded_by=principal.actor,
                      recorded_at=now, note=note)
            for p, v in fresh
        ]  # fmt: skip
        session.add_all(rows)
        session.flush()
        audit.record(
            session,
            actor=principal.actor,
            action="person.object",
            object_type="person",
            # The pseudonym, not the identifier: the audit log is read by auditors.
            object_id=fresh[-1][0],
            details={"secret_versions": [v for _, v in fresh], **({"note": note} if note else {})},
        )
        return [_info(o) for o in rows]


def person_pseudonyms(
    hub: Hub, identifier: str | None, pseudonym: str | None, secret_version: int | None
) -> dict[int, str]:
    """secret version -> the person's hub pseudonym: from their ``identifier`` under every
    secret version the hub holds, or the given ``pseudonym`` of ``secret_version``."""
    if (identifier is None) == (pseudonym is None):
        raise InvalidInput(
            "give the person's identifier or a hub pseudonym, one of the two",
            hint="--identifier-stdin (the value read from standard input) or --pseudonym",
        )
    versions = hub.keys.pseudonym_secret_versions()
    if identifier is not None:
        if not identifier.strip():
            raise InvalidInput("the identifier is empty", hint="give the person's identifier")
        return {
            v: Pseudonymiser({}, hub.keys.pseudonym_secret(v)[1], v).pseudonym(identifier)
            for v in versions
        }
    assert pseudonym is not None
    value = pseudonym.strip().lower()
    if len(value) != PSEUDONYM_HEX or any(c not in "0123456789abcdef" for c in value):
        raise InvalidInput(
            f"{pseudonym!r} is not a hub pseudonym",
            hint=f"a pseudonym is {PSEUDONYM_HEX} hexadecimal characters",
        )
    version = secret_version if secret_version is not None else max(versions)
    if version not in versions:
        raise InvalidInput(
            f"there is no pseudonymisation secret version {version}",
            hint=f"the versions are {', '.join(map(str, versions))}",
        )
    return {version: value}


def _info(o: Objection) -> ObjectionInfo:
    return ObjectionInfo(o.id, o.pseudonym, o.secret_version, o.recorded_by, o.recorded_at, o.note)


def list_objections(hub: Hub, principal: Principal) -> list[ObjectionInfo]:
    authz.check(hub, principal, "person.object")
    with hub.read() as session:
        return [_info(o) for o in session.scalars(select(Objection).order_by(Objection.id))]


def objected(hub: Hub, secret_version: int) -> frozenset[str]:
    """The hub pseudonyms, under ``secret_version``, of the people who object."""
    with hub.read() as session:
        return frozenset(
            session.scalars(
                select(Objection.pseudonym).where(Objection.secret_version == secret_version)
            )
        )


def keep_mask(
    table: pa.Table | pa.RecordBatch, columns: list[str], excluded: frozenset[str]
) -> pa.Array | None:
    """A mask of the rows to keep (None when every row is kept): rows whose pseudonymised
    ``columns`` hold an excluded pseudonym go."""
    if not excluded or not columns:
        return None
    value_set = pa.array(sorted(excluded), pa.string())
    hit = None
    for name in columns:
        found = pc.fill_null(pc.is_in(table.column(name), value_set=value_set), False)
        hit = found if hit is None else pc.or_(hit, found)
    if hit is None or not pc.any(hit).as_py():
        return None
    return pc.invert(hit)


def both(first: pa.Array | None, second: pa.Array | None) -> pa.Array | None:
    """Two :func:`keep_mask` results as one (None: every row kept)."""
    if first is None:
        return second
    if second is None:
        return first
    return pc.and_(first, second)
