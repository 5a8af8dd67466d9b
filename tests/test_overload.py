"""Overload: excess is shed at the door with a retryable answer; nothing accepted is lost."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aio_pika.abc import AbstractChannel

from tests.conftest import OTHER_STORE
from tests.support.broker import body, depth, take
from tests.support.load import product
from tests.support.processes import Stack
from tests.support.scrape import pushes


async def post(http: aiohttp.ClientSession, stack: Stack, doc: dict) -> tuple[int, dict, str | None]:
    async with http.post(
        stack.url + "/messages", data=orjson.dumps(doc), headers={"Content-Type": "application/json"}
    ) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


async def test_full_incoming_backlog_refuses_pushes_then_accepts_again_losing_nothing(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    stack.env["INTEGRATOR_MAX_BACKLOG"] = "20"
    await stack.start("gateway")  # nothing consumes yet: the backlog fills
    answers = [await post(http, stack, product(i)) for i in range(30)]

    accepted = [a for status, a, _ in answers if status == 202]
    # a quorum queue's limit is soft by one: it refuses once it holds more than x-max-length
    assert len(accepted) in (20, 21)
    assert [status for status, _, _ in answers[: len(accepted)]] == [202] * len(accepted)
    assert {(s, a["error"], retry) for s, a, retry in answers[len(accepted) :]} == {
        (503, "the hub is at capacity; retry later", "1")
    }
    assert await depth(channel, f"{stack.prefix}.incoming") == len(accepted)

    await stack.start("validator", "router")
    copies = await take(channel, f"{stack.prefix}.accepted.store", len(accepted))
    assert sorted(body(m)["parent_id"] for m in copies) == sorted(a["message_id"] for a in accepted)
    status, _, _ = await post(http, stack, product(99))
    assert status == 202, "accepting again once the backlog drained"


async def test_a_flooding_store_is_limited_while_another_store_gets_through(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    stack.env |= {"INTEGRATOR_STORE_RATE": "2", "INTEGRATOR_STORE_BURST": "5"}
    await stack.start("gateway")
    flood = await asyncio.gather(*(post(http, stack, product(i)) for i in range(20)))
    assert sorted(status for status, _, _ in flood) == [202] * 5 + [429] * 15
    limited = [(a["error"], retry) for status, a, retry in flood if status == 429]
    assert set(limited) == {("too many messages for this store; retry later", "1")}

    other = [await post(http, stack, {**product(i), "store_id": OTHER_STORE}) for i in range(5)]
    assert [status for status, _, _ in other] == [202] * 5
    assert await pushes(http, stack.url) == {"accepted": 10, "limited": 15}


async def test_too_many_publishes_in_flight_are_refused_at_once(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    stack.env["INTEGRATOR_GATEWAY_MAX_IN_FLIGHT"] = "1"
    await stack.start("gateway")
    answers = await asyncio.gather(*(post(http, stack, product(i)) for i in range(50)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {202, 503}
    assert {a["error"] for s, a, _ in answers if s == 503} == {"the hub is at capacity; retry later"}
    # a 202 is sent once the broker confirmed: every accepted message is on the queue by then
    assert await depth(channel, f"{stack.prefix}.incoming") == statuses.count(202)
    assert await pushes(http, stack.url) == {"accepted": statuses.count(202), "refused": statuses.count(503)}
