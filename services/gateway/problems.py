"""Every error the gateway answers is JSON: `{"error": summary, "errors": [field errors]}`,
and `"warnings"` too when a refused payload also had some."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiohttp import web

from integrator import metrics
from integrator.errors import FieldError

log = logging.getLogger("integrator.gateway")


class Problem(Exception):
    """Raised by a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        summary: str,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
        warnings: Sequence[FieldError] = (),
        close: bool = False,
    ) -> None:
        """`close`: end the connection after the answer, as when the rest of the body cannot be read."""
        super().__init__(summary)
        self.status = status
        self.summary = summary
        self.errors = list(errors)
        self.headers = headers or {}
        self.warnings = list(warnings)
        self.close = close

    def response(self) -> web.Response:
        answer: dict[str, object] = {"error": self.summary, "errors": self.errors}
        if self.warnings:
            answer["warnings"] = self.warnings
        body = orjson.dumps(answer)
        response = web.Response(
            status=self.status, body=body, content_type="application/json", headers=self.headers
        )
        if self.close:
            response.force_close()
        return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUSH_ROUTES = ("push", "push_for_store")


@web.middleware
async def json_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn Problems, aiohttp's own 404/405/413, and any unexpected error into JSON errors of
    the same shape; an unexpected error is logged once, with its traceback."""
    try:
        return await handler(request)
    except Problem as problem:
        if request.match_info.route.name in PUSH_ROUTES and problem.status in (400, 401, 403, 413, 415, 422):
            metrics.requests.labels("denied" if problem.status in (401, 403) else "invalid").inc()
        return problem.response()
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return Problem(
            405, f"method {request.method} not allowed here; allowed: {allowed}", headers={"Allow": allowed}
        ).response()
    except web.HTTPNotFound:
        return Problem(404, f"no such path: {request.path}").response()
    except web.HTTPRequestEntityTooLarge as exc:
        return Problem(413, exc.text or "request body too large").response()
    except web.HTTPException as exc:
        return Problem(exc.status, exc.reason).response()
    except ConnectionError:
        raise  # the client went away: nobody to answer (http_errors logs it, throttled)
    except Exception:
        log.exception("unexpected error", extra={"method": request.method, "path": request.path})
        return Problem(500, "internal error").response()
