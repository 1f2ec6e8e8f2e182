"""The migration report: what moved, proven, in JSON and Markdown, with a signed summary.

The report lists every dataset and project area with its objects, bytes and how many of
them matched the hub's SHA-256 on the target, the waves and when each was switched, the
residency policy's verdict on the target for every data class moved, and what a fresh
listing of the target (or, with ``full``, a re-read of every byte) found.

``objects_sha256`` digests the sorted list of every object's key, size and SHA-256 (and,
in a re-keying migration, its copy's SHA-256): two parties holding the same list compute
the same digest. The summary (migration,
locations, counts, that digest, the verification) is signed with the hub's Ed25519 key
(``KeyProvider.signing_key``); the public key is printed in the report, so
:func:`check_report` (or any Ed25519 tool) confirms that the summary is the hub's and
unaltered.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from hdh import audit, policy
from hdh.errors import IntegrityError, InvalidInput
from hdh.hub import Hub
from hdh.identity.service import Principal
from hdh.migrate.models import MigrationObject
from hdh.migrate.service import migration_info, verify_migration
from hdh.storage.locations import get_location
from hdh.storage.models import StoredObject

FORMAT = "hdh-migration-report/1"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _area(key: str) -> tuple[str, str]:
    parts = key.split("/")
    if parts[0] in ("datasets", "quarantine") and len(parts) > 2:
        return "dataset", parts[1]
    if parts[0] in ("projects", "airlock", "releases") and len(parts) > 2:
        return "project", parts[1]
    return "other", parts[0]


def _location(session: Any, name: str) -> dict[str, Any]:
    loc = get_location(session, name)
    return {
        "name": loc.name, "kind": loc.kind, "country": loc.country,
        "certifications": list(loc.certifications),
        "extraterritorial": list(loc.extraterritorial),
    }  # fmt: skip


def migration_report(
    hub: Hub, principal: Principal, migration_id: int, *, full: bool = False
) -> dict[str, Any]:
    """The report of ``migration_id`` (see the module), signed; verification is run
    now (``full``: every byte re-read)."""
    checked = verify_migration(hub, principal, migration_id, full=full)
    info = migration_info(hub, principal, migration_id)
    with hub.read() as session:
        rows = session.execute(
            select(
                MigrationObject.key, MigrationObject.size, MigrationObject.sha256,
                MigrationObject.state, MigrationObject.attempts, MigrationObject.copied_at,
                MigrationObject.copied_by, MigrationObject.reused_bytes,
                MigrationObject.copy_sha256,
            )
            .where(MigrationObject.migration_id == migration_id)
            .order_by(MigrationObject.key)
        ).all()  # fmt: skip
        source, target = _location(session, info.source), _location(session, info.target)
        dst = get_location(session, info.target)
        both = [get_location(session, info.source).id, dst.id]
        classes = sorted(
            set(
                session.scalars(
                    select(StoredObject.data_class).where(StoredObject.location_id.in_(both))
                )
            )
        )
        verdicts = []
        for data_class in classes:
            refused = policy.check_placement(
                session, dst, data_class, actor=principal.actor, what="migration report"
            )
            verdicts.append(
                {"data_class": data_class, "allowed": refused is None,
                 "reason": "" if refused is None else str(refused)}
            )  # fmt: skip
        session.rollback()  # the check is a question here, not a placement
    bad = set(checked.missing + checked.wrong_size + checked.wrong_hash)
    areas: dict[tuple[str, str], dict[str, Any]] = {}
    digest = hashlib.sha256()
    stamps = []
    for row in rows:
        # A re-keyed object's line also names its copy's SHA-256 (its bytes differ).
        copy_hash = f"\t{row.copy_sha256 or ''}" if info.rekey else ""
        digest.update(f"{row.key}\t{row.size}\t{row.sha256}{copy_hash}\n".encode())
        kind, name = _area(row.key)
        area = areas.setdefault(
            (kind, name),
            {"kind": kind, "name": name, "objects": 0, "bytes": 0, "matched": 0, "retried": 0,
             "resumed_bytes": 0},
        )  # fmt: skip
        area["objects"] += 1
        area["bytes"] += row.size
        area["matched"] += row.state == "copied" and row.key not in bad
        area["retried"] += row.attempts > 1
        area["resumed_bytes"] += row.reused_bytes  # sent before a cut, not sent again
        if row.copied_at:
            stamps.append(row.copied_at)
    matched = sum(a["matched"] for a in areas.values())
    summary = {
        "format": FORMAT,
        "hub": hub.settings.name,
        "migration": info.id,
        "source": info.source,
        "target": info.target,
        "status": info.status,
        "objects": len(rows),
        "bytes": sum(r.size for r in rows),
        "objects_sha256": digest.hexdigest(),
        "sha256_matched": matched,
        "rekeyed": info.rekey,
        "verified": {
            "full": full, "missing": len(checked.missing),
            "wrong_size": len(checked.wrong_size), "wrong_hash": len(checked.wrong_hash),
            "ok": checked.ok and matched == len(rows),
        },
        "policy_allows_target": all(v["allowed"] for v in verdicts),
        "made_at": audit.utc_timestamp(),
    }  # fmt: skip
    key = hub.keys.signing_key()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    report = {
        "summary": summary,
        "signature": {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(public).decode("ascii"),
            "value": base64.b64encode(key.sign(_canonical(summary))).decode("ascii"),
        },
        "source": source,
        "target": target,
        "planned_by": info.created_by,
        "planned_at": info.created_at,
        "cut_over_at": info.cut_over_at,
        "decommissioned_at": info.decommissioned_at,
        "copy": {"first": min(stamps, default=None), "last": max(stamps, default=None)},
        "waves": info.waves,
        "policy": verdicts,
        "datasets": [a for (k, _), a in sorted(areas.items()) if k == "dataset"],
        "projects": [a for (k, _), a in sorted(areas.items()) if k == "project"],
        "other": [a for (k, _), a in sorted(areas.items()) if k == "other"],
        "problems": {
            "missing": checked.missing, "wrong_size": checked.wrong_size,
            "wrong_hash": checked.wrong_hash, "extra": checked.extra,
            "not_copied": [r.key for r in rows if r.state != "copied"],
        },
    }  # fmt: skip
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="migrate.report",
            object_type="migration",
            object_id=str(migration_id),
            outcome="success" if summary["verified"]["ok"] else "failure",
            details={"summary_sha256": hashlib.sha256(_canonical(summary)).hexdigest()},
        )
    return report


def check_report(report: dict[str, Any], *, public_key: str | None = None) -> dict[str, Any]:
    """The report's summary, once its signature is checked (against ``public_key``, the
    hub's, if given: otherwise against the key the report names)."""
    try:
        summary = report["summary"]
        signature = report["signature"]
        key_text = public_key or signature["public_key"]
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text))
        value = base64.b64decode(signature["value"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"this is not a migration report ({exc})",
            hint="give the JSON file hdh migrate report wrote",
        ) from None
    if public_key is not None and signature.get("public_key") != public_key:
        raise IntegrityError(
            "the report was signed with another key than the hub's",
            hint="it was not made by this hub, or its key was replaced",
        )
    try:
        key.verify(value, _canonical(summary))
    except InvalidSignature:
        raise IntegrityError(
            "the report's summary does not match its signature: it was altered",
            hint="ask the hub's operator for the original report",
        ) from None
    return dict(summary)


def hub_public_key(hub: Hub) -> str:
    public = hub.keys.signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(public).decode("ascii")


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def to_markdown(report: dict[str, Any]) -> str:
    """The report for people: the same facts as the JSON, the signature included."""
    s = report["summary"]
    v = s["verified"]
    lines = [
        f"# Migration {s['migration']}: {s['source']} to {s['target']}",
        "",
        f"Hub **{s['hub']}**, report made {s['made_at']}. Status: **{s['status']}**.",
        "",
        f"- Objects: {s['objects']} ({_mib(s['bytes'])}); SHA-256 matched on the target: "
        f"{s['sha256_matched']} of {s['objects']}"
        + (
            " (copies under new keys: each checked against the SHA-256 written, and its "
            "content against the source's)."
            if s.get("rekeyed")
            else " (ciphertext copied as it is)."
        ),
        f"- Verification ({'every byte re-read' if v['full'] else 'listing and sizes'}): "
        f"{v['missing']} missing, {v['wrong_size']} of the wrong size, "
        f"{v['wrong_hash']} with another SHA-256: **{'passed' if v['ok'] else 'FAILED'}**.",
        f"- Residency policy on the target: "
        f"**{'allowed' if s['policy_allows_target'] else 'REFUSED'}** for every data class.",
        f"- Planned {report['planned_at']} by {report['planned_by']}; copied from "
        f"{report['copy']['first']} to {report['copy']['last']}; cut over "
        f"{report['cut_over_at'] or '(not yet)'}; source decommissioned "
        f"{report['decommissioned_at'] or '(not yet)'}.",
        "",
        "## Locations",
        "",
        "| | name | country | certifications | extraterritorial exposure |",
        "| --- | --- | --- | --- | --- |",
    ]
    for role in ("source", "target"):
        loc = report[role]
        lines.append(
            f"| {role} | {loc['name']} | {loc['country']} | "
            f"{', '.join(loc['certifications']) or '-'} | "
            f"{', '.join(loc['extraterritorial']) or '-'} |"
        )
    lines += ["", "## Waves", "", "| wave | what | objects | size | state | cut over at |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for w in report["waves"]:
        lines.append(
            f"| {w['wave']} | {w['what']} | {w['objects']} | {_mib(w['bytes'])} | "
            f"{w.get('state', 'planned')} | {w.get('cut_over_at') or ''} |"
        )
    for title, items in (("Datasets", report["datasets"]), ("Projects", report["projects"]),
                         ("Other objects", report["other"])):  # fmt: skip
        if not items:
            continue
        lines += ["", f"## {title}", "",
                  "| name | objects | size | SHA-256 matched | retried | resumed, not sent again |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for a in items:
            lines.append(
                f"| {a['name']} | {a['objects']} | {_mib(a['bytes'])} | {a['matched']} | "
                f"{a['retried']} | {_mib(a['resumed_bytes'])} |"
            )
    lines += ["", "## Policy", "", "| data class | allowed on the target |", "| --- | --- |"]
    for verdict in report["policy"]:
        lines.append(
            f"| {verdict['data_class']} | {'yes' if verdict['allowed'] else verdict['reason']} |"
        )
    problems = report["problems"]
    if any(problems[k] for k in ("missing", "wrong_size", "wrong_hash", "not_copied")):
        lines += ["", "## Problems", ""]
        for kind in ("missing", "wrong_size", "wrong_hash", "not_copied"):
            lines += [f"- {kind.replace('_', ' ')}: `{key}`" for key in problems[kind]]
    lines += [
        "",
        "## Signed summary",
        "",
        "The summary below is signed with the hub's Ed25519 key; "
        "`hdh migrate check-report FILE.json` checks it.",
        "",
        "```json",
        json.dumps(s, indent=2, sort_keys=True),
        "```",
        "",
        f"- objects digest (SHA-256 of every key, size and SHA-256): `{s['objects_sha256']}`",
        f"- public key: `{report['signature']['public_key']}`",
        f"- signature: `{report['signature']['value']}`",
        "",
    ]
    return "\n".join(lines)
