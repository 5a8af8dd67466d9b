"""The message envelope: its rules, its JSON body and its AMQP properties on every hop."""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiormq import spec

from integrator.errors import FieldError, field_error, json_type
from integrator.ids import is_object_id

FIELDS = ("message", "store_id", "payload")
"""What a sender submits; a message on a queue also carries the `message_id` the hub gave it."""
MESSAGE_TYPE = re.compile(r"[a-z][a-z0-9_]*(?::[a-z][a-z0-9_]*)+")
OBJECT_ID_RULE = "must be a BSON ObjectId: 24 hexadecimal characters"
MAX_TYPE_LENGTH = 200  # an AMQP short string holds 255 bytes; leave room for routing prefixes


def envelope_errors(doc: dict[str, Any], *, stored: bool = False) -> list[FieldError]:
    """Every violation of the envelope rules; the payload's content is the schema's business.

    `stored`: `doc` was read off a queue, so it must also carry its `message_id`.
    """
    expected = (*FIELDS, "message_id") if stored else FIELDS
    errors = [field_error(f"/{name}", "required", "is required") for name in expected if name not in doc]
    errors.extend(
        field_error(
            f"/{name}", "additionalProperties", f"is not an envelope field (expected {', '.join(expected)})"
        )
        for name in doc
        if name not in expected
    )
    if "message_id" in expected and "message_id" in doc and not is_object_id(doc["message_id"]):
        errors.append(field_error("/message_id", "pattern", OBJECT_ID_RULE))
    message = doc.get("message")
    if "message" in doc and not isinstance(message, str):
        errors.append(field_error("/message", "type", f"must be a string, got {json_type(message)}"))
    elif isinstance(message, str) and (len(message) > MAX_TYPE_LENGTH or not MESSAGE_TYPE.fullmatch(message)):
        errors.append(
            field_error(
                "/message",
                "pattern",
                "must be lower-case colon notation with at least two segments, like order:new",
            )
        )
    store_id = doc.get("store_id")
    if "store_id" in doc and not is_object_id(store_id):
        errors.append(field_error("/store_id", "pattern", OBJECT_ID_RULE))
    payload = doc.get("payload")
    if "payload" in doc and not isinstance(payload, dict):
        errors.append(field_error("/payload", "type", f"must be an object, got {json_type(payload)}"))
    return errors


def dump(
    message: str, message_id: str, store_id: str, payload_json: bytes, parent_id: str | None = None
) -> bytes:
    """The JSON body of a message on any queue; a copy also names its parent.

    The payload comes serialized, so the router encodes it once for all of a message's copies.
    """
    head: dict[str, str] = {"message": message, "message_id": message_id}
    if parent_id is not None:
        head["parent_id"] = parent_id
    head["store_id"] = store_id
    return orjson.dumps(head)[:-1] + b',"payload":' + payload_json + b"}"


def properties(message: str, message_id: str, headers: dict[str, Any]) -> spec.Basic.Properties:
    """AMQP properties of a persistent JSON message, so consumers can route without the body."""
    return spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        message_type=message,
        timestamp=datetime.now(UTC),
        headers=headers,
    )


def with_headers(props: spec.Basic.Properties, **headers: Any) -> spec.Basic.Properties:
    """A copy of `props` with `headers` added, for passing a message on with a note attached."""
    copied = copy.copy(props)
    copied.headers = {**(props.headers or {}), **headers}
    return copied


def now_ms() -> int:
    """Wall-clock milliseconds, carried in the `received_at` header to measure end-to-end latency."""
    return time.time_ns() // 1_000_000
