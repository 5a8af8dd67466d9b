"""The publisher's own frame encoding gives pamqp's bytes for every kind of property."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiormq import spec
from pamqp.body import ContentBody
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from integrator.frames import message_frames

EVERY_PROPERTY = spec.Basic.Properties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={"store_id": "6543a1b2c3d4e5f601234567", "received_at": 1_764_000_000_000},
    delivery_mode=2,
    priority=5,
    correlation_id="c-1",
    reply_to="replies",
    expiration="60000",
    message_id="6543a1b2c3d4e5f601234567",
    timestamp=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
    message_type="order:new",
    user_id="guest",
    app_id="integrator",
)
HEADER_VALUES = {
    "small": 7,
    "negative": -40_000,
    "short unsigned": 65_535,
    "int32": 2**31 - 1,
    "uint32": 2**32 - 1,
    "int64": -(2**40),
    "flag": True,
    "ratio": 0.5,
    "exact": Decimal("1.25"),
    "nothing": None,
    "unicode": "grüße, 注文",
    "when": datetime(2026, 1, 1, tzinfo=UTC),
    "errors": [{"path": "/payload/order/email", "rule": "format"}],
    "nested": {"b": "second", "a": 1},
    "bytes": bytearray(b"\x00\xff"),
    "k" * 200: "a key pamqp truncates",
}


def pamqps(out: tuple[str, str, spec.Basic.Properties, bytes], max_chunk: int) -> bytes:
    exchange, routing_key, properties, body = out
    frames = [
        spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True),
        ContentHeader(properties=properties, body_size=len(body)),
        *(ContentBody(body[i : i + max_chunk]) for i in range(0, len(body), max_chunk)),
    ]
    return b"".join(marshal(frame, 3) for frame in frames)


@pytest.mark.parametrize(
    "properties",
    [
        spec.Basic.Properties(),
        EVERY_PROPERTY,
        spec.Basic.Properties(message_id="m", headers=HEADER_VALUES),
        spec.Basic.Properties(message_id="m", headers={}, content_type=""),
    ],
    ids=["none", "every property", "every kind of header", "empty values"],
)
@pytest.mark.parametrize(
    "body", [b"", b"{}", bytes(range(256)) * 40], ids=["empty", "small", "several frames"]
)
def test_frames_are_pamqps(properties: spec.Basic.Properties, body: bytes) -> None:
    out = ("integrator.incoming", "order:new", properties, body)
    assert message_frames(*out, channel=3, max_chunk=4096) == pamqps(out, 4096)


def test_a_string_too_long_for_a_property_is_pamqps_error() -> None:
    with pytest.raises(TypeError, match="string exceeds maximum length of 255 bytes"):
        message_frames("", "q", spec.Basic.Properties(message_id="x" * 256), b"", channel=1, max_chunk=4096)
