"""No message can hurt another: a poison pushed through the gateway or published straight onto
`incoming` is refused or set aside on its own, while the messages around it flow on."""

from __future__ import annotations

import json

import aio_pika
import aiohttp
from aio_pika.abc import AbstractChannel

from integrator.errors import MAX_PATH
from tests.conftest import NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.broker import assert_barrier_first, body, depth, take
from tests.support.processes import Stack

POISON_PAYLOAD = {
    "order": {"number": "R1", "email": "a@b.cc", "line_items": []},
    "diff": {"k" * 200_000: "x"},  # a 200,000-character key: its error path once broke the frame limit
}


async def test_a_poison_neither_stalls_nor_takes_its_neighbours(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    neighbour = {**NEW_PRODUCT, "store_id": OTHER_STORE}
    poison = {"message": "order:updated", "store_id": STORE, "payload": POISON_PAYLOAD}
    incoming = await channel.get_exchange(f"{stack.prefix}.incoming", ensure=False)
    sent = []
    for i in range(40):
        if i == 20:
            async with http.post(stack.url + "/messages", json=poison) as response:
                refused = await response.json()
            assert response.status == 422
            [error] = refused["errors"]
            assert (error["rule"], len(error["path"])) == ("type", MAX_PATH), "the path is clipped"
            published = {**poison, "message_id": "5279008084a81693d500dead"}
            await incoming.publish(
                aio_pika.Message(json.dumps(published).encode(), message_id=published["message_id"]),
                routing_key="order:updated",
            )
        async with http.post(stack.url + "/messages", json=neighbour) as response:
            assert response.status == 202
            sent.append((await response.json())["message_id"])

    copies = await take(channel, f"{stack.prefix}.accepted.store", 40, within=10)
    assert sorted(body(c)["parent_id"] for c in copies) == sorted(sent), "all 40, none twice"
    [rejected] = await take(channel, f"{stack.prefix}.rejected", 1)
    assert rejected.message_id == "5279008084a81693d500dead"
    [error] = rejected.headers["errors"]
    assert len(error["path"]) == MAX_PATH and error["path"].endswith("…")
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
        barrier = (await response.json())["message_id"]  # after everything above, the same path
    await assert_barrier_first(channel, f"{stack.prefix}.accepted.store", barrier)
    assert await depth(channel, f"{stack.prefix}.dead") == 0
    assert "delivery_limit" not in stack.service("validator").log_text()
