"""Kept catalogue answers and known tokens: made once for a burst of the same question,
made again after any change the hub records."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hdh import audit
from hdh.api import create_app
from hdh.api.cache import ReadCache
from hdh.hub import Hub, init_hub
from hdh.identity.service import (
    LocalIdentity,
    TokenCheck,
    add_user,
    create_token,
    revoke_token,
    set_roles,
)


def test_a_burst_makes_an_answer_once_and_a_change_makes_it_again(tmp_path: Path) -> None:
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        cache = ReadCache(size=8)
        made: list[int] = []

        def make() -> bytes:
            time.sleep(0.05)  # long enough for the burst to arrive while it is made
            made.append(1)
            return f"answer {len(made)}".encode()

        answers: list[bytes] = []
        burst = [threading.Thread(target=lambda: answers.append(cache.answer(hub, "q", make)))
                 for _ in range(20)]  # fmt: skip
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        assert len(made) == 1
        assert set(answers) == {b"answer 1"}
        assert cache.answer(hub, "q", make) == b"answer 1"
        with hub.transaction() as session:  # any recorded change
            audit.record(session, actor="test", action="test.change", object_type="test",
                         object_id="1")  # fmt: skip
        assert cache.answer(hub, "q", make) == b"answer 2"
        for i in range(10):  # the oldest questions leave first
            cache.answer(hub, ("other", i), make)
        assert len(cache._kept) == 8
        assert "q" not in cache._kept


def counted_token_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the hub is asked to check, from now on, in order."""
    checks: list[str] = []
    check_token = LocalIdentity.check_token

    def counted(self: LocalIdentity, given: str) -> TokenCheck:
        checks.append(given)
        return check_token(self, given)

    monkeypatch.setattr(LocalIdentity, "check_token", counted)
    return checks


def test_a_token_is_checked_again_only_after_a_change_even_one_made_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        add_user(hub, "rita", roles=["researcher"], actor="os:test")
        token, info = create_token(hub, "rita", actor="os:test")
        rita = {"Authorization": f"Bearer {token}"}
        checks = counted_token_checks(monkeypatch)
        with TestClient(create_app(hub)) as client:
            for _ in range(5):
                assert client.get("/api/v1/me", headers=rita).json()["roles"] == ["researcher"]
            assert len(checks) == 1
            # Changes made by another process (here, straight through the library) are
            # seen by the very next request.
            set_roles(hub, "rita", ["researcher", "reviewer"], actor="os:test")
            me = client.get("/api/v1/me", headers=rita).json()
            assert sorted(me["roles"]) == ["researcher", "reviewer"]
            assert len(checks) == 2
            revoke_token(hub, info.id, actor="os:test")
            refused = client.get("/api/v1/me", headers=rita)
            assert (refused.status_code, refused.json()["error"]["code"]) == (
                401, "authentication_failed"
            )  # fmt: skip


def numbers(hub: Hub) -> tuple[int, int]:
    """The change number, and the number of the latest event."""
    with hub.read() as session:
        latest = session.scalar(select(func.max(audit.AuditEvent.seq))) or 0
        return audit.last_change(session), latest


def test_refusals_do_not_empty_what_the_server_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending bad tokens is refused and audited (``auth.failed``), but changes
    nothing: the other clients' tokens stay known, not checked again."""
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        add_user(hub, "rita", roles=["researcher"], actor="os:test")
        token, _ = create_token(hub, "rita", actor="os:test")
        rita = {"Authorization": f"Bearer {token}"}
        checks = counted_token_checks(monkeypatch)
        with TestClient(create_app(hub)) as client:
            assert client.get("/api/v1/me", headers=rita).status_code == 200
            before = numbers(hub)
            for i in range(5):
                bad = client.get("/api/v1/me", headers={"Authorization": f"Bearer bad{i}"})
                assert bad.status_code == 401
            after = numbers(hub)
            assert after[0] == before[0]  # the change number did not move...
            assert after[1] >= before[1] + 5  # ...though each refusal was recorded
            assert client.get("/api/v1/me", headers=rita).status_code == 200
            assert checks.count(token) == 1  # rita's token was not checked again
