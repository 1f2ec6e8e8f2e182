"""Reading data as a project: through a permit, with the project's own pseudonyms.

``read_for_project`` is the dataset-reading path of a researcher: ``permits.access``
decides (or refuses, audited), then the permitted version is read with only the allowed
columns and rows, and every pseudonymised column is mapped to the project's pseudonyms:
``HMAC-SHA-256(project key, anchor pseudonym)``, where the anchor is the hub's oldest
pseudonymisation secret, and the project key is derived from it and the project's
name. A version pseudonymised under a newer secret (after ``hdh key
rotate-pseudonyms``) carries links, encrypted, from each of its pseudonyms to the
anchor's, made while the identifiers passed through ingestion: its pseudonyms are
first mapped to the anchor's. So two projects given the same dataset see different
pseudonyms for the same person, and their extracts cannot be joined; inside one
project, every dataset joins on them, whichever secret it was pseudonymised under.
Each read is audited (who, project, dataset, version, rows returned).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hdh import audit
from hdh.errors import IntegrityError
from hdh.governance.objections import both, keep_mask, objected
from hdh.governance.permits import Access, access
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.ingest.pseudonymise import PSEUDONYM_HEX
from hdh.ingest.service import VersionInfo, read_part, version_info
from hdh.storage.locations import get_location
from hdh.storage.objects import backend_for, read_object


def project_key(hub: Hub, project: str, secret_version: int) -> bytes:
    _, secret = hub.keys.pseudonym_secret(secret_version)
    return hmac.new(secret, b"hdh-project-pseudonyms:" + project.encode(), hashlib.sha256).digest()


class _ProjectPseudonyms:
    """Maps hub pseudonyms to a project's, computing each distinct value once per read."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._hub = pa.array([], pa.string())
        self._project = pa.array([], pa.string())

    def __call__(self, column: pa.ChunkedArray | pa.Array) -> pa.Array:
        values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        distinct = pc.unique(values).drop_null()
        fresh = distinct.filter(pc.invert(pc.is_in(distinct, value_set=self._hub)))
        if len(fresh):
            mapped = [
                hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
                for value in fresh.to_pylist()
            ]
            self._hub = pa.concat_arrays([self._hub, fresh])
            self._project = pa.concat_arrays([self._project, pa.array(mapped, pa.string())])
        return pc.take(self._project, pc.index_in(values, value_set=self._hub))


class _Links:
    """A version's pseudonyms to the anchor's, from its (encrypted) links object."""

    def __init__(self, table: pa.Table) -> None:
        self._mine = table.column("pseudonym").combine_chunks()
        self._anchor = table.column("anchor").combine_chunks()

    def __call__(self, values: pa.ChunkedArray | pa.Array, chosen: VersionInfo) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        positions = pc.index_in(values, value_set=self._mine)
        unlinked = pc.and_(pc.is_null(positions), pc.is_valid(values))
        if pc.any(unlinked).as_py():
            raise IntegrityError(
                f"version {chosen.number} of {chosen.dataset!r} has pseudonyms without a "
                "link to the anchor secret",
                hint="its links object does not match its parts; restore them from a backup",
            )
        return pc.take(self._anchor, positions)


def _anchor_links(hub: Hub, location: str, linked: dict[str, object]) -> _Links:
    data = b"".join(bytes(c) for c in read_object(hub, location, str(linked["key"])))
    return _Links(pq.read_table(pa.BufferReader(data)))


def permitted_parts(
    hub: Hub, project: str, allowed: Access, chosen: VersionInfo
) -> Iterator[pa.Table]:
    """The permitted columns and rows of each part of ``chosen``, identifiers as the
    project's pseudonyms, without people who object. Not audited: the callers are."""
    with hub.read() as session:
        backend = backend_for(hub, get_location(session, chosen.location))
    columns = list(allowed.columns)
    rules = chosen.manifest.get("rules", {})
    secret_version = chosen.manifest.get("pseudonym_secret_version")
    # Identifier columns are read even when not permitted, to leave out the rows of
    # people who object; they are dropped before anything is returned.
    pseudonymised = [
        c["name"] for c in chosen.manifest["schema"] if rules.get(c["name"]) == "pseudonymise"
    ]
    excluded = objected(hub, int(secret_version)) if secret_version is not None else frozenset()
    # Every version maps to the project's pseudonyms through the anchor (the oldest
    # secret): a version made under a newer secret first goes through its links, and
    # people who object are also found by their anchor pseudonym.
    linked = chosen.manifest.get("pseudonym_links")
    anchor = int(linked["anchor_version"]) if linked else secret_version
    to_anchor = _anchor_links(hub, chosen.location, linked) if linked else None
    excluded_anchor = objected(hub, int(linked["anchor_version"])) if linked else frozenset()
    wanted = columns + [
        c for c in pseudonymised if c not in columns and (excluded or excluded_anchor)
    ]
    mapping = (
        _ProjectPseudonyms(project_key(hub, project, int(anchor))) if anchor is not None else None
    )
    for part in chosen.manifest["parts"]:
        table = read_part(hub, backend, part, columns=wanted)
        keep = keep_mask(table, pseudonymised, excluded)
        if to_anchor is not None and excluded_anchor:
            anchored = pa.table({c: to_anchor(table.column(c), chosen) for c in pseudonymised})
            keep = both(keep, keep_mask(anchored, pseudonymised, excluded_anchor))
        if keep is not None:
            table = table.filter(keep)
        if allowed.expression is not None:
            table = table.filter(allowed.expression)
        table = table.select(columns)
        if mapping is not None:
            for name in columns:
                if rules.get(name) == "pseudonymise":
                    index = table.schema.get_field_index(name)
                    values = table.column(name)
                    if to_anchor is not None:
                        values = to_anchor(values, chosen)
                    table = table.set_column(index, name, mapping(values))
        yield table


def read_for_project(
    hub: Hub, principal: Principal, project: str, dataset: str, *, purpose: str = ""
) -> tuple[pa.Table, Access]:
    """The rows and columns of ``dataset`` that ``project``'s permit allows, with the
    project's pseudonyms; PermissionDenied (audited) without a usable permit."""
    allowed = access(hub, principal, project, dataset, purpose=purpose)
    chosen = version_info(hub, dataset, allowed.version)
    pieces = list(permitted_parts(hub, project, allowed, chosen))
    table = pa.concat_tables(pieces) if pieces else pa.table({})
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="data.read",
            object_type="dataset_version",
            object_id=f"{dataset}@{chosen.number}",
            details={
                "project": project,
                "permit": allowed.permit,
                "rows": table.num_rows,
                "columns": list(allowed.columns),
                **({"purpose": purpose} if purpose else {}),
            },
        )
    return table, allowed
