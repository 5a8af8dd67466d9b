"""The delivery phase: the deliverer POSTing copies to a local receiver that answers at once.

Copies are loaded onto the endpoints' queues first, then the deliverer starts: deliveries per
second from its first request to the receiver's last, and the deliverer's CPU per delivery
over that span (the receiver runs in a process of its own and is not counted). Then the same
with a second endpoint answering 500 to everything, to show the healthy one keeps its rate:
BENCH_ROUNDS (3) of each, alternating, and their medians.

`python -m bench.delivery receive PORT` is the receiver: 200 on /ok, 500 on /fail, and on
/count the number of requests /ok and /fail have had.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import aio_pika
import aiohttp
from aiohttp import web

from bench.corpus import bodies
from bench.procstat import cpu_seconds
from integrator import envelope
from integrator.ids import child_message_id, new_message_id
from integrator.settings import Settings
from integrator.topology import Topology
from tests.support.broker import AMQP_URL, delete_topology
from tests.support.database import create_database, drop_database
from tests.support.processes import ROOT, Stack, free_port

COPIES = int(os.environ.get("BENCH_DELIVERIES", "20000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def serve(port: int) -> None:
    seen = {"ok": 0, "fail": 0}

    async def succeed(request: web.Request) -> web.Response:
        await request.read()
        seen["ok"] += 1
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        await request.read()
        seen["fail"] += 1
        return web.Response(status=500, text="no")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=f"{seen['ok']} {seen['fail']}")

    app = web.Application()
    app.router.add_post("/ok", succeed)
    app.router.add_post("/fail", fail)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def load(topology: Topology, subscribers: list[str], count: int) -> None:
    """`count` copies of the corpus orders on each subscriber's queue, as the router leaves them."""
    corpus = bodies(100, invalid_every=0)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        accepted = await channel.get_exchange(topology.accepted)
        for subscriber in subscribers:
            for start in range(0, count, 500):
                sends = []
                for i in range(start, min(start + 500, count)):
                    parent_id = new_message_id()
                    copy_id = child_message_id(parent_id, subscriber)
                    message = aio_pika.Message(
                        corpus[i % len(corpus)], message_id=copy_id, type="order:new", delivery_mode=2,
                        content_type="application/json",
                        headers={"parent_id": parent_id, "subscriber": subscriber,
                                 "received_at": envelope.now_ms()},
                    )  # fmt: skip
                    sends.append(accepted.publish(message, routing_key=subscriber))
                await asyncio.gather(*sends)


async def run_once(workdir: Path, port: int, paths: dict[str, str], database_url: str) -> tuple[float, float]:
    """Deliveries/s to /ok, and the deliverer's CPU ms per request (to either endpoint), with
    endpoints at `paths`."""
    name = f"bench-deliver-{uuid.uuid4().hex[:6]}"
    subscriptions = workdir / f"{name}.yml"
    subscriptions.write_text("subscribers:\n" + "".join(
        f"  {sub}:\n    messages: ['order:*']\n    endpoint:\n      url: http://127.0.0.1:{port}{path}\n"
        f"      secret: {SECRET}\n" for sub, path in paths.items()))  # fmt: skip
    env = {"INTEGRATOR_SUBSCRIPTIONS": str(subscriptions), "INTEGRATOR_ALLOW_PRIVATE_ENDPOINTS": "true",
           "INTEGRATOR_DATABASE_URL": database_url}  # fmt: skip
    topology = Topology.from_settings(replace(Settings(), prefix=name))
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await topology.declare(channel, tuple(paths))
    await load(topology, list(paths), COPIES)
    stack = Stack(name, workdir / name, env)
    try:
        async with aiohttp.ClientSession() as http:
            ok0, failed0 = await _count(http, port)
            await stack.start("deliverer")
            pid = stack.service("deliverer").process.pid
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            while (ok := await _count(http, port))[0] - ok0 < COPIES:  # noqa: ASYNC110  (another process)
                await asyncio.sleep(0.05)
            elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    finally:
        stack.stop()
        await delete_topology(name, tuple(paths))
    done, failed = ok[0] - ok0, ok[1] - failed0
    return done / elapsed, cpu * 1000 / (done + failed)


async def _count(http: aiohttp.ClientSession, port: int) -> tuple[int, int]:
    """The requests the receiver has had on /ok and on /fail."""
    async with http.get(f"http://127.0.0.1:{port}/count") as response:
        ok, failed = (await response.text()).split()
        return int(ok), int(failed)


async def delivery_section() -> str:
    workdir = Path(tempfile.mkdtemp(prefix="integrator-bench-delivery-"))
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.delivery", "receive", str(port), cwd=ROOT
    )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    await _count(http, port)
                    break
                except aiohttp.ClientError:
                    assert time.monotonic() < deadline, "the receiver did not start"
                    await asyncio.sleep(0.1)
        database_url = await create_database()  # for the endpoints' switches
        try:
            alone, beside = [], []
            healthy, with_failing = {"healthy": "/ok"}, {"healthy": "/ok", "failing": "/fail"}
            for _ in range(ROUNDS):  # alternating, so that a busy spell of the host falls on both
                alone.append(await run_once(workdir, port, healthy, database_url))
                beside.append(await run_once(workdir, port, with_failing, database_url))
        finally:
            await drop_database(database_url)
    finally:
        receiver.terminate()
        await receiver.wait()
    rate, cpu = (statistics.median(r[0] for r in alone), statistics.median(r[0] for r in beside)), (
        statistics.median(r[1] for r in alone), statistics.median(r[1] for r in beside))  # fmt: skip
    change = f"{rate[1] / rate[0] - 1:+.0%} (run by run: " + ", ".join(
        f"{b[0] / a[0] - 1:+.0%}" for a, b in zip(alone, beside, strict=True)) + ")"  # fmt: skip
    return f"""
### Delivery to endpoints ({COPIES} copies loaded first, a local receiver answering at once)

Median of {ROUNDS} alternating runs each.

| measure | one endpoint | beside one answering 500 to everything | change |
|---|---|---|---|
| deliveries/s to the healthy endpoint | {rate[0]:.0f} | {rate[1]:.0f} | {change} |
| the deliverer's CPU per request, ms (the failing one's too) | {cpu[0]:.3f} | {cpu[1]:.3f} | |
"""


if __name__ == "__main__":
    if sys.argv[1:2] == ["receive"]:
        serve(int(sys.argv[2]))
    else:
        print(asyncio.run(delivery_section()))
