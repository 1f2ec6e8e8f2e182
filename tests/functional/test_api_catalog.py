"""The catalogue and the audit trail over the REST API: anyone signed in reads the
catalogue (schema, rules, suppressed profiles; never a row), auditors page through the
events and verify the chain; others get 403 in the one error shape."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.hub import Hub
from hdh.identity.service import add_user, create_token
from hdh.ingest.service import ingest


def test_the_catalogue_and_the_audit_trail_through_the_api(hub: Hub, tmp_path: Path) -> None:
    source = tmp_path / "visits.csv"
    source.write_text("visit,ward,age\n" + "".join(f"{i},w{i % 2},{20 + i}\n" for i in range(40)))
    ingest(hub, source, name="visits", actor="os:steward", rules=["age=band10"])
    tokens = {}
    for name, roles in (("rex", ["researcher"]), ("aude", ["auditor"])):
        add_user(hub, name, roles=roles, actor="os:test")
        tokens[name] = {"Authorization": f"Bearer {create_token(hub, name, actor='os:test')[0]}"}
    with TestClient(create_app(hub)) as client:
        assert client.get("/api/v1/datasets").status_code == 401
        listed = client.get("/api/v1/datasets", headers=tokens["rex"]).json()
        assert [(d["name"], d["latest_version"]) for d in listed["items"]] == [("visits", 1)]
        shown = client.get("/api/v1/datasets/visits", headers=tokens["rex"]).json()
        assert shown["version"]["rows"] == 40
        columns = {c["name"]: c for c in shown["columns"]}
        assert (columns["age"]["rule"], columns["ward"]["rule"]) == ("band10", "keep")
        assert columns["ward"]["profile"]["distinct"] == 2
        missing = client.get("/api/v1/datasets/nope", headers=tokens["rex"])
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        assert (
            client.get("/api/v1/datasets/visits/versions", headers=tokens["rex"]).json()["total"]
            == 1
        )
        hits = client.get("/api/v1/catalog/search?q=ward", headers=tokens["rex"]).json()
        assert [h["name"] for h in hits["items"]] == ["visits"]

        denied = client.get("/api/v1/audit/events", headers=tokens["rex"])
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "permission_denied")
        latest = client.get("/api/v1/audit/events?limit=2", headers=tokens["aude"]).json()
        assert len(latest["items"]) == 2
        earlier = client.get(
            f"/api/v1/audit/events?limit=2&before={latest['next_before']}", headers=tokens["aude"]
        ).json()
        assert max(e["seq"] for e in earlier["items"]) < min(e["seq"] for e in latest["items"])
        published = client.get(
            "/api/v1/audit/events?action=dataset.publish", headers=tokens["aude"]
        ).json()
        assert [e["object_id"] for e in published["items"]] == ["visits@1"]
        bad = client.get("/api/v1/audit/events?since=yesterday", headers=tokens["aude"])
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_input")
        chain = client.post("/api/v1/audit/verify", headers=tokens["aude"]).json()
        assert (chain["ok"], chain["problem"]) == (True, None)
        assert chain["events"] >= published["items"][0]["seq"]
