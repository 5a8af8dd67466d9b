"""aiohttp's own error answers, in the house format, and logged without what the client sent.

aiohttp answers a request it cannot parse (a control character in a header, a bare LF, a folded
line) and a handler error that escapes every middleware in `RequestHandler.handle_error`: in
plain text that echoes the offending line, a token with it, and with the whole traceback logged
at ERROR each time (`RequestHandler.log_exception`, also used when a client hangs up or sends a
body its Content-Encoding does not match). aiohttp has no hook for either, so this module
replaces the two methods, and `install` checks first that they are still the ones it knows.
"""

from __future__ import annotations

import inspect
import logging
import time

from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from services.gateway.problems import Problem

log = logging.getLogger("integrator.gateway")

EXPECTED = {
    "handle_error": ["self", "request", "status", "exc", "message"],
    "log_exception": ["self", "args", "kw"],
}
SUMMARIES = {400: "malformed HTTP request", 500: "internal error", 504: "request handler timed out"}
LOG_EVERY = 1.0  # seconds between two log lines about such requests; the rest are counted


def install() -> None:
    """Replace aiohttp's plain-text error answers; refuse to start on an aiohttp whose method
    differs from the one this module was written against."""
    for name, expected in EXPECTED.items():
        method = getattr(RequestHandler, name, None)
        parameters = list(inspect.signature(method).parameters) if callable(method) else None
        if parameters != expected and method not in (_handle_error, _log_exception):
            raise RuntimeError(
                f"aiohttp's RequestHandler.{name} takes {parameters}, not {expected}: "
                "services/gateway/http_errors.py needs a look for this aiohttp version"
            )
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
    RequestHandler.log_exception = _log_exception  # type: ignore[method-assign]


class _Throttled:
    """One log line per LOG_EVERY seconds, saying how many were left out: a client that sends
    garbage or hangs up a thousand times writes a handful of lines, not a thousand tracebacks."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._left_out = 0

    def __call__(self, status: int | None, exc: BaseException | None) -> None:
        now = time.monotonic()
        if now - self._last < LOG_EVERY:
            self._left_out += 1
            return
        # the exception's type only: its text may quote the request, credentials and all
        error = type(exc).__name__ if exc is not None else None
        log.warning("request failed", extra={"status": status, "error": error, "left_out": self._left_out})
        self._last, self._left_out = now, 0


_log_failure = _Throttled()


def _handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> StreamResponse:
    _log_failure(status, exc)
    if request.writer.output_size > 0:  # as aiohttp does: the answer has started, the connection is broken
        raise ConnectionError("Response is sent already, cannot send another response with the error message")
    return Problem(status, SUMMARIES.get(status, "request failed"), close=True).response()


def _log_exception(self: RequestHandler, *args: object, **kw: object) -> None:
    exc_info = kw.get("exc_info")
    _log_failure(None, exc_info if isinstance(exc_info, BaseException) else None)
