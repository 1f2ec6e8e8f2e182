"""Fixtures shared by every test: the real servers, and a hub on each database.

The servers start once per test session, on first use, and stop at its end even when
tests fail. ``make test`` sets HDH_TEST_NO_SKIP=1: then a skipped test fails the run,
so nothing that needs a server can pass by not running.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hdh.devservers import AzuriteServer, PostgresServer, SeaweedFSServer
from hdh.hub import Hub, init_hub

ROOT = Path(__file__).resolve().parents[1]
#: Public test data beside the project (``../shared/data``), or where HDH_SHARED_DATA says.
SHARED_DATA = Path(os.environ.get("HDH_SHARED_DATA") or ROOT.parent / "shared" / "data")


class _TerminalHandler(logging.Handler):
    """Writes server start/stop lines to pytest's terminal, past output capture."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(logging.INFO)
        self.config = config

    def emit(self, record: logging.LogRecord) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[servers] {record.getMessage()}")


def pytest_configure(config: pytest.Config) -> None:
    logger = logging.getLogger("hdh.devservers")
    logger.setLevel(logging.INFO)
    logger.addHandler(_TerminalHandler(config))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and os.environ.get("HDH_TEST_NO_SKIP") == "1":
        _SKIPPED.append(report.nodeid)


_SKIPPED: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"HDH_TEST_NO_SKIP=1 but {len(_SKIPPED)} test(s) skipped: " + ", ".join(_SKIPPED),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedFSServer]:
    with SeaweedFSServer() as server:
        yield server


@pytest.fixture(scope="session")
def azure_server() -> Iterator[AzuriteServer]:
    with AzuriteServer() as server:
        yield server


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: a SQLite file in the hub folder, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///hub.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    """A new hub in ``tmp_path/hub``, on SQLite and on PostgreSQL."""
    with init_hub(tmp_path / "hub", database_url=database_url, actor="test:init") as opened:
        yield opened


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    """A new SQLite hub made by the real ``hdh init``, as an operator makes one."""
    from tests.helpers import hdh

    target = tmp_path / "hub"
    assert hdh("init", target).returncode == 0
    return target
