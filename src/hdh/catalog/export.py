"""The hub's catalogue, read from its database, as HealthDCAT-AP JSON-LD (see ``dcat``).

Only what the catalogue may show goes out: dataset metadata, column names and types, and
each version's row count as its profile shows it (suppressed under the small-count
threshold). Datasets without a version are left out: a DCAT dataset needs a distribution.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hdh.catalog.dcat import (
    ColumnDescription,
    DatasetDescription,
    HubDescription,
    VersionDescription,
    healthdcat_document,
)
from hdh.catalog.models import CatalogSchema, Dataset, DatasetVersion
from hdh.errors import ConfigError
from hdh.hub import Hub


def export_healthdcat(hub: Hub) -> dict[str, Any]:
    settings = hub.settings.catalog
    description = HubDescription(
        base_uri=settings.base_uri,
        title=settings.title or f"{hub.settings.name}: health data catalogue",
        description=settings.description
        or f"The datasets held by the health data hub {hub.settings.name}.",
        publisher=settings.publisher,
        contact_email=settings.contact_email,
        language=settings.language,
        hdab=settings.access_body,
    )
    entries: list[DatasetDescription] = []
    with hub.read() as session:
        schemas = {row.name: row.descriptor for row in session.scalars(select(CatalogSchema))}
        versions: dict[int, list[DatasetVersion]] = {}
        for version in session.scalars(select(DatasetVersion).order_by(DatasetVersion.number)):
            versions.setdefault(version.dataset_id, []).append(version)
        for dataset in session.scalars(select(Dataset).order_by(Dataset.name)):
            found = versions.get(dataset.id)
            if not found:
                continue
            latest = found[-1].manifest
            described = {
                str(f.get("name")): str(f.get("description") or "")
                for f in schemas.get(dataset.schema_name or "", {}).get("fields", [])
            }
            entries.append(
                DatasetDescription(
                    name=dataset.name,
                    title=dataset.title or dataset.name,
                    description=dataset.description,
                    producer=dataset.producer,
                    frequency=dataset.frequency,
                    legal_basis=dataset.legal_basis,
                    sensitivity=dataset.data_class,
                    keywords=tuple(dataset.keywords or ()),
                    created=dataset.created_at,
                    modified=dataset.updated_at or found[-1].created_at,
                    rows=latest.get("profile", {}).get("rows"),
                    columns=tuple(
                        ColumnDescription(c["name"], c["type"], described.get(c["name"], ""))
                        for c in latest.get("schema", [])
                    ),
                    versions=tuple(
                        VersionDescription(
                            number=v.number,
                            rows=v.manifest.get("profile", {}).get("rows"),
                            byte_size=sum(p["size"] for p in v.manifest["parts"]),
                            created=v.created_at,
                        )
                        for v in found
                    ),
                    collection=dataset.collection,
                )
            )
    try:
        return healthdcat_document(description, entries)
    except ValueError as exc:  # what the settings' own checks let through
        raise ConfigError(
            f"the catalogue cannot be written as HealthDCAT-AP: {exc}",
            hint="correct the [catalog] settings in hub.toml (or their HDH_CATALOG_* "
            "variables), or the dataset named with hdh dataset describe",
        ) from exc
