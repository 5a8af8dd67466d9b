"""The console's application: its routes, and the middlewares every page passes through: who is
looking (a session, or the login page), a CSRF token on every change, and an error page for
whatever goes wrong, including the ledger's database or the broker being away."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from integrator.connection import BROKER_ERRORS
from integrator.db import DatabaseUnavailable
from integrator.health import add_health_routes
from integrator.http_json import Handler
from services.console import access, pages
from services.console.keys import DATABASE
from services.console.render import page, see_other

log = logging.getLogger("integrator.console")

STATIC = Path(__file__).parent / "static"
OPEN = ("/login", "/static/", "/favicon.ico", "/healthz", "/readyz", "/metrics")  # no session needed
LOGIN_COOKIE = "integrator_login"  # the login form's own CSRF token, before there is a session
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    """An HttpOnly, SameSite=Strict cookie; Secure over HTTPS, a TLS-terminating proxy's included."""
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Strict",
                        secure=secure, path="/")  # fmt: skip


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = page(request, "error.html", status=exc.status, title=exc.reason, detail=exc.text or "")
    except DatabaseUnavailable:
        response = page(request, "error.html", status=503, title="The ledger is unavailable",
                        detail="PostgreSQL does not answer; try again in a moment.")  # fmt: skip
    except BROKER_ERRORS:
        response = page(request, "error.html", status=503, title="RabbitMQ is unavailable",
                        detail="The broker does not answer; try again in a moment.")  # fmt: skip
    except Exception:
        log.exception("page failed", extra={"path": request.path})
        response = page(request, "error.html", status=500, title="Something went wrong",
                        detail="The console logged what happened.")  # fmt: skip
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but the open ones needs a session: without one, a browser goes to /login. Every
    POST with a session carries its CSRF token in the form field `csrf`."""
    if request.path.startswith(OPEN):
        return await handler(request)
    cookie = request.cookies.get(access.COOKIE)
    session = await access.session_for(request.app[DATABASE], cookie)
    if session is None:
        if request.method == "GET":
            return see_other(f"/login?next={quote(request.path_qs)}")
        raise web.HTTPForbidden(text="Log in first.")
    if request.method == "POST" and not access.same_token((await _form(request)).get("csrf"), session.csrf):
        raise web.HTTPForbidden(text="This form did not come from this session of the console.")
    request["session"] = session
    return await handler(request)


async def _form(request: web.Request) -> MultiDictProxy:
    """The posted form; one that is not text is a 400, not a failure of the console."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(text="The form could not be read.") from None


SAME_SITE_PATH = re.compile(r"/[\x21-\x5b\x5d-\x7e]*")  # printable ASCII without a backslash


def _next(target: str) -> str:
    """Where to go after logging in: a path of this site only (never //host, /\\host, or one a
    control character turns into either)."""
    return target if SAME_SITE_PATH.fullmatch(target) and not target.startswith("//") else "/"


async def login_form(request: web.Request) -> web.Response:
    """The form carries the token its cookie holds (one per browser, so that two tabs, or a
    browser's own requests sent here first, do not spoil each other's form)."""
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    target = _next(request.query.get("next", "/"))
    response = page(request, "login.html", csrf=token, next=target, problem=None)
    _cookie(request, response, LOGIN_COOKIE, token, 3600)
    return response


async def log_in(request: web.Request) -> web.Response:
    form = await _form(request)
    csrf = form.get("csrf")
    if not access.same_token(csrf, request.cookies.get(LOGIN_COOKIE, "")):
        raise web.HTTPForbidden(text="This login form has expired; load it again.")
    token, target = form.get("token"), _next(str(form.get("next", "/")))
    cookie = None
    if isinstance(token, str):
        cookie = await access.log_in(request.app[DATABASE], token)
    if cookie is None:
        return page(request, "login.html", status=401, csrf=csrf, next=target,
                    problem="That token is not an administrator's or a store's.")  # fmt: skip
    response = see_other(target)
    _cookie(request, response, access.COOKIE, cookie, access.SESSION_HOURS * 3600)
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


async def log_out(request: web.Request) -> web.Response:
    await access.log_out(request.app[DATABASE], request.cookies.get(access.COOKIE, ""))
    response = see_other("/login")
    response.del_cookie(access.COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", log_in)
    app.router.add_post("/logout", log_out)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/messages", pages.messages)
    app.router.add_get("/messages/{message_id}", pages.message)
    app.router.add_get("/held/{queue}", pages.held_list)
    app.router.add_post("/held/{queue}", pages.held_act)
    app.router.add_get("/catalogue", pages.catalogue)
    app.router.add_get("/subscriptions", pages.subscriptions_page)
    app.router.add_static("/static/", STATIC)
    add_health_routes(app, "console", lambda: True)
