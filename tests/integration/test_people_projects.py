"""Accounts, tokens and projects on SQLite and PostgreSQL: each change audited, each bad
request a clear error that changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from hdh import audit
from hdh.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from hdh.governance.projects import (
    create_project,
    get_project,
    list_projects,
    set_member,
    transition,
)
from hdh.hub import Hub
from hdh.identity.models import ApiToken
from hdh.identity.service import (
    AuthenticationFailed,
    LocalIdentity,
    Principal,
    add_user,
    create_token,
    disable_user,
    list_users,
    operator,
    revoke_token,
)

ADMIN = operator("os:operator")
GOOD_PASSWORD = "correct horse battery staple"


def events(hub: Hub, action: str) -> list[audit.AuditEvent]:
    with hub.read() as session:
        return audit.list_events(session, audit.EventFilter(action=action))


def people(hub: Hub) -> None:
    add_user(hub, "alice", roles=["researcher"], actor=ADMIN.actor)
    add_user(hub, "bob", roles=["researcher"], actor=ADMIN.actor)
    add_user(hub, "carol", roles=["admin"], actor=ADMIN.actor, password=GOOD_PASSWORD)


def as_user(name: str, *roles: str) -> Principal:
    return Principal(name, frozenset(roles))


def test_bad_accounts_are_refused_and_nothing_changes(hub: Hub) -> None:
    people(hub)
    before = [u.name for u in list_users(hub)]
    with pytest.raises(Conflict, match="there is already a user named 'alice'"):
        add_user(hub, "alice", roles=["researcher"], actor=ADMIN.actor)
    with pytest.raises(InvalidInput, match=r"the password is too weak: it has 6 characters"):
        add_user(hub, "dave", roles=["researcher"], actor=ADMIN.actor, password="abc123")
    with pytest.raises(InvalidInput, match=r"it contains the account name"):
        add_user(hub, "erin", roles=["researcher"], actor=ADMIN.actor, password="erin-erin-erin-1")
    with pytest.raises(InvalidInput, match=r"it is a common password"):
        add_user(hub, "fred", roles=["researcher"], actor=ADMIN.actor, password="aaaaaaaaaaaaaaa")
    with pytest.raises(InvalidInput, match=r"role wizard is not a hub role"):
        add_user(hub, "gina", roles=["wizard"], actor=ADMIN.actor)
    with pytest.raises(NotFound, match=r"there is no user named 'zoe'"):
        create_token(hub, "zoe", actor=ADMIN.actor)
    assert [u.name for u in list_users(hub)] == before
    assert len(events(hub, "user.add")) == 3


def test_passwords_and_tokens_authenticate_until_revoked_expired_or_disabled(hub: Hub) -> None:
    people(hub)
    identity = LocalIdentity(hub)
    assert identity.authenticate_password("carol", GOOD_PASSWORD).roles == {"admin"}
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_password("carol", GOOD_PASSWORD + "!")
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_password("nobody", GOOD_PASSWORD)

    token, info = create_token(hub, "alice", actor=ADMIN.actor, days=7)
    assert identity.authenticate_token(token).name == "alice"
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_token(token[:-1] + ("A" if token[-1] != "A" else "B"))

    expiring, expiring_info = create_token(hub, "alice", actor=ADMIN.actor, days=1)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    with hub.transaction() as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == expiring_info.id).values(expires_at=past)
        )
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_token(expiring)

    revoke_token(hub, info.id, actor=ADMIN.actor)
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_token(token)
    with pytest.raises(Conflict, match="already revoked"):
        revoke_token(hub, info.id, actor=ADMIN.actor)

    third, _ = create_token(hub, "bob", actor=ADMIN.actor)
    disable_user(hub, "bob", actor=ADMIN.actor)
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_token(third)
    failures = events(hub, "auth.failed")
    assert len(failures) == 6
    # The audit trail names what was tried, never the secret.
    assert all(token.split("_", 2)[2] not in e.details for e in failures)  # the whole secret
    assert {e.object_id for e in failures} >= {info.id, expiring_info.id, "carol", "nobody"}


def test_a_project_goes_through_its_life_cycle_in_order(hub: Hub) -> None:
    people(hub)
    alice = as_user("alice", "researcher")
    created = create_project(hub, alice, "cohort-a", title="Cohorte A", starts_on="2026-12-01")
    assert (created.status, created.lead, created.members) == ("draft", "alice", {"alice": "lead"})

    with pytest.raises(Conflict, match=r"project 'cohort-a' is draft: it cannot be activated"):
        transition(hub, ADMIN, "cohort-a", "activate")
    with pytest.raises(PermissionDenied, match=r"alice may not approve a submitted project"):
        transition(hub, alice, "cohort-a", "approve", approval_ref="x")
    assert get_project(hub, ADMIN, "cohort-a").status == "draft"  # nothing changed

    transition(hub, alice, "cohort-a", "submit", note="ready")
    with pytest.raises(InvalidInput, match="needs the reference of its authorisation"):
        transition(hub, ADMIN, "cohort-a", "approve")
    transition(hub, ADMIN, "cohort-a", "approve", approval_ref="CNIL DR-2026-123")
    transition(hub, ADMIN, "cohort-a", "activate")
    transition(hub, ADMIN, "cohort-a", "suspend")
    transition(hub, ADMIN, "cohort-a", "activate")
    transition(hub, alice, "cohort-a", "close")
    final = transition(hub, ADMIN, "cohort-a", "archive")
    assert (final.status, final.approval_ref, final.starts_on) == (
        "archived", "CNIL DR-2026-123", "2026-12-01",
    )  # fmt: skip
    with pytest.raises(Conflict, match=r"from archived, the actions are: none: it is final"):
        transition(hub, ADMIN, "cohort-a", "activate")
    moves = [(e.action, json.loads(e.details)["to"]) for e in events(hub, "")
             if e.action.startswith("project.") and e.action != "project.create"]  # fmt: skip
    assert moves == [
        ("project.submit", "submitted"), ("project.approve", "approved"),
        ("project.activate", "active"), ("project.suspend", "suspended"),
        ("project.activate", "active"), ("project.close", "closed"),
        ("project.archive", "archived"),
    ]  # fmt: skip
    denied = events(hub, "authz.denied")
    assert [json.loads(e.details)["action"] for e in denied] == ["project.approve"]
    assert denied[0].actor == "user:alice"


def test_members_and_visibility(hub: Hub) -> None:
    people(hub)
    alice, bob = as_user("alice", "researcher"), as_user("bob", "researcher")
    create_project(hub, alice, "cohort-a", title="A")
    create_project(hub, bob, "cohort-b", title="B")
    assert [p.name for p in list_projects(hub, alice)] == ["cohort-a"]
    with pytest.raises(NotFound, match=r"there is no project named 'cohort-a'"):
        get_project(hub, bob, "cohort-a")  # to bob, as if it did not exist
    with pytest.raises(PermissionDenied, match=r"bob may not add and remove members"):
        set_member(hub, bob, "cohort-a", "bob", "analyst")
    set_member(hub, alice, "cohort-a", "bob", "analyst")
    assert get_project(hub, bob, "cohort-a").members == {"alice": "lead", "bob": "analyst"}
    with pytest.raises(PermissionDenied, match="bob may not submit a draft"):
        transition(hub, bob, "cohort-a", "submit")  # an analyst is not the lead
    with pytest.raises(Conflict, match="'alice' is the lead of 'cohort-a'"):
        set_member(hub, alice, "cohort-a", "alice", None)
    with pytest.raises(InvalidInput, match="'owner' is not a member role"):
        set_member(hub, alice, "cohort-a", "carol", "owner")
    set_member(hub, alice, "cohort-a", "bob", None)
    assert [p.name for p in list_projects(hub, bob)] == ["cohort-b"]
    assert [p.name for p in list_projects(hub, ADMIN)] == ["cohort-a", "cohort-b"]


def test_bad_project_input_is_refused(hub: Hub) -> None:
    people(hub)
    alice = as_user("alice", "researcher")
    with pytest.raises(InvalidInput, match=r"the project ends \(2026-01-01\) before it starts"):
        create_project(hub, alice, "p1", title="x", starts_on="2026-06-01", ends_on="2026-01-01")
    with pytest.raises(InvalidInput, match=r"the start date '2026-13-01' is not a date"):
        create_project(hub, alice, "p1", title="x", starts_on="2026-13-01")
    with pytest.raises(InvalidInput, match=r"project name 'Bad Name' is not allowed"):
        create_project(hub, alice, "Bad Name", title="x")
    with pytest.raises(PermissionDenied, match=r"may not create a project"):
        create_project(hub, as_user("sam", "steward"), "p1", title="x")
    with pytest.raises(InvalidInput, match=r"'teleport' is not a project action"):
        transition(hub, ADMIN, "p1", "teleport")
    assert list_projects(hub, ADMIN) == []


def test_roles_change_and_a_disabled_account_comes_back(hub: Hub) -> None:
    from hdh.identity.service import enable_user, set_roles

    people(hub)
    token, _ = create_token(hub, "alice", actor=ADMIN.actor)
    identity = LocalIdentity(hub)
    set_roles(hub, "alice", ["researcher", "reviewer"], actor=ADMIN.actor)
    assert identity.authenticate_token(token).roles == {"researcher", "reviewer"}
    with pytest.raises(InvalidInput, match="a user needs at least one role"):
        set_roles(hub, "alice", [], actor=ADMIN.actor)
    disable_user(hub, "alice", actor=ADMIN.actor)
    with pytest.raises(AuthenticationFailed):
        identity.authenticate_token(token)
    enable_user(hub, "alice", actor=ADMIN.actor)
    assert identity.authenticate_token(token).name == "alice"
    with pytest.raises(Conflict, match="'alice' is not disabled"):
        enable_user(hub, "alice", actor=ADMIN.actor)
    assert json.loads(events(hub, "user.roles")[0].details) == {
        "from": ["researcher"],
        "to": ["reviewer", "researcher"],
    }
