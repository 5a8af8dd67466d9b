"""Reading a request body as one JSON object, with a clear 4xx for every way it can be wrong."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from integrator.errors import field_error, json_type
from services.gateway.problems import Problem


async def read_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
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
    return doc
