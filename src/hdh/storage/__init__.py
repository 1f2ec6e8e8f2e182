"""Storage locations: where the hub keeps objects, and under which jurisdiction."""

from hdh.storage.models import Location

__all__ = ["Location"]
