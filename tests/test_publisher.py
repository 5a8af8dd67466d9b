"""The batching publisher against the real broker: every way a publish can end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq import spec

from integrator.aiormq_channel import BatchChannel
from integrator.publisher import Outbound, Publisher, PublishFailed, Unpublishable
from tests.support.broker import AMQP_URL, take


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    async with await aio_pika.connect(AMQP_URL) as connection:
        yield connection


@pytest.fixture
async def publisher(connection: AbstractConnection) -> Publisher:
    return await Publisher.on(await connection.channel(publisher_confirms=True), 5, "test")


@pytest.fixture
async def queue(prefix: str, channel: AbstractChannel) -> AsyncIterator[str]:
    """A classic queue holding at most two messages, refusing more: its limit is exact."""
    await channel.declare_queue(prefix, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    yield prefix
    await channel.queue_delete(prefix)


def outbound(queue: str, body: bytes, message_id: str) -> Outbound:
    return Outbound("", queue, body, spec.Basic.Properties(message_id=message_id, delivery_mode=2))


async def test_a_batch_is_confirmed_and_arrives_whole_and_in_order(
    publisher: Publisher, queue: str, channel: AbstractChannel
) -> None:
    large = bytes(range(256)) * 1200  # 300 KB: more than one frame's worth of body
    assert await publisher.publish_all([outbound(queue, large, "a"), outbound(queue, b"small", "b")]) == []
    first, second = await take(channel, queue, 2)
    assert (first.message_id, first.body) == ("a", large)
    assert (second.message_id, second.body) == ("b", b"small")


async def test_a_full_queue_refuses_only_what_did_not_fit(publisher: Publisher, queue: str) -> None:
    outs = [outbound(queue, b"m%d" % i, str(i)) for i in range(4)]
    refused = await publisher.publish_all(outs)
    assert [out.properties.message_id for out, _ in refused] == ["2", "3"]
    assert all("refused the message" in str(reason) for _, reason in refused)
    with pytest.raises(PublishFailed, match="refused the message"):
        await publisher.publish(outbound(queue, b"one more", "4"))


async def test_a_message_no_queue_takes_comes_back_and_the_rest_are_confirmed(
    publisher: Publisher, queue: str, channel: AbstractChannel
) -> None:
    nowhere = outbound(f"{queue}-missing", b"lost?", "nowhere")
    refused = await publisher.publish_all([outbound(queue, b"ok", "ok"), nowhere])
    assert [(out, "no queue took it" in str(reason)) for out, reason in refused] == [(nowhere, True)]
    [delivered] = await take(channel, queue, 1)
    assert delivered.message_id == "ok"


async def test_no_confirm_in_time_is_a_failed_publish(connection: AbstractConnection, queue: str) -> None:
    impatient = await Publisher.on(await connection.channel(publisher_confirms=True), 0, "test")
    with pytest.raises(PublishFailed, match="no confirm from the broker within 0s"):
        await impatient.publish(outbound(queue, b"slow", "slow"))


async def test_a_channel_the_broker_closes_fails_its_pending_publishes(
    publisher: Publisher, prefix: str
) -> None:
    missing_exchange = Outbound(f"{prefix}-no-such-exchange", "", b"x", spec.Basic.Properties(message_id="x"))
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await asyncio.wait_for(publisher.publish(missing_exchange), 5)
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await publisher.publish(missing_exchange)


async def test_a_message_that_can_never_be_published_fails_alone(
    publisher: Publisher, queue: str, channel: AbstractChannel
) -> None:
    unencodable = Outbound("", queue, b"?", spec.Basic.Properties(message_id="bad", headers={"x": object()}))
    huge = {"x": "k" * 200_000}
    too_large = Outbound("", queue, b"?", spec.Basic.Properties(message_id="big", headers=huge))
    anonymous = Outbound("", queue, b"?", spec.Basic.Properties())
    refused = await publisher.publish_all(
        [outbound(queue, b"same write", "same write"), unencodable, too_large, anonymous]
    )
    assert [(out, type(exc)) for out, exc in refused] == [
        (unencodable, Unpublishable), (too_large, Unpublishable), (anonymous, Unpublishable)
    ]  # fmt: skip
    reasons = [str(exc) for _, exc in refused]
    assert "Unknown type" in reasons[0]
    assert "more than the 131064 a frame holds" in reasons[1]
    assert reasons[2].endswith("it has no message_id")
    assert await publisher.publish_all([outbound(queue, b"later", "later")]) == []
    assert [m.message_id for m in await take(channel, queue, 2)] == ["same write", "later"]


async def test_the_aiormq_adapter_refuses_a_channel_it_does_not_know(connection: AbstractConnection) -> None:
    channel = await connection.channel(publisher_confirms=True)
    raw = await channel.get_underlay_channel()
    assert BatchChannel.on(raw) is not None
    raw.__dict__.pop("message_id_delivery_tag", None)  # as if an aiormq release had renamed it
    with pytest.raises(RuntimeError, match=r"aiormq 7\.2\.\d+.s channel .*: message_id_delivery_tag"):
        BatchChannel.on(raw)
    with pytest.raises(RuntimeError, match="object is not aiormq's Channel"):
        BatchChannel.on(object())
