"""Migrations over the REST API: an administrator plans, runs in the background,
follows, verifies, cuts over and fetches the signed report; others get 401/403 in the
one error shape."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.hub import Hub
from hdh.identity.service import add_user, create_token
from hdh.ingest.service import ingest, read_version
from hdh.migrate.report import check_report, hub_public_key
from hdh.storage.locations import LocationSpec, add_location


def test_an_administrator_moves_the_hub_through_the_api(hub: Hub, tmp_path: Path) -> None:
    source = tmp_path / "visits.csv"
    source.write_text("visit,ward\n1,w1\n2,w2\n")
    ingest(hub, source, name="visits", actor="os:steward")
    with hub.transaction() as session:
        add_location(session, LocationSpec(name="archive", kind="local",
                     path=str(tmp_path / "archive"), country="FR"), actor="os:test")  # fmt: skip
    add_user(hub, "ada", roles=["admin"], actor="os:test")
    add_user(hub, "rex", roles=["researcher"], actor="os:test")
    admin = {"Authorization": f"Bearer {create_token(hub, 'ada', actor='os:test')[0]}"}
    other = {"Authorization": f"Bearer {create_token(hub, 'rex', actor='os:test')[0]}"}
    with TestClient(create_app(hub)) as client:
        assert client.get("/api/v1/migrations").status_code == 401
        refused = client.post("/api/v1/migrations", headers=other,
                              json={"source": "local", "target": "archive"})  # fmt: skip
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "permission_denied"

        wanted = {"source": "local", "target": "archive", "rekey": True}
        planned = client.post("/api/v1/migrations", headers=admin, json=wanted)
        assert planned.status_code == 201, planned.text
        plan = planned.json()
        assert (plan["status"], plan["states"], plan["rekey"]) == ("planned", {"pending": 2}, True)
        again = client.post("/api/v1/migrations", headers=admin,
                            json={"source": "local", "target": "archive"})  # fmt: skip
        assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")

        started = client.post(f"/api/v1/migrations/{plan['id']}/run", headers=admin, json={})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 60
        while (now := client.get(f"/api/v1/migrations/{plan['id']}", headers=admin).json())[
            "status"
        ] != "copied":
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        assert now["states"] == {"copied": 2}

        verified = client.post(f"/api/v1/migrations/{plan['id']}/verify?full=true", headers=admin)
        assert verified.json()["ok"] is True
        switched = client.post(f"/api/v1/migrations/{plan['id']}/cutover", headers=admin, json={})
        assert switched.json()["moved"]["dataset_versions"] == 1
        assert read_version(hub, "visits").to_pylist() == [
            {"visit": 1, "ward": "w1"}, {"visit": 2, "ward": "w2"},
        ]  # fmt: skip
        report = client.get(f"/api/v1/migrations/{plan['id']}/report", headers=admin).json()
        summary = check_report(report, public_key=hub_public_key(hub))
        assert (summary["sha256_matched"], summary["rekeyed"]) == (2, True)
        markdown = client.get(f"/api/v1/migrations/{plan['id']}/report.md", headers=admin)
        assert markdown.text.startswith(f"# Migration {plan['id']}: local to archive")

        page = client.get("/api/v1/migrations?limit=1", headers=admin).json()
        assert (page["total"], page["next_offset"], page["items"][0]["status"]) == (
            1, None, "cut over",
        )  # fmt: skip
        gone = client.post("/api/v1/migrations/99/cancel", headers=admin)
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
