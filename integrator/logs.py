"""Structured logs: one JSON object per line, with a message's ids as fields so grep can follow it.

Two ways in, one output. `logging` serves everything, and `message_line` writes the info line
each service writes for every message it handles: at thousands of messages a second, a logging
record, formatter and handler cost the gateway 30-40 us a line in place, about a tenth of its
CPU per request, where `message_line` writes the same JSON in a few (docs/benchmarks.md).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CREDENTIALS = re.compile(r"(\w+://[^:/@\s]*):[^@\s]*@")


def redact(text: str) -> str:
    """`scheme://user:secret@host` as `scheme://user:***@host`: a broker URL's password never
    reaches a log line or a message to the user."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class JsonLines:
    """JSON lines on stderr, buffered: a background thread flushes every FLUSH_SECONDS and
    warnings flush at once, so an info line costs no syscall; a SIGKILL can lose the last
    fraction of a second of info lines."""

    FLUSH_SECONDS = 0.2

    def __init__(self, service: str) -> None:
        self.service = service
        self._out = io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "w", closefd=False), 1 << 16)
        self._second, self._stamp = -1, ""  # the last whole second formatted, and its text
        threading.Thread(target=self._flush_periodically, name="log-flusher", daemon=True).start()

    def write(self, created: float, level: str, event: str, fields: Iterable[tuple[str, Any]]) -> None:
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "time": f"{self._stamp}.{int((created - second) * 1000):03d}Z",
            "level": level,
            "service": self.service,
            "event": event,
        }
        entry.update(fields)
        self._out.write(orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE))
        if level != "info" and level != "debug":
            self._out.flush()

    def flush(self) -> None:
        self._out.flush()  # BufferedWriter locks, so this is safe from the flusher thread

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()


class JsonLinesHandler(logging.Handler):
    """Every logging record as a JSON line: its `extra` fields, and the traceback if any, with
    credentials redacted (message lines, written by `message_line`, carry ids only)."""

    def __init__(self, lines: JsonLines) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = [(k, _redacted(v)) for k, v in vars(record).items() if k not in _STANDARD]
            if record.exc_info:
                fields.append(("exception", redact(logging.Formatter().formatException(record.exc_info))))
            self.lines.write(record.created, record.levelname.lower(), redact(record.getMessage()), fields)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.lines.flush()


_lines: JsonLines | None = None
"""The process's output, once `configure` ran; logging's own handlers are process-wide too."""


def message_line(logger: logging.Logger, event: str, fields: dict[str, Any]) -> None:
    """What `logger.info(event, extra=fields)` writes, without the logging machinery."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if _lines is None:
        logger.info(event, extra=fields)
        return
    try:
        _lines.write(time.time(), "info", event, fields.items())
    except Exception:
        logger.exception("could not write a log line", extra={"event_lost": event})


def configure(service: str, level: str) -> None:
    global _lines
    _lines = JsonLines(service)
    root = logging.getLogger()
    root.handlers[:] = [JsonLinesHandler(_lines)]
    root.setLevel(level.upper())
    logging.getLogger("aiormq").setLevel(logging.ERROR)  # we log losses ourselves, without tracebacks
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # No line carries the caller, thread or process: skip collecting them, as the logging HOWTO's
    # "Optimization" section suggests.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
