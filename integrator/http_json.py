"""The house format of every HTTP answer: JSON as `application/json`, errors as
`{"error": summary, "errors": [field errors]}` (and `"warnings"` where a payload had some)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web

from integrator.errors import FieldError

log = logging.getLogger("integrator.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_answer(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def error_answer(
    status: int,
    summary: str,
    errors: Sequence[FieldError] = (),
    warnings: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    answer: dict[str, object] = {"error": summary, "errors": list(errors)}
    if warnings:
        answer["warnings"] = list(warnings)
    return json_answer(answer, status, headers)


def http_error_answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 404, 405, 413 and the like, in the house format."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        summary = f"method {request.method} not allowed here; allowed: {allowed}"
        return error_answer(405, summary, headers={"Allow": allowed})
    if isinstance(exc, web.HTTPNotFound):
        return error_answer(404, f"no such path: {request.path}")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_answer(413, exc.text or "request body too large")
    return error_answer(exc.status, exc.reason)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors and any unexpected one in the house format; an unexpected error is
    logged once, with its traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return http_error_answer(request, exc)
    except ConnectionError:
        raise  # the client went away: nobody to answer (the gateway's http_errors logs it, throttled)
    except Exception:
        log.exception("unexpected error", extra={"method": request.method, "path": request.path})
        return error_answer(500, "internal error")
