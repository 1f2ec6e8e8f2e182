"""Every table of the hub, imported in one place so the metadata is complete
(for Alembic and for the test that compares the migrations with the models)."""

from hdh.airlock.models import ExportFile, ExportRequest, ExportReview, ReleasedCell
from hdh.audit.models import AuditChainState, AuditEvent
from hdh.catalog.models import CatalogSchema, Dataset, DatasetVersion
from hdh.crypto.models import DataKey
from hdh.governance.models import (
    Job,
    Objection,
    Permit,
    Project,
    ProjectExtract,
    ProjectMember,
    ProjectTable,
)
from hdh.hubinfo import HubInfo
from hdh.identity.models import ApiToken, User
from hdh.migrate.models import Migration, MigrationObject
from hdh.policy.models import PolicyRule
from hdh.storage.models import Location, StoredObject

__all__ = [
    "ApiToken",
    "AuditChainState",
    "AuditEvent",
    "CatalogSchema",
    "DataKey",
    "Dataset",
    "DatasetVersion",
    "ExportFile",
    "ExportRequest",
    "ExportReview",
    "HubInfo",
    "Job",
    "Location",
    "Migration",
    "MigrationObject",
    "Objection",
    "Permit",
    "PolicyRule",
    "Project",
    "ProjectExtract",
    "ProjectMember",
    "ProjectTable",
    "ReleasedCell",
    "StoredObject",
    "User",
]
