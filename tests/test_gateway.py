"""The gateway process alone: every kind of bad input gets its status and nothing is published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import NEW_PRODUCT, STORE
from tests.support.broker import depth, take
from tests.support.processes import Stack, free_port

MAX_BODY = 2048


@pytest.fixture
async def gateway(stack: Stack, channel: AbstractChannel) -> AsyncIterator[Stack]:
    """A gateway with no validator behind it, so everything it publishes stays on `incoming`."""
    stack.env |= {
        "INTEGRATOR_MAX_BODY_BYTES": str(MAX_BODY),
        "INTEGRATOR_MAX_DEPTH": "4",
        "INTEGRATOR_MAX_KEYS": "10",
        "INTEGRATOR_MAX_STRING_LENGTH": "100",
    }
    await stack.start("gateway")
    yield stack
    assert await depth(channel, f"{stack.prefix}.incoming") == 0, "a rejected request published something"


async def send(
    http: aiohttp.ClientSession,
    url: str,
    data: bytes,
    content_type: str = "application/json",
    method: str = "POST",
) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with http.request(method, url, data=data, headers={"Content-Type": content_type}) as response:
        return response.status, await response.json(), response.headers


BAD_REQUESTS = [
    pytest.param(b'{"message": ', "application/json", 400, "request body is not valid JSON", id="not-json"),
    pytest.param(b"[1, 2]", "application/json", 400, "request body must be a JSON object", id="array"),
    pytest.param(b'"text"', "application/json", 400, "request body must be a JSON object", id="string"),
    pytest.param(b"", "application/json", 400, "request body is empty", id="empty"),
    pytest.param(b'{"a": NaN}', "application/json", 400, "request body is not valid JSON", id="nan"),
    pytest.param(b'{"a": "\xff"}', "application/json", 400, "request body is not valid JSON", id="not-utf8"),
    pytest.param(
        b'\xef\xbb\xbf{"a": 1}', "application/json", 400, "request body is not valid JSON", id="bom"
    ),
    pytest.param(
        b'{"a": Infinity}', "application/json", 400, "request body is not valid JSON", id="infinity"
    ),
    pytest.param(b'{"a": 1e400}', "application/json", 400, "request body is not valid JSON", id="huge-float"),
    pytest.param(
        orjson.dumps(NEW_PRODUCT),
        "text/plain",
        415,
        "content type must be application/json, got text/plain",
        id="wrong-content-type",
    ),
    pytest.param(
        orjson.dumps({**NEW_PRODUCT, "payload": {"x": "y" * MAX_BODY}}),
        "application/json",
        413,
        f"request body is larger than {MAX_BODY} bytes",
        id="too-large",
    ),
]


@pytest.mark.parametrize(("data", "content_type", "status", "error"), BAD_REQUESTS)
async def test_bad_request_bodies(
    gateway: Stack, http: aiohttp.ClientSession, data: bytes, content_type: str, status: int, error: str
) -> None:
    got_status, got, _ = await send(http, gateway.url + "/messages", data, content_type)
    assert (got_status, got["error"]) == (status, error)
    assert isinstance(got["errors"], list)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {"a": {"b": {"c": {}}}},
            {"path": "/payload/a/b/c", "rule": "maxDepth", "message": "nests deeper than 4 levels"},
        ),
        (
            {"a": [[[1]]]},
            {"path": "/payload/a/0/0", "rule": "maxDepth", "message": "nests deeper than 4 levels"},
        ),
        (
            {f"k{i}": i for i in range(11)},
            {"path": "/payload", "rule": "maxKeys", "message": "has more than 10 keys"},
        ),
        (
            {"list": list(range(11))},
            {"path": "/payload/list", "rule": "maxItems", "message": "has more than 10 items"},
        ),
        (
            {"a/b": "x" * 101},
            {"path": "/payload/a~1b", "rule": "maxLength", "message": "is longer than 100 characters"},
        ),
    ],
    ids=["deep-objects", "deep-arrays", "many-keys", "many-items", "long-string"],
)
async def test_structure_limits(
    gateway: Stack, http: aiohttp.ClientSession, payload: dict, error: dict
) -> None:
    doc = {**NEW_PRODUCT, "payload": payload}
    for path in ("/messages", "/messages/validate"):
        status, got, _ = await send(http, gateway.url + path, orjson.dumps(doc))
        assert (status, got["error"], got["errors"]) == (
            400,
            "request body exceeds a structure limit",
            [error],
        )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"message": "order:new", "message": "order:updated"}', "has the key 'message' more than once"),
        (b'{"payload": {"a": 1, "b": {"x": 1, "x" : 2}}}', "has the key 'x' more than once"),
        (
            b'{"payload": {"n": 123456789012345678901234567890}}',
            "has the integer 123456789012345678901234567890, which is not a signed 64-bit integer",
        ),
        (
            b'{"payload": {"list": [1, -9223372036854775809]}}',
            "has the integer -9223372036854775809, which is not a signed 64-bit integer",
        ),
        (
            b'{"payload": {"n": 18446744073709551615}}',
            "has the integer 18446744073709551615, which is not a signed 64-bit integer",
        ),
    ],
    ids=[
        "duplicate-key",
        "nested-duplicate-key",
        "integer-too-large",
        "negative-integer-too-large-in-a-list",
        "unsigned-64-bit",
    ],
)
async def test_ambiguous_json_is_refused(
    gateway: Stack, http: aiohttp.ClientSession, raw: bytes, message: str
) -> None:
    status, got, _ = await send(http, gateway.url + "/messages", raw)
    assert (status, got["error"], got["errors"]) == (
        400,
        "request body is ambiguous JSON",
        [{"path": "", "rule": "json", "message": message}],
    )


async def test_strings_that_look_suspicious_are_fine(gateway: Stack, http: aiohttp.ClientSession) -> None:
    """A key-like string or a long digit string makes the gateway look twice, not refuse."""
    payload = {
        "note": 'say "a": 1',
        "card": "12345678901234567890123",
        "n": 9223372036854775807,
        "x": 1.5e300,
    }
    doc = {"message": "note:added", "store_id": STORE, "payload": payload}  # a type with no schema
    status, got, _ = await send(http, gateway.url + "/messages/validate", orjson.dumps(doc))
    assert status == 200, got


async def test_every_envelope_violation_is_listed(gateway: Stack, http: aiohttp.ClientSession) -> None:
    doc = {"message": "Order New", "store_id": "123", "payload": [], "message_id": "x"}
    status, got, _ = await send(http, gateway.url + "/messages", orjson.dumps(doc))
    assert status == 422
    assert got["error"] == "invalid message envelope"
    assert [(e["path"], e["rule"]) for e in got["errors"]] == [
        ("/message_id", "additionalProperties"),
        ("/message", "pattern"),
        ("/store_id", "pattern"),
        ("/payload", "type"),
    ]


@pytest.mark.parametrize(
    ("doc", "errors"),
    [
        ({}, [("/message", "required"), ("/store_id", "required"), ("/payload", "required")]),
        ({"message": 5, "store_id": STORE, "payload": {}}, [("/message", "type")]),
        ({"message": "order", "store_id": STORE, "payload": {}}, [("/message", "pattern")]),
        ({"message": "order:", "store_id": STORE, "payload": {}}, [("/message", "pattern")]),
        (
            {"message": "order:new", "store_id": "5279008084a81693d500000z", "payload": {}},
            [("/store_id", "pattern")],
        ),
        ({"message": "order:new", "store_id": STORE, "payload": None}, [("/payload", "type")]),
    ],
    ids=["empty", "type-not-string", "one-segment", "empty-segment", "store-not-hex", "payload-null"],
)
async def test_envelope_rules(gateway: Stack, http: aiohttp.ClientSession, doc: dict, errors: list) -> None:
    status, got, _ = await send(http, gateway.url + "/messages", orjson.dumps(doc))
    assert status == 422
    assert [(e["path"], e["rule"]) for e in got["errors"]] == errors


async def test_store_in_path_must_match_body(gateway: Stack, http: aiohttp.ClientSession) -> None:
    other = "5279008084a81693d5000009"
    status, got, _ = await send(http, f"{gateway.url}/api/stores/{other}/messages", orjson.dumps(NEW_PRODUCT))
    assert status == 422
    assert got["errors"] == [
        {"path": "/store_id", "rule": "const", "message": "differs from the store in the path"}
    ]


async def test_bad_store_in_path(gateway: Stack, http: aiohttp.ClientSession) -> None:
    doc = {"message": "order:new", "payload": {}}
    status, got, _ = await send(http, f"{gateway.url}/api/stores/nope/messages", orjson.dumps(doc))
    assert status == 422
    assert [(e["path"], e["rule"]) for e in got["errors"]] == [("/store_id", "pattern")]


async def test_unknown_path_and_wrong_method(gateway: Stack, http: aiohttp.ClientSession) -> None:
    status, got, _ = await send(http, gateway.url + "/nope", b"{}")
    assert (status, got["error"]) == (404, "no such path: /nope")
    status, got, headers = await send(http, gateway.url + "/messages", b"", method="DELETE")
    assert (status, {m.strip() for m in headers["Allow"].split(",")}) == (405, {"GET", "HEAD", "POST"})


async def test_accepted_message_is_on_incoming_exactly_as_answered(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway")
    status, answer, _ = await send(http, stack.url + "/messages", orjson.dumps(NEW_PRODUCT))
    assert status == 202
    [message] = await take(channel, f"{stack.prefix}.incoming", 1)
    assert orjson.loads(message.body) == answer
    assert message.message_id == answer["message_id"]
    assert message.type == "product:new"
    assert message.headers["store_id"] == STORE
    assert isinstance(message.headers["received_at"], int)


async def test_503_with_retry_after_when_broker_unreachable(
    prefix: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    stack = Stack(prefix, tmp_path, {"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"})
    await stack.service("gateway").start("listening")
    try:
        await stack.service("gateway").wait_for_log("broker unreachable")
        status, got, headers = await send(http, stack.url + "/messages", orjson.dumps(NEW_PRODUCT))
        assert (status, got["error"], headers["Retry-After"]) == (503, "broker unavailable; retry later", "1")
    finally:
        stack.stop()


async def test_health_and_readiness(stack: Stack, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    up = stack
    down = Stack(
        stack.prefix, tmp_path / "down", {"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    )
    await up.start("gateway")
    await down.service("gateway").start("listening")
    try:
        for stack, ready in ((up, 200), (down, 503)):
            async with http.get(stack.url + "/healthz") as response:
                assert response.status == 200
            async with http.get(stack.url + "/readyz") as response:
                assert response.status == ready
    finally:
        up.stop()
        down.stop()
