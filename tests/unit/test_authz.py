"""Authorisation: every role against every action, and the project state machine is
complete. The expected tables here are written out by hand, not derived from the code."""

from __future__ import annotations

import pytest

from hdh.authz import ACTIONS, PROJECT_ROLES, ProjectContext, can
from hdh.governance.projects import STATUSES, TERMINAL, TRANSITIONS, mermaid
from hdh.identity.service import ROLES, Principal, operator

# action -> hub roles allowed without any project membership
BY_ROLE = {
    "hub.operate": {"admin"},
    "user.manage": {"admin"},
    "token.own": {"admin", "steward", "reviewer", "researcher", "auditor"},
    "catalog.read": {"admin", "steward", "reviewer", "researcher", "auditor"},
    "catalog.manage": {"admin", "steward"},
    "dataset.ingest": {"admin", "steward"},
    "dataset.read": {"admin", "steward"},
    "project.create": {"admin", "researcher"},
    "project.read": {"admin", "auditor"},
    "project.submit": set(),
    "project.revise": set(),
    "project.approve": {"admin"},
    "project.reject": {"admin"},
    "project.activate": {"admin"},
    "project.suspend": {"admin"},
    "project.close": {"admin"},
    "project.archive": {"admin"},
    "project.members": {"admin"},
    "permit.request": {"admin"},
    "permit.decide": {"admin"},
    "permit.read": {"admin", "auditor"},
    "data.read": set(),
    "person.object": {"admin", "steward"},
    "person.erase": {"admin"},
    "audit.read": {"admin", "auditor"},
    "airlock.request": set(),
    "airlock.read": {"admin", "reviewer", "auditor"},
    "airlock.review": {"reviewer"},
    "airlock.download": set(),
}
# action -> project roles that allow it to a member with no hub role granting it
BY_MEMBERSHIP = {
    "project.read": {"lead", "analyst", "viewer"},
    "project.submit": {"lead"},
    "project.revise": {"lead"},
    "project.close": {"lead"},
    "project.members": {"lead"},
    "permit.request": {"lead"},
    "permit.read": {"lead", "analyst", "viewer"},
    "data.read": {"lead", "analyst"},
    "airlock.request": {"lead", "analyst"},
    "airlock.read": {"lead", "analyst"},
    "airlock.download": {"lead"},
}


def test_every_action_is_in_the_expected_tables() -> None:
    assert set(ACTIONS) == set(BY_ROLE)


@pytest.mark.parametrize("action", sorted(BY_ROLE))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_action(role: str, action: str) -> None:
    who = Principal("someone", frozenset({role}))
    assert can(who, action) == (role in BY_ROLE[action])


@pytest.mark.parametrize(
    "action", sorted(a for a in BY_ROLE if a.split(".")[0] in ("project", "permit", "data"))
)
@pytest.mark.parametrize("member_role", [*PROJECT_ROLES, None])
def test_each_project_role_against_each_project_action(
    member_role: str | None, action: str
) -> None:
    # A researcher: the hub role that gets nothing on a project without membership
    # beyond creating one.
    who = Principal("someone", frozenset({"researcher"}))
    where = ProjectContext("p", member_role)
    expected = "researcher" in BY_ROLE[action] or member_role in BY_MEMBERSHIP.get(action, set())
    assert can(who, action, where) == expected


def test_the_operator_is_an_administrator() -> None:
    assert all(
        can(operator("os:root"), action) == ("admin" in BY_ROLE[action]) for action in BY_ROLE
    )


def test_an_undeclared_action_is_a_bug_not_a_refusal() -> None:
    with pytest.raises(KeyError, match="unknown action"):
        can(Principal("x", frozenset({"admin"})), "dataset.delete_everything")


def test_the_state_machine_is_complete() -> None:
    assert set(TRANSITIONS) == set(STATUSES)  # every status has its (possibly empty) moves
    assert {"archived"} == TERMINAL
    for status, moves in TRANSITIONS.items():
        for action, target in moves.items():
            assert target in STATUSES, (status, action)
            assert f"project.{action}" in ACTIONS, action
            assert f"    {status} --> {target}: {action}" in mermaid()
    reached = {"draft"}
    frontier = ["draft"]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(STATUSES)  # no status is unreachable
