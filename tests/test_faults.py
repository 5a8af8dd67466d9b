"""Nothing lost: faults injected while a known stream of messages flows, real broker and processes.

Every test pushes FAULT_MESSAGES products (each goes to subscribers `store` and `erp`), retrying
503s as a client does, injects its fault mid-stream, then checks that each subscriber queue holds
a copy of every message that got a 202 (duplicates allowed, counted, and de-duplicable by id).
`make soak` runs the same tests with more messages and writes their numbers to a report.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import aio_pika
import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from integrator.connection import CONNECT_TIMEOUT
from tests.support.broker import AMQP_URL, body, depth, next_message, take
from tests.support.load import FAULT_MESSAGES, Arrivals, Push, arrivals, product, push
from tests.support.processes import Stack, free_port
from tests.support.proxy import Proxy
from tests.support.rabbit_node import NodeUnavailable, RabbitNode
from tests.test_operations import cli

BROKER = urlparse(AMQP_URL)
QUEUES_AFTER = ("incoming", "validated", "accepted.store", "accepted.erp")


async def deliveries_check(
    fault: str, channel: AbstractChannel, stack: Stack, progress: Push, sent: int = FAULT_MESSAGES
) -> dict[str, Arrivals]:
    """Assert nothing accepted was lost; print (and with INTEGRATOR_FAULT_REPORT, record) the numbers."""
    results = {}
    for subscriber in ("store", "erp"):
        queue = f"{stack.prefix}.accepted.{subscriber}"
        print(f"counting {queue}: depth {await depth(channel, queue)}", flush=True)
        results[subscriber] = await arrivals(channel, queue, progress.accepted, subscriber)
    line = {
        "fault": fault,
        "sent": sent,
        "accepted": len(progress.accepted),
        "retried": progress.retried,
        **{
            f"{s}_{k}": getattr(a, k)
            for s, a in results.items()
            for k in ("delivered", "duplicates", "unexpected", "lost")
        },
    }
    print(json.dumps(line))
    if report := os.environ.get("INTEGRATOR_FAULT_REPORT"):
        with Path(report).open("a") as f:  # noqa: ASYNC230 - one line, once per test
            f.write(json.dumps(line) + "\n")
    assert len(progress.accepted) == sent
    assert len(set(progress.accepted)) == sent
    for subscriber, result in results.items():
        assert result.lost == 0, (subscriber, result)
    return results


@pytest.fixture
async def proxy():
    proxy = await Proxy(BROKER.hostname or "localhost", BROKER.port or 5672).start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def private_broker(tmp_path: Path) -> AsyncIterator[RabbitNode]:
    """A RabbitMQ node of this test's own, which it may stop: never the machine's broker."""
    node = RabbitNode(tmp_path / "rabbit")
    try:
        await node.start()
    except NodeUnavailable as exc:
        node.remove()
        pytest.skip(f"cannot start a private RabbitMQ node: {exc}")
    yield node
    node.remove()


async def test_broker_restarted_mid_stream(stack: Stack, private_broker: RabbitNode) -> None:
    stack.env["AMQP_URL"] = private_broker.url
    await stack.start("gateway", "validator", "router")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    await progress.reached(FAULT_MESSAGES // 3)
    await private_broker.stop_app()
    refused = progress.statuses.get(503, 0)
    await progress.refused_more_than(refused)
    await private_broker.start_app()
    await pushing
    async with await aio_pika.connect(private_broker.url) as connection:
        await deliveries_check("broker restarted", await connection.channel(), stack, progress)


async def test_validator_then_router_killed_mid_stream(stack: Stack, channel: AbstractChannel) -> None:
    await stack.start("gateway", "validator", "router")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    for name, point in (("validator", 3), ("router", 2)):
        await progress.reached(FAULT_MESSAGES // point)
        stack.service(name).kill()
        await asyncio.sleep(0.3)
        await stack.start(name)
    await pushing
    await deliveries_check("validator and router SIGKILLed", channel, stack, progress)


async def test_service_connections_cut_and_restored(
    stack: Stack, channel: AbstractChannel, proxy: Proxy
) -> None:
    stack.env["AMQP_URL"] = proxy.url()
    await stack.start("gateway", "validator", "router")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    for point in (4, 2):
        await progress.reached(FAULT_MESSAGES // point)
        proxy.cut()
        await asyncio.sleep(1.0)
        proxy.restore()
    await pushing
    await deliveries_check("connections cut twice for 1s", channel, stack, progress)


async def test_gateway_503_while_broker_unreachable_then_recovers(
    stack: Stack, channel: AbstractChannel, proxy: Proxy
) -> None:
    await stack.start("validator", "router")
    stack.env["AMQP_URL"] = proxy.url()
    await stack.start("gateway")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    await progress.reached(FAULT_MESSAGES // 3)
    proxy.cut()
    accepted_before = len(progress.accepted)
    await asyncio.sleep(1.5)
    refused_while_cut = progress.statuses.get(503, 0)
    assert refused_while_cut > 0
    assert len(progress.accepted) - accepted_before <= 16, "no 202 once the link is known to be down"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            stack.url + "/messages", data=b"not JSON", headers={"Content-Type": "application/json"}
        ) as refused,
    ):
        answer = (refused.status, (await refused.json())["error"], refused.headers["Retry-After"])
    assert answer == (503, "broker unavailable; retry later", "1"), "refused before its body is read"
    proxy.restore()
    await pushing
    await stack.service("gateway").wait_for_log("accepting messages")
    await deliveries_check("gateway cut off from the broker for 1.5s", channel, stack, progress)


async def test_poison_messages_do_not_block_the_stream(stack: Stack, channel: AbstractChannel) -> None:
    await stack.start("gateway", "validator", "router")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    await progress.reached(FAULT_MESSAGES // 3)
    incoming = await channel.get_exchange(f"{stack.prefix}.incoming", ensure=False)
    validated = await channel.get_exchange(f"{stack.prefix}.validated", ensure=False)
    for poison in (b"not json", b"[1, 2]", orjson.dumps(product(0))):  # the last lacks message_id
        await incoming.publish(aio_pika.Message(poison, message_id="poison-in"), routing_key="")
    for poison in (b"\xff\xfe", orjson.dumps({"message": "order:new"})):
        await validated.publish(aio_pika.Message(poison, message_id="poison-routed"), routing_key="")
    await pushing
    await deliveries_check("poison messages mixed in", channel, stack, progress)

    rejected = await take(channel, f"{stack.prefix}.rejected", 3)
    assert [[e["path"] + " " + e["rule"] for e in m.headers["errors"]] for m in rejected] == [
        [" json"],
        [" type"],
        ["/message_id required"],
    ]
    dead = await take(channel, f"{stack.prefix}.dead", 2)
    assert [m.headers["reason"].split(":")[0] for m in dead] == ["not a validated message"] * 2
    assert [m.body for m in dead] == [b"\xff\xfe", orjson.dumps({"message": "order:new"})], "kept untouched"


async def test_subscriber_that_keeps_failing_dead_letters_after_the_limit(
    stack: Stack, channel: AbstractChannel
) -> None:
    stack.env["INTEGRATOR_DELIVERY_LIMIT"] = "2"
    await stack.start("gateway", "validator", "router")
    progress = await push(stack.url, [product(1)], Push())
    queue = await channel.get_queue(f"{stack.prefix}.accepted.erp", ensure=False)
    for _ in range(3):  # the first delivery plus `delivery limit` redeliveries
        message = await next_message(queue)
        await message.nack(requeue=True)
    [dead] = await take(channel, f"{stack.prefix}.dead", 1)
    assert body(dead)["parent_id"] == progress.accepted[0]
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    assert dead.headers["x-death"][0]["queue"] == f"{stack.prefix}.accepted.erp"


async def test_validator_and_router_stopped_with_sigterm_mid_stream_lose_and_repeat_nothing(
    stack: Stack, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    for name, point in (("validator", 3), ("router", 2)):
        await progress.reached(FAULT_MESSAGES // point)
        assert stack.service(name).stop() == 0
        await stack.start(name)
    await pushing
    results = await deliveries_check("validator and router SIGTERMed", channel, stack, progress)
    for name in ("gateway", "validator", "router"):
        assert stack.service(name).stop() == 0
    # with every service stopped nothing more can arrive: what was counted is all there is
    assert [await depth(channel, f"{stack.prefix}.{q}") for q in QUEUES_AFTER] == [0] * len(QUEUES_AFTER)
    assert {s: (r.duplicates, r.unexpected) for s, r in results.items()} == {"store": (0, 0), "erp": (0, 0)}


async def test_gateway_stopped_with_sigterm_answers_what_it_holds_truthfully(
    stack: Stack, channel: AbstractChannel
) -> None:
    await stack.start("gateway")
    gateway = stack.service("gateway")
    signalled = asyncio.Event()
    answered_after_signal = 0

    async def one(http: aiohttp.ClientSession, i: int) -> str | None:
        """The id of a 202, or None for a push the gateway never took (it stopped listening)."""
        nonlocal answered_after_signal
        try:
            async with http.post(stack.url + "/messages", json=product(i)) as response:
                if response.status != 202:
                    assert response.status == 503, await response.text()
                    return None
                answered_after_signal += signalled.is_set()
                return (await response.json())["message_id"]
        except aiohttp.ClientError:
            return None

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        pushes = [asyncio.create_task(one(http, i)) for i in range(400)]
        await asyncio.wait(pushes, return_when=asyncio.FIRST_COMPLETED)
        assert gateway.process is not None
        gateway.process.terminate()
        signalled.set()
        accepted = [a for a in await asyncio.gather(*pushes) if a is not None]
    assert await asyncio.to_thread(gateway.process.wait, 30) == 0
    assert answered_after_signal > 0, "some pushes were in flight when the signal came"
    on_incoming = {m.message_id for m in await take(channel, f"{stack.prefix}.incoming", len(accepted))}
    assert on_incoming == set(accepted), "every 202 is on incoming"
    assert await depth(channel, f"{stack.prefix}.incoming") == 0, "and nothing it did not answer 202 for"


@pytest.mark.parametrize("name", ["gateway", "validator"])
async def test_a_service_stops_at_once_while_a_silent_broker_keeps_it_connecting(
    stack: Stack, name: str
) -> None:
    with socket.socket() as silent:  # accepts TCP (the backlog does), never says a word of AMQP
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        stack.env["AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/"
        service = stack.service(name)
        # "starting" comes once its signal handlers are in place, just before its first connect,
        # which would wait CONNECT_TIMEOUT (10 s) for an answer; the stop must not wait for it
        await service.wait_for_log("starting", offset=service.launch())
        assert await asyncio.to_thread(service.stop, signal.SIGTERM, CONNECT_TIMEOUT / 2) == 0
    assert '"event":"stopped"' in service.log_text()


async def test_amqp_url_names_several_nodes_and_a_service_moves_to_another_when_its_node_goes(
    stack: Stack, private_broker: RabbitNode, channel: AbstractChannel, http: aiohttp.ClientSession
) -> None:
    """Two single nodes stand in for a cluster's: the gateway connects to the first that
    answers, and to the other once that one goes away; the CLI finds a node that answers too."""
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    stack.env["AMQP_URL"] = f"{nowhere}, {private_broker.url},{AMQP_URL}"
    gateway = await stack.service("gateway").start("accepting messages")
    assert f"127.0.0.1:{private_broker.port}" in gateway.log_text(), "the first node that answers"
    offset = len(gateway.log_text())
    await private_broker.stop_app()
    await gateway.wait_for_text('"event":"connected to broker"', within=30, offset=offset)
    connected = gateway.log_text(offset)
    assert "5672" in connected.split('"event":"connected to broker"')[1].split("\n")[0], connected
    deadline = asyncio.get_running_loop().time() + 20
    while True:  # the gateway answers 503 until its topology is declared on the new node
        async with http.post(stack.url + "/messages", json=product(1)) as response:
            if response.status == 202:
                sent = await response.json()
                break
        assert asyncio.get_running_loop().time() < deadline, "no 202 from the other node"
        await asyncio.sleep(0.1)
    (arrived,) = await take(channel, f"{stack.prefix}.incoming", 1)
    assert arrived.message_id == sent["message_id"]
    (stats, *_) = await asyncio.to_thread(cli, stack, "stats", "--interval", "0.1")
    assert stats["queue"] == f"{stack.prefix}.incoming"
