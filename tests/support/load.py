"""Pushing a known set of messages as a client would (retrying 503s), and counting what arrived."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import orjson
from aio_pika.abc import AbstractChannel

from integrator.ids import child_message_id
from tests.conftest import STORE

FAULT_MESSAGES = int(os.environ.get("INTEGRATOR_FAULT_MESSAGES", "300"))
"""Messages per fault test; `make soak` raises it."""


def product(i: int) -> dict:
    return {
        "message": "product:new",
        "store_id": STORE,
        "payload": {"id": i, "name": f"Product {i}", "price": "9.99"},
    }


@dataclass
class Push:
    """Progress of a push: parents that got a 202, and how many answers asked for a retry."""

    accepted: list[str] = field(default_factory=list)
    retried: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    async def reached(self, count: int, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, f"only {len(self.accepted)} of {count} accepted"
            await asyncio.sleep(0.01)

    async def reached_or_stalled(self, count: int, stalled_for: float = 15) -> bool:
        """True once `count` are accepted; False if none was for `stalled_for` seconds first."""
        seen, since = len(self.accepted), time.monotonic()
        while len(self.accepted) < count:
            if len(self.accepted) != seen:
                seen, since = len(self.accepted), time.monotonic()
            elif time.monotonic() - since > stalled_for:
                return False
            await asyncio.sleep(0.05)
        return True

    async def refused_more_than(self, count: int, within: float = 30) -> None:
        """Wait for a sign the gateway knows the broker is gone: more 503s than `count`."""
        deadline = time.monotonic() + within
        while self.statuses.get(503, 0) <= count:
            assert time.monotonic() < deadline, f"no 503 beyond {count} in {within}s"
            await asyncio.sleep(0.01)


async def push(
    url: str, docs: list[dict], progress: Push, rate: float = 100, concurrency: int = 16, within: float = 120,
    keyed: bool = False,
) -> Push:  # fmt: skip
    """POST every doc, `rate` new ones a second, until each gets a 202; a 503 or a dropped
    connection is retried, as clients do. The pacing makes the stream span the injected fault.
    `keyed`: each doc with an Idempotency-Key of its own, kept over its retries; a 409 (the key
    is in flight at a gateway that died) is retried after its Retry-After."""
    pending = list(reversed(list(enumerate(docs))))
    start = time.monotonic()
    deadline = start + within
    keys = uuid.uuid4().hex

    async def worker(http: aiohttp.ClientSession) -> None:
        while pending:
            index, doc = pending.pop()
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
            headers = {**JSON, "Idempotency-Key": f"{keys}-{index}"} if keyed else JSON
            while True:
                assert time.monotonic() < deadline, f"push did not finish in time: {progress.statuses}"
                wait = 0.05
                try:
                    async with http.post(
                        url + "/messages", data=orjson.dumps(doc), headers=headers
                    ) as response:
                        progress.statuses[response.status] = progress.statuses.get(response.status, 0) + 1
                        if response.status == 202:
                            progress.accepted.append((await response.json())["message_id"])
                            break
                        if keyed and response.status == 409:  # its earlier attempt's gateway died
                            wait = float(response.headers["Retry-After"])
                        else:
                            assert response.status == 503, await response.text()
                            assert response.headers["Retry-After"] == "1"
                except aiohttp.ClientError:
                    pass
                progress.retried += 1
                await asyncio.sleep(wait)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return progress


JSON = {"Content-Type": "application/json"}


@dataclass
class Arrivals:
    """What one subscriber queue held against what it should."""

    expected: int
    delivered: int  # distinct expected message ids seen
    duplicates: int  # copies of an id seen before
    unexpected: int  # ids of parents the client never got a 202 for (a retried push the broker kept)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered


async def arrivals(
    channel: AbstractChannel, queue: str, parents: list[str], subscriber: str, within: float = 90
) -> Arrivals:
    """Consume `queue` until every expected child arrived (or time runs out), then until quiet."""
    expected = {child_message_id(p, subscriber) for p in parents}
    seen: set[str] = set()
    duplicates = unexpected = 0
    q = await channel.get_queue(queue, ensure=False)
    deadline = time.monotonic() + within
    quiet_since = None
    while True:
        try:
            # a get can stall when the test's own event loop is busy proxying; ask again
            message = await q.get(no_ack=True, fail=False, timeout=5)
        except TimeoutError:
            continue
        if message is None:
            if expected <= seen:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
            elif time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
            continue
        quiet_since = None
        message_id = message.message_id
        if message_id in seen:
            duplicates += 1
        elif message_id in expected:
            seen.add(message_id)
        else:
            unexpected += 1
            seen.add(message_id)
    return Arrivals(len(expected), len(seen & expected), duplicates, unexpected)
