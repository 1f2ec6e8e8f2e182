"""Jobs and the airlock over the REST API: a researcher submits a job and follows it,
asks for its table to leave, a reviewer reads and approves it, the researcher fetches
what was released; others get 401/403 in the one error shape."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub
from hdh.identity.service import Principal, add_user, create_token, operator
from hdh.ingest.service import ingest
from tests.conftest import SHARED_DATA

ADMIN = operator("os:operator")
NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
SCRIPT = """import hdh.workspace as ws
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame, "recommend", "parents").save("recommend.csv")
print("rows", len(frame))
"""


def test_a_result_leaves_through_the_api(hub: Hub) -> None:
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    tokens = {}
    for name, roles in (("alice", ["researcher"]), ("bob", ["researcher"]),
                        ("rob", ["reviewer"])):  # fmt: skip
        add_user(hub, name, roles=roles, actor=ADMIN.actor)
        tokens[name] = {"Authorization": f"Bearer {create_token(hub, name, actor='t')[0]}"}
    alice = Principal("alice", frozenset({"researcher"}))
    create_project(hub, alice, "cohort-a", title="A")
    transition(hub, alice, "cohort-a", "submit")
    transition(hub, ADMIN, "cohort-a", "approve", approval_ref="ref")
    transition(hub, ADMIN, "cohort-a", "activate")
    permit = request_permit(hub, alice, "cohort-a", "nursery", columns=["recommend", "parents"])
    decide(hub, ADMIN, permit.id, "grant")
    with TestClient(create_app(hub)) as client:
        body = {"script_name": "table.py", "script": SCRIPT}
        assert client.post("/api/v1/projects/cohort-a/jobs", json=body).status_code == 401
        denied = client.post("/api/v1/projects/cohort-a/jobs", json=body, headers=tokens["bob"])
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "permission_denied")
        bad = client.post("/api/v1/projects/cohort-a/jobs", headers=tokens["alice"],
                          json={"script_name": "../x.py", "script": SCRIPT})  # fmt: skip
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_input")

        submitted = client.post("/api/v1/projects/cohort-a/jobs", json=body,
                                headers=tokens["alice"])  # fmt: skip
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/api/v1/jobs/{job_id}", headers=tokens["alice"]).json())[
            "status"
        ] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        log = client.get(f"/api/v1/jobs/{job_id}/log", headers=tokens["alice"]).text
        assert job["status"] == "succeeded", log
        assert "rows 12960" in log
        listed = client.get("/api/v1/projects/cohort-a/jobs", headers=tokens["alice"]).json()
        assert [j["id"] for j in listed["items"]] == [job_id]
        table = client.get(f"/api/v1/jobs/{job_id}/outputs/recommend.csv", headers=tokens["alice"])
        assert table.content.startswith(b"recommend,")
        assert client.get(f"/api/v1/jobs/{job_id}", headers=tokens["bob"]).status_code == 403

        wanted = {"files": [f"{job_id}/recommend.csv"], "note": "Table 1"}
        asked = client.post("/api/v1/projects/cohort-a/exports", headers=tokens["alice"],
                            json=wanted)  # fmt: skip
        assert asked.status_code == 201, asked.text
        export = asked.json()
        at = f"/api/v1/exports/{export['id']}"
        assert export["status"] == "checked"
        assert export["files"][0]["verdict"] == "suppressed"
        waiting = client.get("/api/v1/exports?status=checked", headers=tokens["rob"]).json()
        assert [e["id"] for e in waiting["items"]] == [export["id"]]
        assert client.get(at, headers=tokens["bob"]).status_code == 403
        seen = client.get(f"{at}/files/recommend.csv",
                          headers=tokens["rob"])  # fmt: skip
        assert seen.content == table.content  # as it was asked for
        approve = {"decision": "approve"}
        self_review = client.post(f"{at}/review", headers=tokens["alice"], json=approve)
        assert self_review.status_code == 403
        approved = client.post(f"{at}/review", headers=tokens["rob"],
                               json={"decision": "approve", "comment": "fine"})  # fmt: skip
        assert approved.json()["status"] == "released", approved.text
        released = client.get(f"{at}/released/recommend.csv",
                              headers=tokens["alice"])  # fmt: skip
        assert released.status_code == 200
        assert released.content != table.content  # small cells suppressed
        assert released.content.startswith(b"recommend,")
