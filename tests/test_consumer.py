"""The shared consume-and-ack loop, in process, against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage

from integrator import consumer as consumer_module
from integrator.consumer import Consumer, Decision, Handler, one_by_one
from integrator.envelope import with_headers
from integrator.publisher import Outbound, Publisher
from integrator.topology import Topology
from tests.support.broker import AMQP_URL, delete_topology, depth, take


@pytest.fixture
async def connection(prefix: str) -> AsyncIterator[AbstractConnection]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        yield connection
    await delete_topology(prefix)


async def run_consumer(
    connection: AbstractConnection, topology: Topology, handler: Handler, stopping: asyncio.Event
) -> asyncio.Task:
    channel = await connection.channel(publisher_confirms=True)
    await topology.declare(channel)
    publisher = await Publisher.on(channel, 5, "test")
    decide = one_by_one(handler, "test")
    consumer = Consumer(await channel.get_underlay_channel(), publisher, decide, stopping, "test")
    return asyncio.create_task(consumer.run(topology.incoming, prefetch=10))


async def publish_to_incoming(channel: AbstractChannel, topology: Topology, bodies: list[bytes]) -> None:
    """Each body as a message whose id is the body itself."""
    incoming = await channel.get_exchange(topology.incoming, ensure=False)
    for body in bodies:
        await incoming.publish(aio_pika.Message(body, message_id=body.decode()), routing_key="")


async def test_a_message_whose_handler_raises_again_on_redelivery_is_set_aside_and_the_rest_flow(
    prefix: str, connection: AbstractConnection, channel: AbstractChannel
) -> None:
    topology = Topology(prefix, delivery_limit=2)
    attempts: list[bytes] = []

    def handler(delivery: DeliveredMessage) -> Decision:
        attempts.append(delivery.body)
        if delivery.body == b"boom":
            raise ValueError("cannot handle this")
        return Decision([Outbound(topology.validated, "", delivery.body, delivery.header.properties)])

    stopping = asyncio.Event()
    consuming = await run_consumer(connection, topology, handler, stopping)
    await publish_to_incoming(channel, topology, [b"one", b"boom", b"two"])

    assert sorted(m.body for m in await take(channel, topology.validated, 2)) == [b"one", b"two"]
    [dead] = await take(channel, topology.dead, 1)
    assert dead.body == b"boom"
    assert dead.headers["x-death"][0]["reason"] == "rejected", "set aside, not worn down to the limit"
    assert attempts.count(b"boom") == 2, "the first delivery and one redelivery"
    stopping.set()
    await consuming


async def test_a_message_that_can_never_be_published_is_set_aside_at_once_and_its_batch_settles(
    prefix: str, connection: AbstractConnection, channel: AbstractChannel
) -> None:
    topology = Topology(prefix, delivery_limit=5)
    attempts: list[bytes] = []
    confirmed: list[bytes] = []

    def handler(delivery: DeliveredMessage) -> Decision:
        attempts.append(delivery.body)
        props = delivery.header.properties
        if delivery.body == b"huge":  # properties larger than a frame: FRAME_ERROR if sent
            props = with_headers(props, errors=[{"path": "/" + "k" * 200_000}])
        count = lambda: confirmed.append(delivery.body)  # noqa: E731
        return Decision([Outbound(topology.validated, "", delivery.body, props, count)])

    stopping = asyncio.Event()
    consuming = await run_consumer(connection, topology, handler, stopping)
    await publish_to_incoming(channel, topology, [b"one", b"huge", b"two"])

    assert sorted(m.body for m in await take(channel, topology.validated, 2)) == [b"one", b"two"]
    [dead] = await take(channel, topology.dead, 1)
    assert (dead.body, dead.headers["x-death"][0]["reason"]) == (b"huge", "rejected")
    assert attempts == [b"one", b"huge", b"two"], "handled once each, the connection never dropped"
    assert sorted(confirmed) == [b"one", b"two"], "what arrived is counted, what was set aside is not"
    stopping.set()
    await consuming


async def test_stop_finishes_what_was_delivered(
    prefix: str, connection: AbstractConnection, channel: AbstractChannel
) -> None:
    topology = Topology(prefix, delivery_limit=2)
    stopping = asyncio.Event()

    def handler(delivery: DeliveredMessage) -> Decision:
        stopping.set()  # asked to stop while this batch is in hand
        return Decision([Outbound(topology.validated, "", delivery.body, delivery.header.properties)])

    consuming = await run_consumer(connection, topology, handler, stopping)
    await publish_to_incoming(channel, topology, [b"m%d" % i for i in range(5)])
    await asyncio.wait_for(consuming, 10)
    left, finished = await depth(channel, topology.incoming), await depth(channel, topology.validated)
    assert finished >= 1, "the delivery in hand when the stop came was finished"
    assert left + finished == 5, "each message handled once or still queued: none lost, none doubled"
    handled = await take(channel, topology.validated, finished) + await take(channel, topology.incoming, left)
    assert sorted(m.body for m in handled) == [b"m%d" % i for i in range(5)]


@pytest.fixture
async def full(prefix: str, channel: AbstractChannel) -> AsyncIterator[str]:
    """An exchange and queue of that name that holds two messages and refuses more."""
    name = f"{prefix}.small"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT)
    queue = await channel.declare_queue(name, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    await queue.bind(exchange)
    yield name
    await queue.delete(if_unused=False, if_empty=False)
    await exchange.delete()


async def test_a_refused_publish_is_retried_until_confirmed_not_dead_lettered(
    prefix: str, connection: AbstractConnection, channel: AbstractChannel, full: str
) -> None:
    topology = Topology(prefix, delivery_limit=1)

    def handler(delivery: DeliveredMessage) -> Decision:
        return Decision([Outbound(full, "", delivery.body, delivery.header.properties)])

    stopping = asyncio.Event()
    consuming = await run_consumer(connection, topology, handler, stopping)
    await publish_to_incoming(channel, topology, [b"m%d" % i for i in range(5)])
    received = [m.body for m in await take(channel, full, 5)]  # freeing room lets the retries land
    assert sorted(received) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    stopping.set()
    await consuming  # nothing in hand any more: what the queues hold now is final
    assert [await depth(channel, q) for q in (topology.incoming, topology.dead, full)] == [0, 0, 0]


async def test_a_consumer_the_broker_stops_feeding_subscribes_again(
    prefix: str, connection: AbstractConnection, channel: AbstractChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages ready on the queue and none delivered for two checks: the consumer raises, so
    that its worker reconnects. Here the subscription is cancelled behind the consumer's back,
    as a broker that said consume-ok and then fed nothing would leave it."""
    monkeypatch.setattr(consumer_module, "STALL_CHECK_SECONDS", 0.2)
    topology = Topology(prefix, delivery_limit=20)
    seen: list[bytes] = []
    first = asyncio.Event()

    def handler(delivery: DeliveredMessage) -> Decision:
        seen.append(delivery.body)
        first.set()
        return Decision([Outbound(topology.validated, "", delivery.body, delivery.header.properties)])

    own = await connection.channel(publisher_confirms=True)
    await topology.declare(own)
    raw = await own.get_underlay_channel()
    publisher = await Publisher.on(own, 5, "test")
    consumer = Consumer(raw, publisher, one_by_one(handler, "test"), asyncio.Event(), "test")
    consuming = asyncio.create_task(consumer.run(topology.incoming, prefetch=10))
    await publish_to_incoming(channel, topology, [b"one"])
    await asyncio.wait_for(first.wait(), 10)
    for tag in list(raw.consumers):
        await raw.basic_cancel(tag)
    await publish_to_incoming(channel, topology, [b"two"])
    with pytest.raises(ConnectionError, match="1 messages ready, none delivered"):
        await asyncio.wait_for(consuming, 10)
    assert seen == [b"one"]
