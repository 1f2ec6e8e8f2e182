"""Every table of the hub, imported in one place so the metadata is complete
(for Alembic and for the test that compares the migrations with the models)."""

from hdh.audit.models import AuditChainState, AuditEvent
from hdh.catalog.models import CatalogSchema, Dataset, DatasetVersion
from hdh.crypto.models import DataKey
from hdh.hubinfo import HubInfo
from hdh.policy.models import PolicyRule
from hdh.storage.models import Location, StoredObject

__all__ = [
    "AuditChainState",
    "AuditEvent",
    "CatalogSchema",
    "DataKey",
    "Dataset",
    "DatasetVersion",
    "HubInfo",
    "Location",
    "PolicyRule",
    "StoredObject",
]
