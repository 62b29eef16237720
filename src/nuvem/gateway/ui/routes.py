"""The dashboard's routes under /ui: sign in and out, the pages, the live feed, history.

The pages are one HTML shell (the browser script draws each page from the URL) and call
the gateway's own JSON APIs (/system/...) with the session cookie and the CSRF token, so
the dashboard can do nothing the admin API cannot, and nothing is implemented twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from nuvem.errors import BadRequest, Forbidden, Overloaded, Unauthorized
from nuvem.gateway.rate_limit import MemoryRateLimiter
from nuvem.gateway.services import Services
from nuvem.gateway.ui.session import (
    COOKIE,
    Session,
    Sessions,
    clear_cookie_header,
    cookie_header,
    sessions_of,
    signed_in,
)
from nuvem.gateway.ui.snapshot import Sampler
from nuvem.gateway.ui.stream import stream

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"
LOGIN = f"{PREFIX}/login"
MAX_FORM = 4096
SIGN_IN_BURST = 10  # attempts at once
SIGN_IN_RATE = 0.2  # attempts a second after that: one every 5 s
# Only our own files run, nothing is framed, nothing leaves for another origin.
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _platform(request: Request) -> Services:
    found: Services = request.app.state.platform
    return found


def _sampler(request: Request) -> Sampler:
    found: Sampler = request.app.state.sampler
    return found


def _sessions(request: Request) -> Sessions:
    found = sessions_of(request)
    assert found is not None, "install() puts the sessions on the app"
    return found


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _template(name: str, **values: str) -> str:
    text = (STATIC / name).read_text()
    for key, value in values.items():
        text = text.replace(f"__{key}__", html.escape(value, quote=True))
    return text


def _next_page(value: str | None) -> str:
    """Where to go after signing in: a dashboard page, never another site."""
    if not value:
        return PREFIX
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX) or "\\" in value:
        return PREFIX
    return value


def _viewer(request: Request) -> tuple[Session | None, str | None]:
    """The session a page request comes with; the admin's basic auth opens one (its cookie
    is the second item) so the page's own calls need no password."""
    sessions = _sessions(request)
    session = sessions.find(request.cookies.get(COOKIE))
    if session is not None:
        return session, None
    authorization = request.headers.get("authorization")
    if authorization:
        _platform(request).auth.check_admin(authorization)
        return sessions.open()
    return None, None


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    page = _template("login.html", ERROR=error, NEXT=_next_page(request.query_params.get("next")))
    return HTMLResponse(page, status_code=status, headers=_SECURITY)


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    """The sign-in form (or JSON `{"password": ...}`): a session cookie, then the page."""
    origin = request.headers.get("origin")
    if origin not in (None, "null") and urlsplit(origin).netloc != request.url.netloc:
        raise Forbidden(
            f"sign-in from another origin ({origin}) is refused",
            f"open {request.url.netloc}{LOGIN} itself",
        )
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadRequest("the sign-in form is too large", "send only the password field")
    password, next_page = _credentials(request, body)
    wanted_json = "application/json" in request.headers.get("accept", "")
    # One bucket for every caller: guessing from many addresses is no faster. Once it is
    # empty the admin waits too (seconds); the API's basic auth is not affected.
    wait = request.app.state.sign_ins.take("sign-in", SIGN_IN_RATE, SIGN_IN_BURST)
    if wait > 0:
        if wanted_json:
            raise Overloaded(
                "too many sign-in attempts", "wait for the time in Retry-After", retry_after=wait
            )
        page = _login_page(request, f"Too many attempts; try again in {math.ceil(wait)} s.", 429)
        page.headers["retry-after"] = str(math.ceil(wait))
        return page
    # scrypt takes tens of milliseconds: off the event loop the calls are served on.
    auth = _platform(request).auth
    if not password or not await run_in_threadpool(auth.admin_password_valid, password):
        if wanted_json:
            raise Unauthorized(
                "the admin password is wrong",
                "it is in the file `nuvem up` printed, or NUVEM_ADMIN_PASSWORD",
            )
        return _login_page(request, "That is not the admin password.", status=401)
    sessions = _sessions(request)
    _, cookie = sessions.open()
    response = RedirectResponse(_next_page(next_page), status_code=303)
    response.headers["set-cookie"] = cookie_header(
        cookie, secure=_secure(request), max_age=sessions.lifetime
    )
    return response


def _credentials(request: Request, body: bytes) -> tuple[str, str | None]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequest("the sign-in body is not JSON", 'send {"password": "..."}') from None
        if not isinstance(data, dict):
            raise BadRequest("the sign-in body is not an object", 'send {"password": "..."}')
        return str(data.get("password") or ""), None
    fields = parse_qs(body.decode("utf-8", "replace"))
    next_page = fields.get("next")
    return (fields.get("password") or [""])[0], next_page[0] if next_page else None


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session (CSRF token required, as for every unsafe call with the cookie)."""
    if signed_in(request) is None:
        raise Unauthorized("there is no dashboard session to sign out of", "sign in at /ui/login")
    _sessions(request).close(request.cookies.get(COOKIE))
    response = JSONResponse({"signed_out": True})
    response.headers["set-cookie"] = clear_cookie_header(secure=_secure(request))
    return response


def _page(request: Request) -> Response:
    session, cookie = _viewer(request)
    if session is None:
        target = quote(request.url.path, safe="/")
        return RedirectResponse(f"{LOGIN}?next={target}", status_code=303)
    page = _template("index.html", CSRF=session.csrf)
    response = HTMLResponse(page, headers=_SECURITY)
    if cookie is not None:
        response.headers["set-cookie"] = cookie_header(
            cookie, secure=_secure(request), max_age=_sessions(request).lifetime
        )
    return response


@router.get("")
def overview(request: Request) -> Response:
    return _page(request)


@router.get("/functions/{name}")
def function_page(request: Request, name: str) -> Response:
    return _page(request)


def _reader(request: Request) -> None:
    """The feed and history: a session, or the admin's basic auth (401 JSON otherwise)."""
    if signed_in(request) is None:
        _platform(request).auth.check_admin(request.headers.get("authorization"))


@router.get("/stream")
def live(request: Request) -> Response:
    _reader(request)
    return stream(_sampler(request))


@router.get("/api/history/{name}")
def history(request: Request, name: str, since: float = -math.inf) -> dict[str, Any]:
    """One function's chart points (the last 15 minutes, oldest first)."""
    _reader(request)
    _platform(request).controller.get(name)
    return {"function": name, "columns": _sampler(request).history(name, since)}


@router.get("/{page}")
def other_page(request: Request, page: str) -> Response:
    if page not in ("events", "jobs", "keys", "nodes"):
        return JSONResponse(
            {"error": f"no dashboard page {page!r}; see /ui (events, jobs, keys, nodes)"}, 404
        )
    return _page(request)


def install(api: FastAPI, platform: Services) -> Sampler:
    """Serve the dashboard from `api`; the returned sampler must be run (see `running`)."""
    sampler = Sampler(platform.metrics, lambda: platform.controller.deployments)
    api.state.sessions = Sessions()
    api.state.sign_ins = MemoryRateLimiter()
    api.state.sampler = sampler
    api.include_router(router)
    api.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    return sampler


@contextlib.asynccontextmanager
async def running(sampler: Sampler, platform: Services) -> AsyncIterator[None]:
    """The sampler's loop, for as long as the gateway serves."""
    task = asyncio.create_task(sampler.run(platform.records, platform.engine))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
