"""Fixed-rate pushes and an end-to-end latency probe, each its own process.

`python -m bench.latency push URL RATE SECONDS`: POST the corpus at RATE per second.
`python -m bench.latency probe QUEUE SECONDS OUT`: consume QUEUE, recording now - `received_at`
(stamped by the gateway on receipt) for every copy, as [arrival ms, latency ms] pairs in OUT.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aio_pika
import aiohttp
import orjson
import uvloop
from aiormq.abc import DeliveredMessage

from bench.corpus import bodies
from integrator.envelope import now_ms
from integrator.settings import Settings


async def push(url: str, rate: float, seconds: float) -> None:
    corpus = bodies()
    count = int(rate * seconds)
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def send(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            async with http.post(
                url + "/messages", data=corpus[i % len(corpus)], headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()

        await asyncio.gather(*(send(i) for i in range(count)))


async def probe(queue_name: str, seconds: float) -> list[tuple[int, int]]:
    """Consume without acks on the raw channel: the probe shares the machine with the hub, so it
    should cost as little as a subscriber can."""
    latencies: list[tuple[int, int]] = []
    connection = await aio_pika.connect(Settings.from_env().amqp_url)
    async with connection:
        channel = await (await connection.channel()).get_underlay_channel()

        async def on_message(message: DeliveredMessage) -> None:
            now = now_ms()
            if (received_at := message.header.properties.headers.get("received_at")) is not None:
                latencies.append((now, now - received_at))  # the reference's messages carry none

        await channel.basic_consume(queue_name, on_message, no_ack=True)
        await asyncio.sleep(seconds)
    return latencies


def main() -> None:
    role = sys.argv[1]
    if role == "push":
        asyncio.run(push(sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
    else:
        Path(sys.argv[4]).write_bytes(orjson.dumps(uvloop.run(probe(sys.argv[2], float(sys.argv[3])))))


if __name__ == "__main__":
    main()
