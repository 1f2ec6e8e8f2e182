"""Erasure: a person's rows removed from every stored version.

``erase_person`` finds the person's pseudonym under each secret version (from their
identifier, or given), and rewrites every part of every dataset version whose
pseudonymised columns hold it: the kept rows go into a new encrypted part, the version's
manifest (rows, parts, profile, and an ``erasures`` entry with the count) is updated,
and its encrypted copy next to the parts is replaced. Quarantined rows, which are kept
as the source gave them, are matched by hashing their identifier values. The database
changes and the ``person.erase`` audit event are one transaction; the old parts are
deleted from the location only after it commits. The person's objection is recorded too,
so that no later version brings the rows back. Every project extract of an affected
dataset is deleted (``hdh.workspace.extracts``); the next query rebuilds it without the
person. Tables a project saved from its queries are not rewritten.

Versions are otherwise immutable: an erasure is the one legal exception, and it leaves a
trace in the manifest and the audit trail (counts and pseudonyms, never the identifier).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import delete, select

from hdh import audit, authz
from hdh.catalog.models import Dataset, DatasetVersion
from hdh.catalog.profile import profile
from hdh.crypto.models import DataKey
from hdh.errors import Conflict, HubError
from hdh.governance.objections import keep_mask, person_pseudonyms, record_objection
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.ingest.pseudonymise import Pseudonymiser
from hdh.ingest.service import read_part
from hdh.storage.backend import Backend
from hdh.storage.locations import get_location
from hdh.storage.models import Location, StoredObject
from hdh.storage.objects import backend_for, read_object, seal, store_parquet


@dataclass
class ErasureReport:
    pseudonym: str
    versions: dict[str, int] = field(default_factory=dict)  # "dataset@N" -> rows removed
    quarantined: dict[str, int] = field(default_factory=dict)
    #: Project extracts of the affected datasets deleted (rebuilt by the next query).
    extracts: int = 0

    @property
    def rows(self) -> int:
        return sum(self.versions.values()) + sum(self.quarantined.values())


def _write(
    hub: Hub, backend: Backend, key: str, table: pa.Table, sensitivity: dict[str, str]
) -> dict[str, Any]:
    stored = store_parquet(hub, backend, key, table, sensitivity)
    # The KEK versions are recorded with each file written again: they may be newer
    # than the version's own (``hdh.crypto.service.parquet_keks``).
    return {
        "key": key, "rows": table.num_rows, "size": stored.size, "sha256": stored.sha256,
        "kek_versions": stored.keks,
    }  # fmt: skip


def _parts(hub: Hub, backend: Backend, parts: list[dict[str, Any]]) -> Iterator[pa.Table]:
    for part in parts:
        yield read_part(hub, backend, part)


def erase_person(
    hub: Hub,
    principal: Principal,
    *,
    identifier: str | None = None,
    pseudonym: str | None = None,
    secret_version: int | None = None,
    note: str = "",
) -> ErasureReport:
    authz.check(hub, principal, "person.erase")
    targets = person_pseudonyms(hub, identifier, pseudonym, secret_version)
    report = ErasureReport(pseudonym=targets[max(targets)])
    with hub.read() as session:
        rows = session.execute(
            select(DatasetVersion, Dataset.name, Location.name)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .join(Location, Location.id == DatasetVersion.location_id)
            .order_by(Dataset.name, DatasetVersion.number)
        ).all()
        work = [(v.id, name, v.number, location, dict(v.manifest)) for v, name, location in rows]
    written: list[tuple[str, str]] = []  # (location, key) of new objects, removed on failure
    superseded: list[tuple[str, str]] = []
    # (version id, location, new manifest, parts written, objects replaced, the sealed
    # manifest, the sealed links or None)
    updates: list[tuple[int, str, dict[str, Any], list[dict[str, Any]], list[str], Any, Any]] = []
    try:
        for version_id, name, number, location, manifest in work:
            secret = manifest.get("pseudonym_secret_version")
            if secret is None or int(secret) not in targets:
                continue
            target = frozenset({targets[int(secret)]})
            rules = manifest.get("rules", {})
            columns = [
                c["name"] for c in manifest["schema"] if rules.get(c["name"]) == "pseudonymise"
            ]
            with hub.read() as session:
                backend = backend_for(hub, get_location(session, location))
            suffix = uuid.uuid4().hex[:8]
            new_parts, old_keys, removed = [], [], 0
            added: list[dict[str, Any]] = []
            schema = None
            for part in manifest["parts"]:
                table = read_part(hub, backend, part)
                schema = table.schema
                keep = keep_mask(table, columns, target)
                if keep is None:
                    new_parts.append(part)
                    continue
                kept = table.filter(keep)
                removed += table.num_rows - kept.num_rows
                key = part["key"].removesuffix(".parquet") + f"-e{suffix}.parquet"
                new_part = _write(hub, backend, key, kept, manifest["column_keys"])
                new_parts.append(new_part)
                added.append(new_part)
                written.append((location, key))
                old_keys.append(part["key"])
            quarantine = (manifest.get("validation") or {}).get("quarantine")
            quarantined_removed = 0
            if quarantine:
                raw = read_part(hub, backend, quarantine)
                hashed = Pseudonymiser({}, hub.keys.pseudonym_secret(int(secret))[1], int(secret))
                hit = None
                for column in (
                    c for c in rules if rules[c] == "pseudonymise" and c in raw.column_names
                ):
                    values = raw.column(column).to_pylist()
                    found = pa.array(
                        [v is not None and hashed.pseudonym(str(v)) in target for v in values]
                    )
                    hit = found if hit is None else pc.or_(hit, found)
                if hit is not None and pc.any(hit).as_py():
                    kept = raw.filter(pc.invert(hit))
                    quarantined_removed = raw.num_rows - kept.num_rows
                    key = quarantine["key"].removesuffix(".parquet") + f"-e{suffix}.parquet"
                    sensitivity = dict.fromkeys(kept.schema.names, "identifiers")
                    quarantine = _write(hub, backend, key, kept, sensitivity)
                    added.append(quarantine)
                    written.append((location, key))
                    old_keys.append(manifest["validation"]["quarantine"]["key"])
            # A version made under a newer secret links each pseudonym to the anchor's:
            # the person's link goes too.
            sealed_links = None
            linked = manifest.get("pseudonym_links")
            if linked:
                raw_links = b"".join(bytes(c) for c in read_object(hub, location, linked["key"]))
                pairs = pq.read_table(pa.BufferReader(raw_links))
                hit = pc.is_in(pairs.column("pseudonym"), value_set=pa.array(sorted(target)))
                if pc.any(hit).as_py():
                    kept_pairs = pairs.filter(pc.invert(hit))
                    buffer = pa.BufferOutputStream()
                    pq.write_table(kept_pairs, buffer)
                    key = linked["key"].removesuffix(".parquet") + f"-e{suffix}.parquet"
                    sealed_links = seal(hub, backend, key, buffer.getvalue().to_pybytes(),
                                        sensitivity="identifiers")  # fmt: skip
                    written.append((location, key))
                    old_keys.append(linked["key"])
                    manifest["pseudonym_links"] = {
                        **linked, "key": key, "size": sealed_links.stored.size,
                        "sha256": sealed_links.stored.sha256, "pairs": kept_pairs.num_rows,
                    }  # fmt: skip
            if not old_keys:
                continue
            manifest["parts"] = new_parts
            manifest["rows"] = manifest["rows"] - removed
            if quarantined_removed:
                manifest["validation"] = {**manifest["validation"], "quarantine": quarantine}
            manifest["erasures"] = [
                *manifest.get("erasures", []),
                {"at": audit.utc_timestamp(), "rows": removed, "quarantined": quarantined_removed},
            ]
            assert schema is not None
            manifest["profile"] = profile(schema, partial(_parts, hub, backend, new_parts))
            manifest_key = manifest["parts"][0]["key"].rsplit("/", 1)[0] + "/manifest.json"
            sealed = seal(
                hub,
                backend,
                manifest_key,
                json.dumps(manifest, sort_keys=True, default=str).encode("utf-8"),
                sensitivity="clinical",
            )
            updates.append((version_id, location, manifest, added, old_keys, sealed, sealed_links))
            superseded += [(location, k) for k in old_keys]
            report.versions[f"{name}@{number}"] = removed
            if quarantined_removed:
                report.quarantined[f"{name}@{number}"] = quarantined_removed
        now = audit.utc_timestamp()
        with hub.transaction() as session:
            for version_id, location, manifest, added, old_keys, sealed, links in updates:
                row = session.get(DatasetVersion, version_id)
                assert row is not None
                row.manifest = manifest
                row.rows = manifest["rows"]
                place = get_location(session, location)
                replaced = session.scalars(
                    select(StoredObject).where(
                        StoredObject.location_id == place.id,
                        StoredObject.key.in_([*old_keys, sealed.stored.key]),
                    )
                ).all()
                old_data_keys = [o.data_key_id for o in replaced if o.data_key_id is not None]
                for stored_object in replaced:
                    session.delete(stored_object)
                session.flush()
                if old_data_keys:  # the old manifest's key: nothing else uses it
                    session.execute(delete(DataKey).where(DataKey.id.in_(old_data_keys)))
                for envelope in (sealed, links):
                    if envelope is None:
                        continue
                    session.add(envelope.data_key)
                    session.add(
                        StoredObject(
                            location_id=place.id, key=envelope.stored.key,
                            size=envelope.stored.size, sha256=envelope.stored.sha256,
                            plain_size=envelope.plain_size, data_class="health",
                            format="envelope", data_key_id=envelope.data_key.id,
                            created_at=now,
                        )
                    )  # fmt: skip
                for part in added:
                    session.add(
                        StoredObject(
                            location_id=place.id, key=part["key"], size=part["size"],
                            sha256=part["sha256"], plain_size=0, data_class="health",
                            format="parquet", data_key_id=None, created_at=now,
                        )
                    )  # fmt: skip
            audit.record(
                session,
                actor=principal.actor,
                action="person.erase",
                object_type="person",
                object_id=report.pseudonym,
                details={
                    "versions": report.versions,
                    "quarantined": report.quarantined,
                    **({"note": note} if note else {}),
                },
            )
    except BaseException:
        for location, key in written:
            with contextlib.suppress(HubError), hub.read() as session:
                backend_for(hub, get_location(session, location)).delete(key)
        raise
    for location, key in superseded:
        with contextlib.suppress(HubError), hub.read() as session:
            backend_for(hub, get_location(session, location)).delete(key)
    from hdh.workspace.extracts import drop_extracts  # loads the scanning libraries

    for name in sorted({version.rpartition("@")[0] for version in report.versions}):
        report.extracts += drop_extracts(hub, name)
    with contextlib.suppress(Conflict):  # already objecting
        record_objection(
            hub,
            principal,
            identifier=identifier,
            pseudonym=None if identifier is not None else report.pseudonym,
            secret_version=None if identifier is not None else max(targets),
            note=note,
        )
    return report
