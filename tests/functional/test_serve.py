"""``hdh serve``: the real server process answers /health and publishes its OpenAPI document;
errors use the one JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from hdh.api import create_app
from hdh.db import make_engine
from hdh.devservers import free_port
from hdh.hub import Hub
from tests.helpers import hdh


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (loopback)
        return json.loads(response.read())


def test_serve_answers_health_and_openapi(tmp_path: Path) -> None:
    target = tmp_path / "hub"
    assert hdh("init", target).returncode == 0
    port = free_port()
    log_path = tmp_path / "serve.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [sys.executable, "-m", "hdh", "--hub", str(target), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        try:
            deadline = time.monotonic() + 30
            health = None
            while time.monotonic() < deadline and health is None:
                try:
                    health = get_json(f"http://127.0.0.1:{port}/health")
                except (urllib.error.URLError, ConnectionError):
                    assert server.poll() is None, log_path.read_text()
                    time.sleep(0.2)
            assert health == {"status": "ok", "hub": "hub", "version": "0.1.0", "database": "ok"}
            spec = get_json(f"http://127.0.0.1:{port}/openapi.json")
            assert "/health" in spec["paths"]
        finally:
            server.terminate()
            server.wait(15)
    assert "Uvicorn running on http://127.0.0.1:" in log_path.read_text()


def test_database_down_is_a_503_in_the_error_shape(hub: Hub) -> None:
    app = create_app(hub)
    hub.engine.dispose()
    hub.engine = make_engine(f"postgresql+psycopg://hdh:pw@127.0.0.1:{free_port()}/gone")
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "database_unavailable"
    assert body["error"]["retryable"] is True
    assert body["error"]["message"].startswith("cannot reach the database at ")
    assert body["error"]["hint"].startswith("check that the server is running")


def test_unexpected_errors_are_a_500_in_the_error_shape(hub: Hub) -> None:
    app = create_app(hub)

    def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom")
        page = client.get("/boom")
    # A page answers a page, saying as little.
    assert page.status_code == 500
    assert "internal error (RuntimeError)" in page.text
    assert "secret detail" not in page.text
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal error (RuntimeError)",
            "hint": "this is a bug in hdh; the traceback is in the hub's log",
            "retryable": False,
        }
    }


def test_unknown_paths_answer_in_the_error_shape(hub: Hub) -> None:
    with TestClient(create_app(hub)) as client:
        response = client.get("/api/v1/no/such/path")
        page = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["retryable"] is False
    # Outside the API, a person is answered with a page.
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-code="not_found"' in page.text
