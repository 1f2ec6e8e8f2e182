"""``/api/v1``: the data stewards' operations (catalogue schemas and export, dataset
ingestion, descriptions and quarantine, people's objections and erasure)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
