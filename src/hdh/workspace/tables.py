"""Tables saved inside a project: query results kept for later queries.

``hdh query PROJECT SQL --save NAME`` stores the whole result as one Parquet object
encrypted with the hub's keys (Parquet Modular Encryption), in the project's area
``projects/PROJECT/tables/`` on the location of the data it came from. Later queries
read it as ``saved.NAME``, and only while the permits of every dataset it was computed
from still hold: revoking or letting a permit expire cuts the tables derived from it
too. Saved tables stay inside the project; they leave it only through the airlock.
"""

from __future__ import annotations

import re
import uuid

import pyarrow as pa
from sqlalchemy import select

from hdh import audit
from hdh.catalog.models import Dataset, DatasetVersion
from hdh.crypto.parquet import read_encrypted
from hdh.errors import Conflict, InvalidInput, NotFound
from hdh.governance.models import ProjectTable
from hdh.governance.permits import access
from hdh.governance.projects import _project
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.storage.models import Location, StoredObject
from hdh.storage.objects import backend_for, get_verified, store_parquet

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def check_table_name(name: str) -> None:
    if not TABLE_NAME.match(name):
        raise InvalidInput(
            f"table name {name!r} is not allowed",
            hint="use up to 64 lower-case letters, digits or '_', starting with a letter",
        )


def save_table(
    hub: Hub,
    principal: Principal,
    project: str,
    name: str,
    table: pa.Table,
    *,
    sources: list[str],
    sql: str,
) -> None:
    """Store ``table`` as the project's saved table ``name`` (audited)."""
    check_table_name(name)
    with hub.read() as session:
        owner = _project(session, project)
        if session.scalar(
            select(ProjectTable.id).where(
                ProjectTable.project_id == owner.id, ProjectTable.name == name
            )
        ):
            raise Conflict(
                f"project {project!r} already has a saved table {name!r}",
                hint="choose another name",
            )
        # The project's area is on the location of the first dataset it read.
        location = session.scalar(
            select(Location)
            .join(DatasetVersion, DatasetVersion.location_id == Location.id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Dataset.name == sources[0])
            .order_by(DatasetVersion.number.desc())
            .limit(1)
        )
        assert location is not None
        session.expunge(location)
    backend = backend_for(hub, location)
    key = f"projects/{project}/tables/{name}-{uuid.uuid4().hex[:8]}.parquet"
    stored = store_parquet(hub, backend, key, table, dict.fromkeys(table.schema.names, "clinical"))
    now = audit.utc_timestamp()
    try:
        with hub.transaction() as session:
            owner = _project(session, project)
            session.add(
                ProjectTable(
                    project_id=owner.id, name=name, location_id=location.id, key=key,
                    size=stored.size, sha256=stored.sha256, rows=table.num_rows,
                    columns=table.schema.names, sources=sources, sql=sql[:20_000],
                    created_by=principal.actor, created_at=now, kek_versions=stored.keks,
                )
            )  # fmt: skip
            session.add(
                StoredObject(
                    location_id=location.id, key=key, size=stored.size, sha256=stored.sha256,
                    plain_size=0, data_class="health", format="parquet", data_key_id=None,
                    created_at=now,
                )
            )  # fmt: skip
            audit.record(
                session,
                actor=principal.actor,
                action="workspace.save",
                object_type="project",
                object_id=project,
                details={"table": name, "rows": table.num_rows, "sources": sources},
            )
    except BaseException:
        backend.delete(key)
        raise


def load_table(
    hub: Hub, principal: Principal, project: str, name: str
) -> tuple[pa.Table, list[str]]:
    """A saved table and the datasets it came from; refused (audited) when one of their
    permits no longer holds."""
    with hub.read() as session:
        owner = _project(session, project)
        row = session.scalar(
            select(ProjectTable).where(
                ProjectTable.project_id == owner.id, ProjectTable.name == name
            )
        )
        if row is None:
            raise NotFound(
                f"project {project!r} has no saved table {name!r}",
                hint="save one with hdh query PROJECT SQL --save NAME",
            )
        location = session.get(Location, row.location_id)
        assert location is not None
        session.expunge(location)
        key, digest, sources = row.key, row.sha256, list(row.sources)
    for source in sources:
        access(hub, principal, project, source, purpose=f"saved table {name}")
    raw = get_verified(
        backend_for(hub, location), key, digest,
        what=f"saved table {name!r} of {project!r}",
        hint="it was altered or replaced; save it again",
    )  # fmt: skip
    return read_encrypted(pa.BufferReader(raw), hub.keys), sources


def list_tables(hub: Hub, project: str) -> list[dict[str, object]]:
    with hub.read() as session:
        owner = _project(session, project)
        return [
            {
                "name": t.name,
                "rows": t.rows,
                "columns": list(t.columns),
                "sources": list(t.sources),
                "created_by": t.created_by,
                "created_at": t.created_at,
            }
            for t in session.scalars(
                select(ProjectTable)
                .where(ProjectTable.project_id == owner.id)
                .order_by(ProjectTable.name)
            )
        ]
