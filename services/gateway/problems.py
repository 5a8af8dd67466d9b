"""Every error the gateway answers is in the house format (integrator/http_json.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from integrator import metrics
from integrator.errors import FieldError
from integrator.http_json import Handler, error_answer, http_error_answer

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
        response = error_answer(self.status, self.summary, self.errors, self.warnings, self.headers)
        if self.close:
            response.force_close()
        return response


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
    except web.HTTPException as exc:
        return http_error_answer(request, exc)
    except ConnectionError:
        raise  # the client went away: nobody to answer (http_errors logs it, throttled)
    except Exception:
        log.exception("unexpected error", extra={"method": request.method, "path": request.path})
        return Problem(500, "internal error").response()
