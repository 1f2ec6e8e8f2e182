"""The operators' work over the REST API, as the command line does it: status, keys,
locations and their objects, residency rules, project members, passwords, and the
check of a migration report; every one refused to anonymous and unentitled callers in
the one error shape."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.governance.projects import create_project
from hdh.hub import Hub
from hdh.identity.service import LocalIdentity, Principal, add_user, create_token
from hdh.ingest.service import ingest
from tests.conftest import SHARED_DATA

NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people(hub: Hub) -> dict[str, dict[str, str]]:
    out = {}
    for name, roles in (("ada", ["admin"]), ("rex", ["researcher"]), ("eve", ["researcher"])):
        add_user(hub, name, roles=roles, actor="os:test")
        out[name] = bearer(create_token(hub, name, actor="os:test")[0])
    return out


def test_status_keys_and_refusals(hub: Hub, people: dict[str, dict[str, str]]) -> None:
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    ada, rex = people["ada"], people["rex"]
    with TestClient(create_app(hub)) as client:
        for method, path in (("get", "/api/v1/status"), ("get", "/api/v1/keys"),
                             ("post", "/api/v1/keys/rotate-pseudonyms")):  # fmt: skip
            assert client.request(method, path).status_code == 401
            denied = client.request(method, path, headers=rex)
            assert (denied.status_code, denied.json()["error"]["code"]) == (
                403, "permission_denied",
            )  # fmt: skip
        status = client.get("/api/v1/status", headers=ada).json()
        assert status["audit_chain"]["ok"] is True
        assert [loc["name"] for loc in status["locations"]] == ["local"]
        before = {(k["sensitivity"], k["version"]): k for k in
                  client.get("/api/v1/keys", headers=ada).json()}  # fmt: skip
        assert before[("clinical", 1)]["current"] is True
        assert before[("clinical", 1)]["data_keys"] > 0
        turned = client.post("/api/v1/keys/rotate", headers=ada, json={"sensitivity": "clinical"})
        assert turned.json() == {"versions": {"clinical": 2}}
        after = {(k["sensitivity"], k["version"]): k for k in
                 client.get("/api/v1/keys", headers=ada).json()}  # fmt: skip
        assert after[("clinical", 1)]["current"] is False
        assert after[("clinical", 2)]["data_keys"] == before[("clinical", 1)]["data_keys"]
        # The old version still opens the dataset's Parquet files: it may not go.
        held = client.post("/api/v1/keys/clinical/1/retire", headers=ada)
        assert held.status_code == 409, held.text
        assert "still wraps" in held.json()["error"]["message"]
        spare = client.post("/api/v1/keys/other/1/retire", headers=ada)
        assert spare.status_code == 409  # the current version of its class
        secret = client.post("/api/v1/keys/rotate-pseudonyms", headers=ada).json()
        assert secret == {"secret_version": 2}
        # The data is still readable under the new key.
        assert client.get("/api/v1/datasets/nursery", headers=ada).status_code == 200


def test_locations_objects_and_rules(
    hub: Hub, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    ada, rex = people["ada"], people["rex"]
    spec = {"name": "vault", "kind": "local", "path": "vault", "country": "FR",
            "certifications": ["hds"]}  # fmt: skip
    with TestClient(create_app(hub)) as client:
        assert client.post("/api/v1/locations", headers=rex, json=spec).status_code == 403
        # Through the API a local location stays inside the hub's folder.
        for outside in (str(tmp_path / "vault"), "../vault", "a/../../vault", "C:\\vault",
                        ".", "./", "keys", "audit/more", "storage/inner", "~/vault"):  # fmt: skip
            refused = client.post("/api/v1/locations", headers=ada, json={**spec, "path": outside})
            assert refused.status_code == 422, outside
            assert "not a new folder inside the hub's folder" in refused.json()["error"]["message"]
        made = client.post("/api/v1/locations", headers=ada, json=spec)
        assert made.status_code == 201, made.text
        assert (made.json()["country"], made.json()["certifications"]) == ("FR", ["hds"])
        probe = client.post("/api/v1/locations/vault/test", headers=ada).json()
        assert probe["ok"] is True
        assert (hub.settings.hub_dir / "vault").is_dir()
        assert [s["step"] for s in probe["steps"]] == ["write", "read", "ranged read", "list",
                                                       "delete"]  # fmt: skip
        body = NURSERY.read_bytes()
        put = client.put("/api/v1/locations/vault/objects/raw/nursery.csv", headers=ada,
                         content=body)  # fmt: skip
        assert put.status_code == 201, put.text
        assert put.json()["plain_size"] == len(body)
        assert put.json()["size"] > len(body)  # stored encrypted
        back = client.get("/api/v1/locations/vault/objects/raw/nursery.csv", headers=ada)
        assert back.content == body
        stored = next((hub.settings.hub_dir / "vault").rglob("nursery.csv"))
        assert body[:200] not in stored.read_bytes()  # the folder holds ciphertext only
        listed = client.get("/api/v1/locations/vault/objects", headers=ada).json()
        assert [o["key"] for o in listed["items"]] == ["raw/nursery.csv"]
        kept = client.delete("/api/v1/locations/vault", headers=ada)
        assert kept.status_code == 409, kept.text  # it holds an object

        # A rule requiring SecNumCloud refuses health data on the vault; removing it
        # allows it again.
        rule = {"data_class": "health", "countries": ["EU"], "certifications": ["secnumcloud"]}
        assert client.put("/api/v1/policy/rules/snc", headers=ada, json=rule).status_code == 200
        refused = client.put("/api/v1/locations/vault/objects/raw/again.csv", headers=ada,
                             content=b"a,b\n1,2\n")  # fmt: skip
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            403, "placement_refused",
        )  # fmt: skip
        assert client.delete("/api/v1/policy/rules/snc", headers=ada).status_code == 204
        allowed = client.put("/api/v1/locations/vault/objects/raw/again.csv", headers=ada,
                             content=b"a,b\n1,2\n")  # fmt: skip
        assert allowed.status_code == 201
        missing = client.get("/api/v1/locations/vault/objects/raw/none.csv", headers=ada)
        assert missing.status_code == 404


def test_members_and_passwords(hub: Hub, people: dict[str, dict[str, str]]) -> None:
    create_project(hub, Principal("rex", frozenset({"researcher"})), "cohort", title="C")
    rex, eve = people["rex"], people["eve"]
    with TestClient(create_app(hub)) as client:
        added = client.put("/api/v1/projects/cohort/members/eve", headers=rex,
                           json={"role": "analyst"})  # fmt: skip
        assert added.status_code == 200, added.text
        assert added.json()["members"] == {"rex": "lead", "eve": "analyst"}
        # A member who is not the lead cannot change the members.
        assert client.delete("/api/v1/projects/cohort/members/rex", headers=eve).status_code == 403
        bad_role = client.put("/api/v1/projects/cohort/members/eve", headers=rex,
                              json={"role": "lead"})  # fmt: skip
        assert bad_role.status_code == 422
        gone = client.delete("/api/v1/projects/cohort/members/eve", headers=rex)
        assert gone.json()["members"] == {"rex": "lead"}

        new = "a much longer passphrase"
        assert client.put("/api/v1/users/rex/password", headers=eve,
                          json={"password": new}).status_code == 403  # fmt: skip
        weak = client.put("/api/v1/users/eve/password", headers=eve, json={"password": "abc"})
        assert weak.status_code == 422
        assert client.put("/api/v1/users/eve/password", headers=eve,
                          json={"password": new}).status_code == 204  # fmt: skip
        assert LocalIdentity(hub).authenticate_password("eve", new).name == "eve"
        signed = client.post("/api/v1/login", json={"name": "eve", "password": new})
        assert signed.status_code == 201


def test_a_migration_report_is_checked_through_the_api(
    hub: Hub, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    ingest(hub, NURSERY, name="nursery", actor="os:steward")
    ada = people["ada"]
    spec = {"name": "other", "kind": "local", "path": "other", "country": "FR"}
    with TestClient(create_app(hub)) as client:
        assert client.post("/api/v1/locations", headers=ada, json=spec).status_code == 201
        plan = client.post("/api/v1/migrations", headers=ada,
                           json={"source": "local", "target": "other"}).json()  # fmt: skip
        started = client.post(f"/api/v1/migrations/{plan['id']}/run", headers=ada, json={})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 120
        while (
            client.get(f"/api/v1/migrations/{plan['id']}", headers=ada).json()["status"] != "copied"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        report = client.get(f"/api/v1/migrations/{plan['id']}/report", headers=ada).json()
        checked = client.post("/api/v1/migrations/check-report", headers=ada, json=report)
        assert checked.json()["ok"] is True
        assert checked.json()["summary"]["objects"] == plan["objects"]
        altered = copy.deepcopy(report)
        altered["summary"]["objects"] += 1
        refused = client.post("/api/v1/migrations/check-report", headers=ada, json=altered)
        assert refused.status_code == 200
        assert refused.json()["ok"] is False
        assert "signature" in refused.json()["problem"]
        shapeless = client.post("/api/v1/migrations/check-report", headers=ada, json={"a": 1})
        assert shapeless.status_code == 422
