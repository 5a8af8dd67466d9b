"""The one shape of a field-level error, shared by the gateway's 422s, dry runs and rejected messages."""

from __future__ import annotations

from typing import TypedDict

MAX_ERRORS = 50
"""Enough to fix a message in one go, few enough that a hostile payload cannot inflate a reply."""
MAX_PATH = 200
MAX_MESSAGE = 300
"""Characters of a path or a sentence kept: 50 errors stay far below the 128 KB an AMQP frame
carries, whatever keys a hostile payload uses (its 200,000-character key once closed the
validator's connection with FRAME_ERROR)."""


class FieldError(TypedDict):
    path: str  # JSON pointer into the whole message, e.g. "/payload/order/number"
    rule: str  # the failing rule: "required", "type", "pattern", ...
    message: str  # a short sentence a person can act on


def field_error(path: str, rule: str, message: str) -> FieldError:
    return {"path": _clipped(path, MAX_PATH), "rule": rule, "message": _clipped(message, MAX_MESSAGE)}


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_pointer(parts: object) -> str:
    """RFC 6901 pointer for a sequence of keys and indexes."""
    return "".join(
        "/" + str(part).replace("~", "~0").replace("/", "~1")
        for part in parts  # type: ignore[attr-defined]
    )


def json_type(value: object) -> str:
    """The JSON name of a value's type, for messages like "must be a string, got number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
