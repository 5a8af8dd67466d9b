"""End to end: real gateway, validator and router processes, a real broker, HTTP in, AMQP out."""

from __future__ import annotations

import asyncio

import aiohttp
from aio_pika.abc import AbstractChannel

from integrator.ids import child_message_id, is_object_id
from tests.conftest import NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.broker import assert_barrier_first, body, depth, take
from tests.support.processes import Stack

VALID_ORDER = {
    "message": "order:new",
    "store_id": OTHER_STORE,
    "payload": {
        "order": {"number": "R1", "email": "a@example.com", "line_items": [{"sku": "S", "quantity": 2}]}
    },
}


async def post(http: aiohttp.ClientSession, stack: Stack, doc: dict, path: str = "/messages") -> dict:
    async with http.post(stack.url + path, json=doc) as response:
        assert response.status == 202, await response.text()
        return await response.json()


async def barrier(http: aiohttp.ClientSession, stack: Stack) -> str:
    """Push, after the message under test, an order of the other store: every subscriber of the
    default subscriptions takes it, so it arrives after anything the earlier message caused."""
    return (await post(http, stack, {**VALID_ORDER, "store_id": OTHER_STORE}))["message_id"]


async def test_new_product_fans_out_to_every_matching_subscriber(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    answer = await post(http, stack, NEW_PRODUCT)

    assert {k: v for k, v in answer.items() if k != "message_id"} == NEW_PRODUCT
    parent_id = answer["message_id"]
    assert is_object_id(parent_id)

    copies = {}
    for subscriber in ("store", "erp"):
        [message] = await take(channel, f"{stack.prefix}.accepted.{subscriber}", 1)
        copies[subscriber] = message
        doc = body(message)
        assert list(doc) == ["message", "message_id", "parent_id", "store_id", "payload"]
        assert doc["message"] == "product:new"
        assert doc["parent_id"] == parent_id
        assert doc["store_id"] == STORE
        assert doc["payload"] == NEW_PRODUCT["payload"]
        assert doc["message_id"] == child_message_id(parent_id, subscriber)
        assert message.message_id == doc["message_id"]
        assert message.type == "product:new"
        assert message.content_type == "application/json"
        assert message.delivery_mode == 2
        assert message.timestamp is not None
        assert message.headers["parent_id"] == parent_id
        assert message.headers["store_id"] == STORE
        assert message.headers["subscriber"] == subscriber

    ids = {parent_id} | {body(m)["message_id"] for m in copies.values()}
    assert len(ids) == 3, "each copy has its own id, distinct from the parent's"
    # mailer takes order:new from the other store only; nothing else gets a copy
    await assert_barrier_first(channel, f"{stack.prefix}.accepted.mailer", await barrier(http, stack))
    for stage in ("unrouted", "rejected", "dead"):
        assert await depth(channel, f"{stack.prefix}.{stage}") == 0


async def test_store_path_form_and_store_filter(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    doc = {"message": VALID_ORDER["message"], "payload": VALID_ORDER["payload"]}
    answer = await post(http, stack, doc, f"/api/stores/{OTHER_STORE}/messages")
    assert answer["store_id"] == OTHER_STORE

    for subscriber in ("store", "erp", "mailer"):
        [message] = await take(channel, f"{stack.prefix}.accepted.{subscriber}", 1)
        assert body(message)["parent_id"] == answer["message_id"]

    # the same type from a store mailer is not restricted to reaches store and erp only
    answer = await post(http, stack, {**VALID_ORDER, "store_id": STORE})
    for subscriber in ("store", "erp"):
        [message] = await take(channel, f"{stack.prefix}.accepted.{subscriber}", 1)
        assert body(message)["parent_id"] == answer["message_id"]
    await assert_barrier_first(channel, f"{stack.prefix}.accepted.mailer", await barrier(http, stack))


async def test_message_nobody_subscribes_to_is_kept_in_unrouted(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file
) -> None:
    subscriptions_file.write_text("subscribers:\n  erp:\n    messages: ['order:*']\n")
    await stack.start("gateway", "validator", "router")
    sent = {"message": "stock:change", "store_id": STORE, "payload": {"sku": "S", "quantity": -2}}
    answer = await post(http, stack, sent)

    [message] = await take(channel, f"{stack.prefix}.unrouted", 1)
    assert body(message) == {**sent, "message_id": answer["message_id"]} | {"message": "stock:change"}
    assert message.message_id == answer["message_id"]
    await assert_barrier_first(channel, f"{stack.prefix}.accepted.erp", await barrier(http, stack))


async def test_invalid_payload_is_kept_in_rejected_with_every_error(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    # what reaches `incoming` without the gateway's check (over AMQP, replayed, or with the check
    # off) meets the validator, which keeps the refused
    stack.env["INTEGRATOR_GATEWAY_VALIDATES"] = "false"
    await stack.start("gateway", "validator", "router")
    sent = {
        "message": "order:new",
        "store_id": STORE,
        "payload": {"order": {"email": "nope", "line_items": [{"sku": "S", "quantity": "two"}]}},
    }
    answer = await post(http, stack, sent)

    [message] = await take(channel, f"{stack.prefix}.rejected", 1)
    assert body(message) == {
        "message": "order:new",
        "message_id": answer["message_id"],
        "store_id": STORE,
        "payload": sent["payload"],
    }, "the original message, untouched"
    assert message.message_id == answer["message_id"]
    errors = message.headers["errors"]
    assert [(e["path"], e["rule"]) for e in errors] == [
        ("/payload/order/email", "pattern"),
        ("/payload/order/line_items/0/quantity", "type"),
    ]
    assert errors[1]["message"] == 'must be an integer, got "two"'
    barrier_id = await barrier(http, stack)
    for subscriber in ("store", "erp", "mailer"):
        await assert_barrier_first(channel, f"{stack.prefix}.accepted.{subscriber}", barrier_id)


async def test_unknown_type_passes_by_default_and_is_rejected_when_strict(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    custom = {"message": "loyalty:points:added", "store_id": STORE, "payload": {"points": 5}}
    await stack.start("gateway", "validator", "router")
    await post(http, stack, custom)
    [message] = await take(channel, f"{stack.prefix}.accepted.store", 1)
    assert body(message)["payload"] == {"points": 5}

    stack.service("validator").stop()
    stack.env["INTEGRATOR_STRICT_SCHEMAS"] = "true"
    stack.services.pop("validator")
    await stack.start("validator")
    answer = await post(http, stack, custom)
    [message] = await take(channel, f"{stack.prefix}.rejected", 1)
    assert message.message_id == answer["message_id"]
    assert [dict(e) for e in message.headers["errors"]] == [
        {"path": "/message", "rule": "schema", "message": "no schema for message type"}
    ]


async def test_sigterm_stops_every_service_cleanly(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    answer = await post(http, stack, NEW_PRODUCT)
    await take(channel, f"{stack.prefix}.accepted.store", 1)
    for name in ("gateway", "validator", "router"):
        service = stack.service(name)
        assert service.stop() == 0, service.log_text()
        assert '"event":"stopped"' in service.log_text()
    assert answer["message_id"] in (await take(channel, f"{stack.prefix}.accepted.erp", 1))[0].body.decode()


async def test_a_conflicting_queue_stops_the_service_with_a_clear_message(
    stack: Stack, channel: AbstractChannel
) -> None:
    await channel.declare_queue(f"{stack.prefix}.incoming", durable=True)  # a classic queue, not quorum
    for name in ("validator", "gateway"):
        service = stack.service(name)
        service.launch()
        assert await asyncio.to_thread(service.process.wait, 20) == 1
        assert f"{name}: queue {stack.prefix}.incoming exists with other arguments than" in service.log_text()
        assert "choose another INTEGRATOR_PREFIX" in service.log_text()


async def test_the_quorum_size_is_declared_on_every_queue(stack: Stack, channel: AbstractChannel) -> None:
    """INTEGRATOR_QUORUM_SIZE reaches every queue's arguments: a service started without it then
    meets queues of another shape, and says so."""
    stack.env["INTEGRATOR_QUORUM_SIZE"] = "3"  # more than this one node: RabbitMQ uses what it has
    await stack.start("validator")
    stack.stop()
    stack.env["INTEGRATOR_QUORUM_SIZE"] = "0"
    service = stack.service("router")
    service.launch()
    assert await asyncio.to_thread(service.process.wait, 20) == 1
    assert f"queue {stack.prefix}.incoming exists with other arguments than" in service.log_text()
