"""Spotting columns that look like direct identifiers, or free text, before publication.

A column is flagged by its name (``ssn``, ``nir``, ``first``, ``email``, ``lat``…) or by
its values (a sample of the first rows matching e-mail, phone, French NIR, US SSN
patterns). Flagged identifiers are refused unless the steward gives the column a rule
(keeping it is a rule too, made knowingly). Free text is only warned about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

NAME_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("a national id", re.compile(r"(^|_)(nir|nss|ssn|insee|numsecu|socialsecurity)(_|$)")),
    (
        "a person's name",
        # "name" alone, or a person's: concept_name or care_site_name are not people.
        re.compile(
            r"(^|_)(first|last|firstname|lastname|surname|maiden|prenom|fullname)(_|$)"
            r"|^(name|nom)(_|$)"
            r"|(^|_)(first|last|given|family|full|maiden|birth|patient|person|provider|"
            r"user|contact|doctor|physician)_?(name|nom)(_|$)"
        ),
    ),
    ("contact details", re.compile(r"(^|_)(phone|telephone|tel|mobile|email|mail|courriel)(_|$)")),
    ("an address", re.compile(r"(^|_)(address|adresse|street|rue)(_|$)")),
    ("geo-coordinates", re.compile(r"(^|_)(lat|lon|lng|latitude|longitude)(_|$)")),
    (
        "a document number",
        re.compile(r"(^|_)(passport|drivers|driverslicense|licence|license)(_|$)"),
    ),
]

VALUE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an e-mail address", re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)),
    (
        "national id (NIR)",
        re.compile(
            r"^[12]\s?\d{2}\s?(0[1-9]|1[0-2])\s?(\d{2}|2[ab])\s?\d{3}\s?\d{3}(\s?\d{2})?$",
            re.IGNORECASE,
        ),
    ),
    ("a national id (SSN)", re.compile(r"^\d{3}-\d{2}-\d{4}$")),
    # Not a date such as 2024-03-01, which has the same characters.
    ("a phone number", re.compile(r"^(?!\d{4}-\d{2}-\d{2})\+?\d[\d .()-]{8,}\d$")),
]


@dataclass(frozen=True)
class Finding:
    column: str
    kind: str  # "identifier" or "free text"
    reason: str


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def scan(batch: pa.RecordBatch, sample: int = 1000) -> list[Finding]:
    findings = []
    head = batch.slice(0, sample)
    for name, column in zip(head.schema.names, head.columns, strict=True):
        normal = _normalise(name)
        flagged = next((label for label, p in NAME_PATTERNS if p.search(normal)), None)
        if flagged:
            findings.append(Finding(name, "identifier", f"its name suggests {flagged}"))
            continue
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        values = [v for v in column.to_pylist() if v]
        if not values:
            continue
        for label, pattern in VALUE_PATTERNS:
            hits = sum(1 for v in values if pattern.match(v.strip()))
            if hits >= max(1, len(values) // 2):
                findings.append(
                    Finding(
                        name,
                        "identifier",
                        f"{hits} of {len(values)} sampled values look like {label}",
                    )
                )
                break
        else:
            long_text = [v for v in values if len(v) > 40 and " " in v.strip()]
            if len(long_text) >= max(1, len(values) // 2):
                findings.append(
                    Finding(name, "free text", "it holds free text, which may name people")
                )
    return findings
