"""Looking at queues the way a subscriber or an operator would, over a real AMQP connection."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from integrator.settings import Settings
from integrator.topology import STAGES, Topology

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
RUN = uuid.uuid4().hex[:6]
"""Marks every prefix of this test run, so that what the run left on the broker can be found."""


def new_prefix() -> str:
    return f"test-{RUN}-{uuid.uuid4().hex[:8]}"


def left_by_this_run() -> tuple[list[str], list[str]] | None:
    """The queues and exchanges of this run still on the broker, or None where the broker at
    AMQP_URL is not this machine's or `rabbitmqctl` is missing (AMQP cannot list queues).

    Every quorum queue holds three of the broker's file handle reservations; with the usual limit
    of 1024 open files, some 300 of them left behind stop the broker accepting any connection."""
    if urlsplit(AMQP_URL).hostname not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmqctl"):
        return None
    mine = f"test-{RUN}-"

    def names(kind: str) -> list[str]:
        listed = subprocess.run(["rabbitmqctl", "-q", f"list_{kind}", "name"], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL, check=True)  # fmt: skip
        return [name for name in listed.stdout.split() if name.startswith(mine)]

    return names("queues"), names("exchanges")


async def delete_names(queues: list[str], exchanges: list[str]) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


async def take(
    channel: AbstractChannel, queue: str, count: int, within: float = 15.0
) -> list[AbstractIncomingMessage]:
    """Consume exactly `count` messages from `queue`, acking them; fail if they do not all arrive."""
    q = await channel.get_queue(queue, ensure=False)
    taken: list[AbstractIncomingMessage] = []
    deadline = time.monotonic() + within
    while len(taken) < count:
        message = await q.get(no_ack=True, fail=False)
        if message is not None:
            taken.append(message)
        elif time.monotonic() > deadline:
            raise AssertionError(f"{queue}: got {len(taken)} of {count} messages in {within}s")
        else:
            await asyncio.sleep(0.02)
    return taken


async def next_message(queue: aio_pika.abc.AbstractQueue, within: float = 10) -> AbstractIncomingMessage:
    """The next message on `queue`, left unacked, waiting for it to arrive."""
    deadline = time.monotonic() + within
    while (message := await queue.get(fail=False)) is None:
        assert time.monotonic() < deadline, f"nothing arrived on {queue.name}"
        await asyncio.sleep(0.02)
    return message


async def depth(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def assert_barrier_first(channel: AbstractChannel, queue: str, barrier_id: str) -> None:
    """Assert that the first message on `queue` is the barrier: a message sent after the one under
    test, along the same path. Whatever the message under test would have put there came first."""
    [first] = await take(channel, queue, 1)
    got = {first.message_id, body(first).get("parent_id")}
    assert barrier_id in got, f"{queue}: {first.message_id} ({first.type}) arrived before the barrier"


def body(message: AbstractIncomingMessage) -> Any:
    return orjson.loads(message.body)


async def delete_topology(prefix: str, subscribers: tuple[str, ...] = ()) -> None:
    # only names are needed; the delay queues are those of the default schedule and Retry-After
    topology = Topology(prefix, delivery_limit=0, retry_schedule=Settings().retry_schedule)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queues = [topology.name(s) for s in STAGES] + [topology.accepted_queue(s) for s in subscribers]
        parked = [topology.parked_queue(s) for s in subscribers]
        delays = [topology.delay_exchange(d) for d in topology.delays]
        for queue in [*queues, topology.ledger_events, *parked, *delays]:
            await channel.queue_delete(queue)
        exchanges = [topology.name(s) for s in STAGES] + [topology.accepted, topology.ledger_events]
        for exchange in [*exchanges, *delays]:
            await channel.exchange_delete(exchange)
