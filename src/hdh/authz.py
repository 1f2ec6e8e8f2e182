"""Who may do what: the one source of truth for the CLI, the API and the web pages.

``can(principal, action, project)`` answers; ``check(hub, principal, action, project)``
raises :class:`~hdh.errors.PermissionDenied` and records the refusal in the audit trail.
An action is allowed to the hub roles in ``ACTIONS[action].roles``, and, for actions on a
project, to the members whose project role is in ``ACTIONS[action].project_roles``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdh import audit
from hdh.errors import PermissionDenied
from hdh.hub import Hub
from hdh.identity.service import ROLES, Principal


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    project_roles: frozenset[str] = frozenset()
    what: str = ""


def _rule(roles: str, project_roles: str = "", what: str = "") -> Rule:
    return Rule(frozenset(roles.split()), frozenset(project_roles.split()), what)


ALL = " ".join(ROLES)
PROJECT_ROLES = ("lead", "analyst", "viewer")

ACTIONS: dict[str, Rule] = {
    "hub.operate": _rule("admin", what="manage locations, keys, policy and raw objects"),
    "user.manage": _rule("admin", what="manage user accounts and other people's tokens"),
    "token.own": _rule(ALL, what="manage one's own tokens and password"),
    "catalog.read": _rule(ALL, what="search the catalogue, read dataset descriptions"),
    "catalog.manage": _rule("admin steward", what="import schemas, describe datasets"),
    "dataset.ingest": _rule("admin steward", what="ingest files as new versions"),
    "dataset.read": _rule("admin steward", what="read whole versions (hub pseudonyms)"),
    "project.create": _rule("admin researcher", what="create a project (its lead)"),
    "project.read": _rule("admin auditor", "lead analyst viewer", "see a project"),
    "project.submit": _rule("", "lead", "submit a draft for approval"),
    "project.revise": _rule("", "lead", "take a rejected project back to draft"),
    "project.approve": _rule("admin", what="approve a submitted project"),
    "project.reject": _rule("admin", what="reject a submitted project"),
    "project.activate": _rule("admin", what="open an approved or suspended project"),
    "project.suspend": _rule("admin", what="suspend an active project"),
    "project.close": _rule("admin", "lead", "close an active or suspended project"),
    "project.archive": _rule("admin", what="archive a closed or rejected project"),
    "project.members": _rule("admin", "lead", "add and remove members"),
    "permit.request": _rule("admin", "lead", "request a data permit for a project"),
    "permit.decide": _rule("admin", what="grant, refuse or revoke data permits"),
    "permit.read": _rule("admin auditor", "lead analyst viewer", "see a project's permits"),
    "data.read": _rule("", "lead analyst", "read permitted data in a project"),
    "person.object": _rule("admin steward", what="record people's objections to data use"),
    "person.erase": _rule("admin", what="erase a person's rows from every stored version"),
    "audit.read": _rule("admin auditor", what="read and verify the audit trail"),
    "airlock.request": _rule("", "lead analyst", "ask to take files out of a project"),
    "airlock.read": _rule(
        "admin reviewer auditor", "lead analyst", "see export requests and their checks"
    ),
    "airlock.review": _rule("reviewer", what="approve, reject or return export requests"),
    "airlock.download": _rule("", "lead", "download a project's released files"),
}


@dataclass(frozen=True)
class ProjectContext:
    """The principal's place in the project an action is about."""

    name: str
    member_role: str | None  # "lead", "analyst", "viewer" or None


def can(principal: Principal, action: str, project: ProjectContext | None = None) -> bool:
    rule = ACTIONS.get(action)
    if rule is None:
        raise KeyError(f"unknown action {action!r}")  # a bug: every action is declared
    if principal.roles & rule.roles:
        return True
    return bool(
        project is not None
        and project.member_role is not None
        and project.member_role in rule.project_roles
    )


def check(
    hub: Hub, principal: Principal, action: str, project: ProjectContext | None = None
) -> None:
    """Raise PermissionDenied (audited as ``authz.denied``) unless ``can``."""
    if can(principal, action, project):
        return
    rule = ACTIONS[action]
    where = f" ({project.name})" if project is not None else ""
    with hub.transaction() as session:
        audit.record(
            session,
            actor=principal.actor,
            action="authz.denied",
            object_type="project" if project is not None else "hub",
            object_id=project.name if project is not None else action,
            outcome="denied",
            details={"action": action, "roles": sorted(principal.roles)},
        )
    needed = [f"the {r} role" for r in sorted(rule.roles)] + [
        f"being its {r}" for r in sorted(rule.project_roles)
    ]
    hint = "ask an administrator for the role"
    if rule.project_roles:
        hint += ", or the project's lead for membership"
    raise PermissionDenied(
        f"{principal.name} may not {rule.what or action}{where}: that needs {', or '.join(needed)}",
        hint=hint,
    )


def check_own_or_manage(hub: Hub, principal: Principal, owner: str | None) -> None:
    """A user acts on their own account and tokens (``token.own``); anyone else's needs
    ``user.manage``."""
    own = principal.kind == "user" and owner == principal.name
    check(hub, principal, "token.own" if own else "user.manage")
