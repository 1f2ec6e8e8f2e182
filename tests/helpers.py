"""Helpers shared by tests: making audit events and tampering with them as an attacker would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from hdh import audit
from hdh.hub import Hub

TAMPERINGS = ("edit", "delete", "reorder", "truncate")


def add_events(hub: Hub, count: int, *, actor: str = "os:alice") -> None:
    for i in range(count):
        with hub.transaction() as session:
            audit.record(
                session,
                actor=actor,
                action="test.touch",
                object_type="dataset",
                object_id=f"ds-{i}",
                details={"i": i, "note": "données de santé"},
            )


def sql(hub: Hub, statement: str, **params: object) -> None:
    with hub.engine.begin() as conn:
        conn.execute(text(statement), params)


def tamper(hub: Hub, how: str) -> None:
    """On a chain of 6 events: edit #3, delete #4, swap #3 and #4, or cut #5 and #6
    (rewinding the chain state too, as a careful attacker would)."""
    if how == "edit":
        sql(hub, "UPDATE audit_events SET actor = 'os:mallory' WHERE seq = 3")
    elif how == "delete":
        sql(hub, "DELETE FROM audit_events WHERE seq = 4")
    elif how == "reorder":
        sql(hub, "UPDATE audit_events SET seq = 1000 WHERE seq = 3")
        sql(hub, "UPDATE audit_events SET seq = 3 WHERE seq = 4")
        sql(hub, "UPDATE audit_events SET seq = 4 WHERE seq = 1000")
    elif how == "truncate":
        with hub.read() as session:
            fourth = session.get(audit.AuditEvent, 4)
            assert fourth is not None
        sql(hub, "DELETE FROM audit_events WHERE seq > 4")
        sql(hub, "UPDATE audit_chain SET seq = 4, head_hash = :h", h=fourth.hash)
    else:
        raise ValueError(how)


def hdh(
    *args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``hdh`` command in a child process (``stdin``: what it reads)."""
    return subprocess.run(
        [sys.executable, "-m", "hdh", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        input=stdin,
        check=False,
    )


def only_line(stderr: str) -> str:
    """The one line a refused command prints, checked to carry no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]
