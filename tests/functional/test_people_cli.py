"""``hdh user``, ``hdh token`` and ``hdh project`` through the real command, and the same
token on the REST API."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.hub import Hub
from tests.helpers import hdh


def test_accounts_tokens_and_a_project_from_the_command_line(hub_dir: Path) -> None:
    def run(
        *args: str | Path, token: str | None = None, stdin: str | None = None
    ) -> tuple[int, str, str]:
        env = {**os.environ, "HDH_TOKEN": token} if token else None
        done = hdh("--hub", hub_dir, *args, env=env, stdin=stdin)
        return done.returncode, done.stdout, done.stderr

    assert run("user", "add", "alice", "--role", "researcher")[0] == 0
    code, _, stderr = run(
        "user", "add", "bob", "--role", "admin", "--password-stdin", stdin="short\n"
    )
    assert (code, stderr.split(":")[1].strip()) == (6, "the password is too weak")
    code, stdout, _ = run("token", "create", "alice", "--days", "7")
    assert code == 0
    token = stdout.splitlines()[1]
    assert token.startswith("hdh_")

    code, stdout, _ = run("project", "create", "cohort-a", "--title", "Cohorte A", token=token)
    assert (code, stdout.strip()) == (0, "Created project 'cohort-a' (draft), led by alice.")
    code, _, stderr = run("project", "approve", "cohort-a", "--approval-ref", "X", token=token)
    assert code == 9
    assert stderr.startswith("Error: alice may not approve a submitted project")
    code, _, stderr = run("project", "activate", "cohort-a")
    assert (code, stderr.strip()) == (
        5,
        "Error: project 'cohort-a' is draft: it cannot be activated: from draft, the "
        "actions are: submit",
    )
    assert run("project", "submit", "cohort-a", token=token)[0] == 0
    code, stdout, _ = run("project", "approve", "cohort-a", "--approval-ref", "CNIL DR-2026-1")
    assert stdout.strip() == "Project 'cohort-a' is now approved (CNIL DR-2026-1)."
    code, stdout, _ = run("project", "show", "cohort-a", token=token)
    assert stdout.splitlines()[:3] == [
        "cohort-a: Cohorte A (approved)",
        "  lead: alice",
        "  approval: CNIL DR-2026-1",
    ]
    code, _, stderr = run("user", "list", token=token)
    assert code == 9

    # A researcher reads no dataset rows outside a project: refused, and audited.
    source = hub_dir.parent / "visits.csv"
    source.write_text("visit,ward\n" + "".join(f"{i},w{i % 3}\n" for i in range(30)))
    assert run("dataset", "ingest", source, "--name", "visits")[0] == 0
    code, _, stderr = run("dataset", "show", "visits", "--rows", "1", token=token)
    assert code == 9
    assert stderr.startswith("Error: alice may not read whole versions (hub pseudonyms)")
    code, _, stderr = run("dataset", "ingest", source, "--name", "mine", token=token)
    assert code == 9
    assert "alice may not ingest files as new versions" in stderr
    assert run("dataset", "show", "visits", token=token)[0] == 0  # the catalogue is open
    code, stdout, _ = run("audit", "log", "--action", "authz.denied", "--json")
    denied = [e for e in json.loads(stdout) if e["actor"] == "user:alice"]
    assert [e["details"]["action"] for e in denied][-2:] == [
        "dataset.read",
        "dataset.ingest",
    ]

    token_id = token.split("_")[1]
    assert run("token", "revoke", token_id, token=token)[0] == 0  # one's own token
    code, _, stderr = run("project", "list", token=token)
    assert code == 9
    assert stderr.startswith("Error: authentication failed")


def test_the_api_takes_bearer_tokens(hub: Hub) -> None:
    from hdh.identity.service import add_user, create_token

    add_user(hub, "alice", roles=["researcher"], actor="os:test")
    token, _ = create_token(hub, "alice", actor="os:test")
    with TestClient(create_app(hub)) as client:
        missing = client.get("/api/v1/me")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "authentication_failed"
        wrong = client.get("/api/v1/me", headers={"Authorization": "Bearer hdh_nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/me", headers=auth).json() == {
            "name": "alice",
            "roles": ["researcher"],
        }
        made = client.post("/api/v1/projects", headers=auth, json={"name": "p1", "title": "P"})
        assert (made.status_code, made.json()["status"]) == (201, "draft")
        denied = client.post(
            "/api/v1/projects/p1/transitions", headers=auth, json={"action": "approve"}
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "permission_denied"
        moved = client.post(
            "/api/v1/projects/p1/transitions", headers=auth, json={"action": "submit"}
        )
        assert moved.json()["status"] == "submitted"
        listed = client.get("/api/v1/projects", headers=auth).json()
        assert ([p["name"] for p in listed["items"]], listed["next_offset"]) == (["p1"], None)


def test_permits_over_the_api(hub: Hub, tmp_path: Path) -> None:
    from hdh.identity.service import add_user, create_token
    from hdh.ingest.service import ingest

    source = tmp_path / "visits.csv"
    source.write_text("visit,ward\n" + "".join(f"{i},w{i % 3}\n" for i in range(30)))
    ingest(hub, source, name="visits", actor="os:steward")
    add_user(hub, "alice", roles=["researcher"], actor="os:test")
    add_user(hub, "carol", roles=["admin"], actor="os:test")
    alice = {"Authorization": f"Bearer {create_token(hub, 'alice', actor='os:test')[0]}"}
    carol = {"Authorization": f"Bearer {create_token(hub, 'carol', actor='os:test')[0]}"}
    with TestClient(create_app(hub)) as client:
        client.post("/api/v1/projects", headers=alice, json={"name": "p1", "title": "P"})
        asked = client.post(
            "/api/v1/projects/p1/permits",
            headers=alice,
            json={"dataset": "visits", "columns": ["ward"], "row_filter": "ward == 'w1'"},
        )
        assert (asked.status_code, asked.json()["status"]) == (201, "requested")
        bad = client.post(
            "/api/v1/projects/p1/permits",
            headers=alice,
            json={"dataset": "visits", "columns": ["ward"], "row_filter": "visit > 3"},
        )
        assert bad.status_code == 422
        assert "column 'visit' is not one the permit allows" in bad.json()["error"]["message"]
        number = asked.json()["id"]
        refused = client.post(
            f"/api/v1/permits/{number}/decision", headers=alice, json={"action": "grant"}
        )
        assert refused.status_code == 403
        early = client.post(
            f"/api/v1/permits/{number}/decision", headers=carol, json={"action": "grant"}
        )
        assert early.status_code == 409  # the project is still a draft
        assert early.json()["error"]["message"].startswith("project 'p1' is draft")
        listed = client.get("/api/v1/permits", headers=alice, params={"project": "p1"}).json()
        assert [(p["id"], p["status"]) for p in listed["items"]] == [(number, "requested")]


def test_hdh_query_as_a_researcher(hub_dir: Path) -> None:
    def run(*args: str | Path, token: str | None = None) -> tuple[int, str, str]:
        env = {**os.environ, "HDH_TOKEN": token} if token else None
        done = hdh("--hub", hub_dir, *args, env=env)
        return done.returncode, done.stdout, done.stderr

    source = hub_dir.parent / "visits.csv"
    source.write_text("visit,ward\n" + "".join(f"{i},w{i % 3}\n" for i in range(30)))
    assert run("dataset", "ingest", source, "--name", "visits")[0] == 0
    assert run("user", "add", "ana", "--role", "researcher")[0] == 0
    token = run("token", "create", "ana")[1].splitlines()[1]
    run("project", "create", "p1", "--title", "P", token=token)
    run("project", "submit", "p1", token=token)
    run("project", "approve", "p1", "--approval-ref", "r")
    run("project", "activate", "p1")
    run("permit", "request", "p1", "visits", "--column", "ward", token=token)
    run("permit", "grant", "1")
    code, stdout, _ = run(
        "query", "p1", "select ward, count(*) as n from visits group by ward order by ward",
        "--format", "csv", token=token,
    )  # fmt: skip
    assert (code, stdout) == (0, "ward,n\nw0,10\nw1,10\nw2,10\n")
    code, _, stderr = run("query", "p1", "select * from read_csv('/etc/passwd')", token=token)
    assert code == 9
    assert stderr.startswith("Error: the workspace does not allow this")


def test_query_over_the_api(hub: Hub, tmp_path: Path) -> None:
    from hdh.governance.permits import decide, request_permit
    from hdh.governance.projects import create_project, transition
    from hdh.identity.service import Principal, add_user, create_token, operator
    from hdh.ingest.service import ingest

    source = tmp_path / "visits.csv"
    source.write_text("visit,ward\n" + "".join(f"{i},w{i % 3}\n" for i in range(30)))
    ingest(hub, source, name="visits", actor="os:steward")
    add_user(hub, "ana", roles=["researcher"], actor="os:test")
    ana, admin = Principal("ana", frozenset({"researcher"})), operator("os:test")
    create_project(hub, ana, "p1", title="P")
    transition(hub, ana, "p1", "submit")
    transition(hub, admin, "p1", "approve", approval_ref="r")
    transition(hub, admin, "p1", "activate")
    decide(hub, admin, request_permit(hub, ana, "p1", "visits", columns=["ward"]).id, "grant")
    auth = {"Authorization": f"Bearer {create_token(hub, 'ana', actor='os:test')[0]}"}
    with TestClient(create_app(hub)) as client:
        done = client.post(
            "/api/v1/projects/p1/query",
            headers=auth,
            json={"sql": "select ward, count(*) as n from visits group by 1 order by 1"},
        )
        assert done.status_code == 200
        body = done.json()
        assert (body["columns"], body["rows"][0], body["datasets"]) == (
            ["ward", "n"], {"ward": "w0", "n": 10}, ["visits"],
        )  # fmt: skip
        refused = client.post(
            "/api/v1/projects/p1/query",
            headers=auth,
            json={"sql": "select * from read_csv('/etc/passwd')"},
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "query_refused")


def test_hdh_job_as_a_researcher(hub_dir: Path) -> None:
    def run(*args: str | Path, token: str | None = None) -> tuple[int, str, str]:
        env = {**os.environ, "HDH_TOKEN": token} if token else None
        done = hdh("--hub", hub_dir, *args, env=env)
        return done.returncode, done.stdout, done.stderr

    source = hub_dir.parent / "visits.csv"
    source.write_text("visit,ward\n" + "".join(f"{i},w{i % 3}\n" for i in range(30)))
    assert run("dataset", "ingest", source, "--name", "visits")[0] == 0
    assert run("user", "add", "ana", "--role", "researcher")[0] == 0
    token = run("token", "create", "ana")[1].splitlines()[1]
    run("project", "create", "p1", "--title", "P", token=token)
    run("project", "submit", "p1", token=token)
    run("project", "approve", "p1", "--approval-ref", "r")
    run("project", "activate", "p1")
    run("permit", "request", "p1", "visits", "--column", "ward", token=token)
    run("permit", "grant", "1")
    script = hub_dir.parent / "wards.sql"
    script.write_text("select ward, count(*) as n from visits group by ward order by ward;\n")
    # In the background: submit answers at once, status waits for the end.
    code, stdout, _ = run("job", "submit", "p1", script, token=token)
    assert (code, stdout.split(":")[0]) == (0, "Job 1 submitted for project p1")
    code, stdout, _ = run("job", "status", "1", "--wait", "120", "--json", token=token)
    status = json.loads(stdout)
    assert (code, status["status"], status["datasets"]) == (0, "succeeded", ["visits"])
    code, stdout, _ = run("job", "outputs", "1", "--show", "result.csv", token=token)
    assert (code, stdout) == (0, "ward,n\nw0,10\nw1,10\nw2,10\n")
    code, stdout, _ = run("job", "logs", "1", token=token)
    assert "statement 1 of 1: SELECT done" in stdout
    # Through the airlock: a reviewer approves, the lead downloads.
    code, stdout, _ = run(
        "airlock", "request", "p1", "1/result.csv", "--note", "wards", token=token
    )
    assert code == 0
    assert "Export request 1 of project p1: checked" in stdout
    assert run("user", "add", "rev", "--role", "reviewer")[0] == 0
    reviewer = run("token", "create", "rev")[1].splitlines()[1]
    code, stdout, _ = run("airlock", "review", "1", "--approve", token=reviewer)
    assert (code, "released at" in stdout) == (0, True)
    code, stdout, _ = run("airlock", "download", "1", "--to", hub_dir.parent / "out", token=token)
    assert code == 0
    assert (hub_dir.parent / "out" / "result.csv").read_text() == "ward,n\nw0,10\nw1,10\nw2,10\n"
    # In the foreground, a failing script: its log, then exit code 1.
    script.write_text("select nothing from visits;\n")
    code, stdout, _ = run("job", "submit", "p1", script, "--wait", token=token)
    assert code == 1
    assert 'Referenced column "nothing" not found' in stdout
    assert "Job 2 of project p1: failed" in stdout
    code, stdout, _ = run("job", "list", "p1", "--json", token=token)
    assert [j["status"] for j in json.loads(stdout)] == ["succeeded", "failed"]
    code, _, stderr = run("job", "status", "1")  # the operator is not a project member
    assert code == 9
    assert "may not read permitted data in a project (p1)" in stderr
