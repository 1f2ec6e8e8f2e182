"""``/api/v1``: the operators' operations (hub status, keys, storage locations and their
objects, the residency policy)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
