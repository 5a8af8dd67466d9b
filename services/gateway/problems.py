"""Every error the gateway answers is in the house format (integrator/http_json.py)."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from integrator import metrics
from integrator.errors import FieldError
from integrator.http_json import Handler, error_answer


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
    """Turn Problems into their answers, counting a refused push; inside `json_errors`, which
    answers everything else."""
    try:
        return await handler(request)
    except Problem as problem:
        if request.match_info.route.name in PUSH_ROUTES and problem.status in (400, 401, 403, 413, 415, 422):
            metrics.requests.labels("denied" if problem.status in (401, 403) else "invalid").inc()
        return problem.response()
