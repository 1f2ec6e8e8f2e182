"""The hub's web pages: server-rendered HTML (Jinja2), readable without JavaScript, with
htmx (from npm, served at ``/static/htmx.min.js`` when installed) making searches, query
pages, migration progress and chain verification update in place.

Every page calls the same library functions as the command line and the API, as the
person signed in: signing in (``/login``) makes a one-day token kept in an HttpOnly,
SameSite=Strict cookie; signing out revokes it. Every form that changes something
carries a token derived from the session (``csrf``) and is refused without it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from hdh import __version__, authz
from hdh.api.deps import kept_answer, token_holder
from hdh.errors import HubError, PermissionDenied
from hdh.hub import Hub
from hdh.identity.service import AuthenticationFailed, LocalIdentity, Principal
from hdh.web import i18n

COOKIE = "hdh_session"
LANG_COOKIE = "hdh_lang"
STATIC = Path(__file__).parent / "static"

_env = Environment(
    loader=PackageLoader("hdh.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _size(value: int | float | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def format_number(value: Any, language: str = "en") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return text.replace(",", "\u202f") if language == "fr" else text


_env.filters["size"] = _size
_env.filters["urlquote"] = lambda value: quote(str(value), safe="")


class SignInNeeded(Exception):
    """A page asked for without a valid session: the answer is the sign-in page."""

    def __init__(self, after: str) -> None:
        super().__init__(after)
        self.after = after


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def language(request: Request) -> str:
    return i18n.choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def current_page(request: Request) -> str:
    """Where this page can be found again: its address when asked with GET; after a
    form, the page the form was on (a form's address answers only POST)."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path.startswith("/"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/"


def _session(request: Request) -> str:
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded(current_page(request))
    return token


async def viewer(request: Request) -> Principal:
    """Who is signed in (from the session cookie); else the sign-in page."""
    try:
        return await token_holder(request, _session(request))
    except AuthenticationFailed:
        raise SignInNeeded(current_page(request)) from None


def viewer_now(request: Request) -> Principal:
    """:func:`viewer` for code running outside the event loop (a worker thread)."""
    try:
        return LocalIdentity(hub_of(request)).authenticate_token(_session(request))
    except AuthenticationFailed:
        raise SignInNeeded(current_page(request)) from None


Viewer = Annotated[Principal, Depends(viewer)]


def csrf_token(request: Request) -> str:
    session = request.cookies.get(COOKIE, "")
    return hmac.new(session.encode(), b"hdh-csrf", hashlib.sha256).hexdigest()[:32]


def check_csrf(request: Request, given: str) -> None:
    """Refuse a form that does not carry the session's CSRF token."""
    if not request.cookies.get(COOKIE) or not hmac.compare_digest(csrf_token(request), given):
        raise PermissionDenied(
            "this form did not come from a page of this hub (its CSRF token is missing or stale)",
            hint="reload the page and send the form again",
        )


def htmx(request: Request) -> bool:
    """Whether htmx asked for a part of the page (not when it restores a page from its
    history: then the whole page is wanted)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


#: Sent with every page: nothing kept by the browser's cache (pages hold health data
#: and results), no framing, no guessing of types, no address sent to other sites.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Vary": "HX-Request, Cookie",
}


def render(
    request: Request,
    template: str,
    *,
    who: Principal | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    chosen = language(request)
    page = _env.get_template(template).render(
        request=request,
        who=who,
        lang=chosen,
        _=i18n.translator(chosen),
        num=lambda value: format_number(value, chosen),
        state=lambda code: i18n.STATES_FR.get(code, code) if chosen == "fr" else code,
        csrf=csrf_token(request) if who is not None else "",
        htmx_available=htmx_script() is not None,
        version=__version__,
        here=current_page(request),
        can=lambda action: who is not None and authz.can(who, action, None),
        query_string=lambda **values: urlencode({k: v for k, v in values.items() if v}),
        **context,
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


async def shared_part(
    request: Request,
    key: tuple[Any, ...],
    template: str,
    lazy: Callable[[], dict[str, Any]] | None = None,
    **context: Any,
) -> str:
    """A part of a page that is the same for everyone who may see it (a dataset's
    description, catalogue results) in the page's language, rendered once and kept until
    the hub next changes (``hdh.api.cache``). It must not depend on who is asking.
    ``lazy`` gives more of the context, only when the part must be rendered (in a
    worker thread: it reads the database)."""
    chosen = language(request)

    def make() -> bytes:
        if lazy is not None:
            context.update(lazy())
        return (
            _env.get_template(template)
            .render(
                lang=chosen,
                _=i18n.translator(chosen),
                num=lambda value: format_number(value, chosen),
                state=lambda code: i18n.STATES_FR.get(code, code) if chosen == "fr" else code,
                query_string=lambda **values: urlencode({k: v for k, v in values.items() if v}),
                **context,
            )
            .encode()
        )

    return (await kept_answer(request, ("page", chosen, *key), make)).decode()


def error_page(
    request: Request, status: int, code: str, message: str, hint: str | None
) -> HTMLResponse:
    """An error as a page: what went wrong and what to do."""
    who = None
    with contextlib.suppress(SignInNeeded, HubError):
        who = viewer_now(request)
    error = {"status": status, "code": code, "message": message, "hint": hint}
    template = "error_fragment.html" if htmx(request) else "error.html"
    return render(request, template, who=who, status=status, error=error)


def wants_html(request: Request) -> bool:
    """Whether a path is one of the pages (not the API, not the service's own)."""
    path = request.url.path
    return not path.startswith(("/api/", "/health", "/openapi.json", "/docs", "/redoc"))


@cache
def htmx_script() -> Path | None:
    """htmx as npm installed it in the project's folder (``make install``), if it is
    there; looked for once, never in the working directory."""
    project = Path(__file__).resolve().parents[3]  # src/hdh/web/ -> the project's folder
    candidate = project / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
    return candidate if candidate.is_file() else None


def install(app: FastAPI) -> None:
    """Add the pages to the application ``create_app`` made."""
    from hdh.web import pages

    @app.exception_handler(SignInNeeded)
    async def sign_in_first(request: Request, exc: SignInNeeded) -> Response:
        if htmx(request):
            shown = urlsplit(request.headers.get("hx-current-url", ""))
            back = shown.path + (f"?{shown.query}" if shown.query else "") or "/"
            to = f"/login?{urlencode({'next': back})}"
            return Response(status_code=401, headers={"HX-Redirect": to})
        return RedirectResponse(f"/login?{urlencode({'next': exc.after})}", status_code=303)

    app.include_router(pages.router)
