"""Reading a request body as one JSON object, with a clear 4xx for every way it can be wrong."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from integrator.errors import FieldError, field_error, json_pointer, json_type
from integrator.settings import Settings
from services.gateway.problems import Problem


async def read_object(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object within the size and structure limits, or a Problem."""
    max_bytes = settings.max_body_bytes
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Problem(415, f"content type must be application/json, got {content_type}")
    too_large = Problem(413, f"request body is larger than {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    try:
        raw = await request.read()  # the app's client_max_size also stops chunked bodies
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    if not raw:
        raise Problem(400, "request body is empty")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "request body is not valid JSON", [field_error("", "json", str(exc))]) from None
    if not isinstance(doc, dict):
        raise Problem(
            400,
            "request body must be a JSON object",
            [field_error("", "type", f"must be an object, got {json_type(doc)}")],
        )
    if (error := structure_error(doc, settings)) is not None:
        raise Problem(400, "request body exceeds a structure limit", [error])
    return doc


def structure_error(doc: Any, settings: Settings) -> FieldError | None:
    """The first place where `doc` nests too deep, holds too many keys or items, or a string too
    long: limits that keep one request from costing the hub more than its size suggests."""
    pending: list[tuple[Any, int, str]] = [(doc, 1, "")]
    while pending:
        value, depth, path = pending.pop()
        if isinstance(value, dict | list):
            if depth > settings.max_depth:
                return field_error(path, "maxDepth", f"nests deeper than {settings.max_depth} levels")
            if len(value) > settings.max_keys:
                what = "keys" if isinstance(value, dict) else "items"
                return field_error(path, f"max{what.title()}", f"has more than {settings.max_keys} {what}")
            children = value.items() if isinstance(value, dict) else enumerate(value)
            pending.extend((child, depth + 1, path + json_pointer((key,))) for key, child in children)
        elif isinstance(value, str) and len(value) > settings.max_string_length:
            return field_error(path, "maxLength", f"is longer than {settings.max_string_length} characters")
    return None
