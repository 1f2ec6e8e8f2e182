"""Running the hub over the REST API: accounts, tokens, locations and the residency
policy, each for the roles that may, in the one error shape for the others."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.hub import Hub
from hdh.identity.service import add_user, create_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_accounts_tokens_locations_and_policy_through_the_api(hub: Hub) -> None:
    add_user(hub, "ada", roles=["admin"], actor="os:test")
    add_user(hub, "rex", roles=["researcher"], actor="os:test")
    ada = bearer(create_token(hub, "ada", actor="os:test")[0])
    rex = bearer(create_token(hub, "rex", actor="os:test")[0])
    with TestClient(create_app(hub)) as client:
        new = {"name": "eve", "roles": ["researcher"], "email": "eve@example.fr"}
        denied = client.post("/api/v1/users", headers=rex, json=new)
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "permission_denied")
        weak = client.post("/api/v1/users", headers=ada, json={**new, "password": "abc"})
        assert (weak.status_code, weak.json()["error"]["code"]) == (422, "invalid_input")
        made = client.post("/api/v1/users", headers=ada, json=new)
        assert made.status_code == 201, made.text
        assert made.json()["has_password"] is False
        again = client.post("/api/v1/users", headers=ada, json=new)
        assert again.status_code == 409
        listed = client.get("/api/v1/users?limit=2", headers=ada).json()
        assert (listed["total"], len(listed["items"]), listed["next_offset"]) == (3, 2, 2)
        roles = client.put("/api/v1/users/eve/roles", headers=ada,
                           json={"roles": ["researcher", "reviewer"]})  # fmt: skip
        assert sorted(roles.json()["roles"]) == ["researcher", "reviewer"]

        # Tokens: one's own freely, another's only with user.manage.
        assert client.post("/api/v1/tokens", headers=rex, json={"user": "eve"}).status_code == 403
        eves = client.post("/api/v1/tokens", headers=ada, json={"user": "eve", "label": "ci"})
        assert eves.status_code == 201
        eve = bearer(eves.json()["token"])
        assert client.get("/api/v1/me", headers=eve).json()["name"] == "eve"
        assert client.post("/api/v1/users/eve/disable", headers=ada).json()["disabled"] is True
        assert client.get("/api/v1/me", headers=eve).status_code == 401
        client.post("/api/v1/users/eve/enable", headers=ada)
        assert client.get("/api/v1/me", headers=eve).status_code == 200
        mine = client.post("/api/v1/tokens", headers=rex, json={"days": 1}).json()
        assert mine["info"]["user"] == "rex"
        own = client.get("/api/v1/tokens", headers=rex).json()
        assert {t["id"] for t in own["items"]} >= {mine["info"]["id"]}
        assert all("token" not in t for t in own["items"])  # never the secret again
        revoked = client.post(f"/api/v1/tokens/{mine['info']['id']}/revoke", headers=rex)
        assert revoked.json()["revoked_at"] is not None
        assert client.get("/api/v1/me", headers=bearer(mine["token"])).status_code == 401

        # Locations and the policy: operators only.
        assert client.get("/api/v1/locations", headers=rex).status_code == 403
        places = client.get("/api/v1/locations", headers=ada).json()["items"]
        assert [(p["name"], p["kind"]) for p in places] == [("local", "local")]
        assert "secret" not in str(places).lower()
        rules = client.get("/api/v1/policy", headers=ada).json()
        assert "health-data-in-eu" in [r["name"] for r in rules["rules"]]
        assert {(p["location"], p["data_class"]) for p in rules["placements"]} >= {
            ("local", "health")
        }
