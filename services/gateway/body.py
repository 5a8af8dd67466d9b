"""Reading a request body as one JSON object, with a clear 4xx for every way it can be wrong."""

from __future__ import annotations

import asyncio
import json
from typing import Any, NamedTuple

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from integrator.errors import FieldError, field_error, json_pointer, json_type
from integrator.settings import Settings
from services.gateway.problems import Problem

ENCODINGS = ("identity", "gzip", "deflate")  # what aiohttp decodes


async def read_object(request: web.Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object within the size and structure limits, or a Problem."""
    max_bytes = settings.max_body_bytes
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        got = content_type[:100] if "Content-Type" in request.headers else "no Content-Type header"
        raise Problem(415, f"content type must be application/json, got {got}")
    if (request.charset or "utf-8").lower() != "utf-8":
        raise Problem(415, f"a JSON body is UTF-8, not {request.charset[:100]}")
    if request.headers.get("Content-Encoding", "identity").lower() not in ENCODINGS:
        raise Problem(415, f"content encoding must be one of {', '.join(ENCODINGS)}")
    too_large = Problem(413, f"request body is larger than {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    try:
        async with asyncio.timeout(settings.body_timeout):
            raw = await request.read()  # the app's client_max_size also stops chunked bodies
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except TimeoutError:
        raise Problem(
            408, f"request body not received within {settings.body_timeout:g} s", close=True
        ) from None
    except (HttpProcessingError, RequestPayloadError):
        raise Problem(400, "request body does not match its Content-Encoding", close=True) from None
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
    found = scan(doc, settings)
    if found.error is not None:
        raise Problem(400, "request body exceeds a structure limit", [found.error])
    # orjson silently keeps the last of duplicate keys and turns integers past 64 bits into
    # floats. Counting keys in the raw text (strings can only make it overcount) and the scan's
    # huge floats say when either may have happened; only then does a strict, slower parse decide.
    suspect = key_count(raw) != found.keys or found.huge_number
    if suspect and (error := ambiguity_error(raw)) is not None:
        raise Problem(400, "request body is ambiguous JSON", [error])
    return doc


def key_count(raw: bytes) -> int:
    """Quotes followed by a colon once JSON's whitespace is dropped: the number of keys, or more.
    Both steps run in C, at a third of the cost of finding spaced keys with a regex."""
    return raw.translate(None, b" \t\n\r").count(b'":')


class _Ambiguous(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Ambiguous(f"has the key {duplicate!r} more than once")
    return document


INT64 = (-(2**63), 2**63 - 1)
"""The integers a body may carry: signed 64-bit, what every consumer's JSON parser reads exactly."""


def _int64(text: str) -> int:
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        shown = text[:30] + ("…" if len(text) > 30 else "")
        raise _Ambiguous(f"has the integer {shown}, which is not a signed 64-bit integer")
    return value


def ambiguity_error(raw: bytes) -> FieldError | None:
    try:
        json.loads(raw, object_pairs_hook=_no_duplicates, parse_int=_int64)
    except _Ambiguous as exc:
        return field_error("", "json", str(exc))
    return None


Where = tuple[Any, ...]
"""A place in a document as (parent place, key or index), starting from (); spelled out only for an error."""


def pointer(where: Where) -> str:
    parts = []
    while where:
        where, key = where
        parts.append(key)
    return json_pointer(reversed(parts))


class Scan(NamedTuple):
    error: FieldError | None  # the first place over a structure limit
    keys: int  # in all
    huge_number: bool  # a number of 2**63 or more: maybe an integer past the signed 64-bit range


def scan(doc: dict[str, Any], settings: Settings) -> Scan:
    """Walk `doc` once for the limits that keep one request from costing more than its size
    suggests (depth, keys or items per container and in all, string length) and
    for what `read_object` must double-check. Every gateway request runs this, so it allocates
    only per container."""
    max_depth, max_keys, max_length = settings.max_depth, settings.max_keys, settings.max_string_length
    max_nodes = settings.max_nodes
    keys, nodes, huge_number = 0, 0, False
    pending: list[tuple[dict[str, Any] | list[Any], int, Where]] = [(doc, 1, ())]
    while pending:
        container, depth, where = pending.pop()
        if depth > max_depth:
            message = f"nests deeper than {max_depth} levels"
            return Scan(field_error(pointer(where), "maxDepth", message), keys, huge_number)
        if len(container) > max_keys:
            what = "keys" if type(container) is dict else "items"
            message = f"has more than {max_keys} {what}"
            return Scan(field_error(pointer(where), f"max{what.title()}", message), keys, huge_number)
        nodes += len(container)
        if nodes > max_nodes:
            message = f"has more than {max_nodes} keys and items in all"
            return Scan(field_error("", "maxNodes", message), keys, huge_number)
        if type(container) is dict:
            keys += len(container)
            children = container.items()
        else:
            children = enumerate(container)
        # orjson makes exact types, so `type(...) is` serves, and costs less than isinstance
        for key, child in children:
            kind = type(child)
            if kind is str:
                if len(child) > max_length:
                    message = f"is longer than {max_length} characters"
                    return Scan(field_error(pointer((where, key)), "maxLength", message), keys, huge_number)
            elif kind is dict or kind is list:
                pending.append((child, depth + 1, (where, key)))
            elif (kind is float and abs(child) >= 2**63) or (kind is int and child > INT64[1]):
                huge_number = True  # orjson reads 2**63 .. 2**64-1 as an int, larger ones as floats
    return Scan(None, keys, huge_number)
