"""The residency policy: which locations may hold which class of data.

A rule governs one data class (``health``, ``other``, or ``*`` for all) and says in
which countries (``EU`` stands for the member states), with which certifications, and
whether with exposure to non-EU law, such data may be placed. Every rule that governs a
class must hold. :func:`check_placement` is called before any byte of a write or a copy
moves; a refusal names the rule and the reason, and is audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hdh import audit
from hdh.errors import InvalidInput, NotFound, PermissionDenied
from hdh.policy.models import PolicyRule
from hdh.storage.locations import EU, TOKEN
from hdh.storage.models import Location

DATA_CLASSES = ("health", "other")
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class PlacementRefused(PermissionDenied):
    code = "placement_refused"


@dataclass(frozen=True)
class Violation:
    rule: str
    reason: str


def check_data_class(data_class: str) -> str:
    if data_class not in DATA_CLASSES:
        raise InvalidInput(
            f"{data_class!r} is not a data class",
            hint=f"use one of {', '.join(DATA_CLASSES)}",
        )
    return data_class


def _country_allowed(country: str, allowed: list[str]) -> bool:
    return not allowed or any(country == a or (a == "EU" and country in EU) for a in allowed)


def violations(rules: list[PolicyRule], location: Location, data_class: str) -> list[Violation]:
    """Every way placing ``data_class`` data on ``location`` breaks ``rules``."""
    found = []
    for rule in rules:
        if rule.data_class not in ("*", data_class):
            continue
        if not _country_allowed(location.country, list(rule.countries)):
            found.append(
                Violation(
                    rule.name,
                    f"location {location.name!r} is in {location.country}, and {data_class} "
                    f"data may only be in {', '.join(rule.countries)}",
                )
            )
        missing = sorted(set(rule.certifications) - set(location.certifications))
        if missing:
            found.append(
                Violation(
                    rule.name,
                    f"location {location.name!r} does not declare the certification "
                    f"{', '.join(missing)} that {data_class} data requires",
                )
            )
        if rule.forbid_extraterritorial and location.extraterritorial:
            found.append(
                Violation(
                    rule.name,
                    f"location {location.name!r} is exposed to "
                    f"{', '.join(location.extraterritorial)}, and {data_class} data may not be "
                    "placed where non-EU law reaches",
                )
            )
    return found


def list_rules(session: Session) -> list[PolicyRule]:
    return list(session.scalars(select(PolicyRule).order_by(PolicyRule.name)))


def check_placement(
    session: Session, location: Location, data_class: str, *, actor: str, what: str
) -> PlacementRefused | None:
    """None if the policy allows ``data_class`` data on ``location``; otherwise the
    :class:`PlacementRefused` error to raise, after recording the refusal in ``session``.

    The caller commits ``session`` and then raises the error: the refusal is audited
    even though nothing is written (see :func:`hdh.storage.objects.write_object`).
    ``what`` names the object, for the audit trail and the message.
    """
    check_data_class(data_class)
    found = violations(list_rules(session), location, data_class)
    if not found:
        return None
    audit.record(
        session,
        actor=actor,
        action="placement.refused",
        object_type="location",
        object_id=location.name,
        outcome="denied",
        details={
            "object": what,
            "data_class": data_class,
            "rules": [{"rule": v.rule, "reason": v.reason} for v in found],
        },
    )
    first = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return PlacementRefused(
        f"policy rule {first.rule!r} refuses {what}: {first.reason}{more}",
        hint="choose a location the policy allows (hdh policy show), or change the policy",
    )


def set_rule(
    session: Session,
    name: str,
    *,
    data_class: str,
    countries: list[str],
    certifications: list[str],
    forbid_extraterritorial: bool,
    actor: str,
) -> PolicyRule:
    """Create or replace rule ``name`` (audited with its old and new content)."""
    if not RULE_NAME.match(name):
        raise InvalidInput(
            f"rule name {name!r} is not allowed",
            hint="use lower-case letters, digits, '-' or '_'",
        )
    if data_class != "*":
        check_data_class(data_class)
    normalised = sorted({c.upper() for c in countries})
    for country in normalised:
        if not (country == "EU" or (len(country) == 2 and country.isalpha())):
            raise InvalidInput(
                f"{country!r} is not a country code",
                hint="use ISO 3166 codes such as FR, or EU for the member states",
            )
    for certification in certifications:
        if not TOKEN.match(certification.lower()):
            raise InvalidInput(
                f"{certification!r} is not a valid certification name",
                hint="use the lower-case words locations declare, such as hds or secnumcloud",
            )
    rule = session.scalar(select(PolicyRule).where(PolicyRule.name == name))
    before = describe_rule(rule) if rule is not None else None
    if rule is None:
        rule = PolicyRule(name=name, created_at=audit.utc_timestamp())
        session.add(rule)
    rule.data_class = data_class
    rule.countries = normalised
    rule.certifications = sorted({c.lower() for c in certifications})
    rule.forbid_extraterritorial = forbid_extraterritorial
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="policy.set",
        object_type="policy_rule",
        object_id=name,
        details={"before": before, "after": describe_rule(rule)},
    )
    return rule


def remove_rule(session: Session, name: str, *, actor: str) -> None:
    rule = session.scalar(select(PolicyRule).where(PolicyRule.name == name))
    if rule is None:
        raise NotFound(f"there is no policy rule {name!r}", hint="see them with hdh policy show")
    before = describe_rule(rule)
    session.delete(rule)
    audit.record(
        session,
        actor=actor,
        action="policy.remove",
        object_type="policy_rule",
        object_id=name,
        details={"before": before},
    )


def describe_rule(rule: PolicyRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "data_class": rule.data_class,
        "countries": list(rule.countries),
        "certifications": list(rule.certifications),
        "forbid_extraterritorial": rule.forbid_extraterritorial,
    }


def placement_table(session: Session) -> list[dict[str, Any]]:
    """For each location and data class: allowed, or the reasons it is not."""
    rules = list_rules(session)
    rows = []
    for location in session.scalars(select(Location).order_by(Location.name)):
        for data_class in DATA_CLASSES:
            found = violations(rules, location, data_class)
            rows.append(
                {
                    "location": location.name,
                    "data_class": data_class,
                    "allowed": not found,
                    "reasons": [f"{v.rule}: {v.reason}" for v in found],
                }
            )
    return rows
