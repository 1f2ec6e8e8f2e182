"""The REST API (FastAPI). Routers arrive with the domain they serve: ``/health``, and
under ``/api/v1`` (bearer tokens) the caller's identity, research projects and permits,
queries, jobs, the airlock, migrations between locations, the catalogue, the audit
trail, accounts and tokens, locations and the residency policy. The
OpenAPI document is at ``/openapi.json``.

Every error has one JSON shape: ``{"error": {"code", "message", "hint", "retryable"}}``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from hdh import __version__, db, web
from hdh.api.cache import ChangeClock, KnownTokens, ReadCache, latest_change
from hdh.api.signin import LoginLimiter
from hdh.errors import HubError, InvalidInput
from hdh.hub import Hub
from hdh.identity.service import TooManyAttempts

log = logging.getLogger("hdh.api")


class Health(BaseModel):
    status: str
    hub: str
    version: str
    database: str


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str | None
    retryable: bool


class ErrorResponse(BaseModel):
    error: ErrorBody


#: What any ``/api/v1`` route may answer besides its own success, in the one error shape
#: (JSON, whatever the route's own answer is: a file, text).
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": _ERROR_JSON}
    for status, what in (
        (401, "No token, or a bad one."),
        (403, "The caller may not do this."),
        (404, "What the request names does not exist."),
        (409, "Not in this state (the hint says what to do)."),
        (422, "The request is not valid (fields, values)."),
        (503, "A location or the database did not answer."),
    )
}


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(
        title="hdh",
        version=__version__,
        description="REST API of a sovereign health data hub.",
    )
    app.state.hub = hub
    app.state.login_limiter = LoginLimiter()
    app.state.read_cache = ReadCache()
    app.state.change_clock = ChangeClock(partial(latest_change, hub))
    app.state.known_tokens = KnownTokens()

    @app.exception_handler(HubError)
    def hub_error(request: Request, exc: HubError) -> Response:
        # The code, not the message: a message can quote a refused file's values.
        log.info("%s (%s) on %s %s", type(exc).__name__, exc.code, request.method, request.url.path)
        if web.wants_html(request):
            return web.error_page(request, exc.http_status, exc.code, exc.message, exc.hint)
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        if isinstance(exc, TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        if web.wants_html(request):
            return web.error_page(
                request,
                exc.status_code,
                codes.get(exc.status_code, f"http_{exc.status_code}"),
                str(exc.detail),
                "the menu at the top of the page leads to every page",
            )
        body = {
            "code": codes.get(exc.status_code, f"http_{exc.status_code}"),
            "message": str(exc.detail),
            "hint": "see /openapi.json for the paths and methods this service offers",
            "retryable": False,
        }
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        error = InvalidInput(
            f"{where}: {first.get('msg', 'invalid value')}",
            hint="fix the request (the OpenAPI document at /openapi.json describes it)",
        )
        if web.wants_html(request):
            fix = "correct the form or the address and send it again"
            return web.error_page(request, 422, error.code, error.message, fix)
        return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)

    @app.exception_handler(Exception)
    def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error")
        if web.wants_html(request):
            bug = "this is a bug in hdh; the traceback is in the hub's log"
            what = f"internal error ({type(exc).__name__})"
            return web.error_page(request, 500, "internal_error", what, bug)
        body = {
            "code": "internal_error",
            "message": f"internal error ({type(exc).__name__})",
            "hint": "this is a bug in hdh; the traceback is in the hub's log",
            "retryable": False,
        }
        return JSONResponse({"error": body}, status_code=500)

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": ErrorResponse, "description": "The database is unreachable."}},
        tags=["service"],
    )
    def health() -> Health:
        """Whether the service is up and its database answers."""
        db.check_connection(hub.engine, shown_as=hub.settings.database_url.get_secret_value())
        return Health(status="ok", hub=hub.settings.name, version=__version__, database="ok")

    from hdh.api import admin, catalog, migrations, operations, projects, stewardship, workspace

    routers = (catalog.router, stewardship.router, projects.router, workspace.router,
               migrations.router, admin.router, operations.router)  # fmt: skip
    for router in routers:
        app.include_router(
            router,
            responses=ERRORS,
        )
    web.install(app)
    return app


def serve(hub: Hub, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``hub``'s pages and API until interrupted (``hdh serve``, ``hdh demo``).

    Everything loaded so far (the libraries, the application) is set apart from the
    garbage collector first: a full collection otherwise walks it all again, pausing
    every request for about 0.1 s every second or two under load."""
    import gc

    import uvicorn

    app = create_app(hub)
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run()
