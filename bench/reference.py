"""The reference: the same topology relayed plainly with aio-pika, as a first version would be.

Consume, publish with a confirm awaited per message, ack; one copy per subscriber. Run as
`python -m bench.reference feed|validate|route PREFIX`. `naive-gateway` is the matching plain
aiohttp handler that awaits one confirm per request.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aio_pika
from aiohttp import web
from bson import ObjectId

from bench.corpus import SUBSCRIBERS, bodies
from integrator.settings import Settings
from integrator.topology import Topology

URL = Settings.from_env().amqp_url


async def feed(topology: Topology) -> None:
    """Publish the corpus to incoming forever, one awaited confirm at a time."""
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(topology.incoming)
    corpus = bodies()
    i = 0
    while True:
        body = corpus[i % len(corpus)]
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=2, message_id=str(ObjectId())), routing_key=""
        )
        i += 1


async def relay(topology: Topology, source: str, targets: list[tuple[str, str]]) -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=256)
    exchanges = {name: await channel.get_exchange(name) for name, _ in targets}
    queue = await channel.get_queue(source)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        for exchange, key in targets:
            copy = aio_pika.Message(
                message.body,
                delivery_mode=2,
                message_id=str(ObjectId()),
                headers={"parent_id": message.message_id},
            )
            await exchanges[exchange].publish(copy, routing_key=key)
        await message.ack()

    await queue.consume(on_message)
    await asyncio.Future()


def naive_gateway(topology: Topology, port: int) -> None:
    async def post_message(request: web.Request) -> web.Response:
        doc = await request.json()
        doc["message_id"] = str(ObjectId())
        body = json.dumps(doc).encode()
        await request.app["exchange"].publish(
            aio_pika.Message(body, delivery_mode=2, message_id=doc["message_id"]), routing_key=""
        )
        return web.json_response(doc, status=202)

    async def connect(app: web.Application) -> None:
        app["connection"] = await aio_pika.connect(URL)
        channel = await app["connection"].channel(publisher_confirms=True)
        app["exchange"] = await channel.get_exchange(topology.incoming)

    async def disconnect(app: web.Application) -> None:
        await app["connection"].close()

    app = web.Application()
    app.on_startup.append(connect)
    app.on_cleanup.append(disconnect)
    app.router.add_post("/messages", post_message)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    role, prefix = sys.argv[1], sys.argv[2]
    topology = Topology(prefix, delivery_limit=20)
    if role == "feed":
        asyncio.run(feed(topology))
    elif role == "validate":
        asyncio.run(relay(topology, topology.incoming, [(topology.validated, "")]))
    elif role == "route":
        asyncio.run(relay(topology, topology.validated, [(topology.accepted, s) for s in SUBSCRIBERS]))
    elif role == "naive-gateway":
        naive_gateway(topology, int(sys.argv[3]))


if __name__ == "__main__":
    main()
