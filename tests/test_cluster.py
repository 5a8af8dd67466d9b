"""Beyond one machine: the hub over a three-node RabbitMQ cluster (`make cluster`), every quorum
queue on all three nodes, and services in several replicas.

Each test pushes CLUSTER_MESSAGES products, with Idempotency-Keys as a careful sender does, while
nodes or services die, then checks that every message that got a 202 reached every subscriber.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from integrator import stores
from integrator.ids import child_message_id
from tests.conftest import STORE, SUBSCRIPTIONS, WEBHOOK_SECRET
from tests.support.cluster import RabbitCluster
from tests.support.load import Push, product, push
from tests.support.processes import ROOT, Stack
from tests.support.receiver import Receiver
from tests.test_faults import deliveries_check
from tests.test_ledger_faults import assert_recorded_once

CLUSTER_MESSAGES = 3000
RATE = 150  # pushes a second: the stream lasts 20 s, long enough to span each fault

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RabbitCluster]:
    """Three nodes from `make cluster`, removed by `make cluster-down`."""
    workdir = tmp_path_factory.mktemp("cluster")
    made = await asyncio.to_thread(make, "cluster", workdir)
    url = next(line for line in made.splitlines() if line.startswith("AMQP_URL=")).removeprefix("AMQP_URL=")
    cluster = RabbitCluster.load(workdir)
    assert url == cluster.url and len(url.split(",")) == 3
    assert cluster.members() == sorted(node.name for node in cluster.nodes)
    yield cluster
    assert "no cluster left" in await asyncio.to_thread(make, "cluster-down", workdir)
    assert not workdir.exists() and not any(node.running() for node in cluster.nodes)


def make(target: str, workdir: Path) -> str:
    done = subprocess.run(["make", "-s", target, f"CLUSTER_DIR={workdir}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
async def on_cluster(stack: Stack, cluster: RabbitCluster) -> AsyncIterator[Stack]:
    """The test's services against the cluster; every node running again after the test."""
    stack.env |= {"AMQP_URL": cluster.url, "INTEGRATOR_QUORUM_SIZE": "3", "INTEGRATOR_LEDGER": "false"}
    yield stack
    stack.stop()
    for node in cluster.nodes:
        if not node.running():
            await node.start()


async def check_deliveries(fault: str, cluster: RabbitCluster, stack: Stack, progress: Push) -> None:
    """Every 202'd message at every subscriber, and no copy of a push that got no 202: pushes
    carry Idempotency-Keys, so a retry after an unconfirmed publish sends the same message id."""
    async with await aio_pika.connect(cluster.running()[0].url) as connection:
        results = await deliveries_check(fault, await connection.channel(), stack, progress, CLUSTER_MESSAGES)
    assert {subscriber: arrivals.unexpected for subscriber, arrivals in results.items()} == {
        "store": 0,
        "erp": 0,
    }


def message_path(stack: Stack) -> list[str]:
    """The quorum queues a product passes through."""
    return [f"{stack.prefix}.{name}" for name in ("incoming", "validated", "accepted.store", "accepted.erp")]


def pushing(progress: Push, *gateways: Stack, rate: float = RATE) -> asyncio.Future:
    """CLUSTER_MESSAGES products pushed at `rate`, split over the gateways of `gateways`, as a
    load balancer would."""
    docs = [product(i) for i in range(CLUSTER_MESSAGES)]
    share = len(gateways)
    return asyncio.gather(*(
        push(g.url, docs[i::share], progress, rate=rate / share, within=300, keyed=True)
        for i, g in enumerate(gateways)
    ))  # fmt: skip


async def test_the_leader_killed_brought_back_then_another_node_killed(
    on_cluster: Stack, cluster: RabbitCluster
) -> None:
    await on_cluster.start("gateway", "validator", "router")
    progress = Push()
    stream = pushing(progress, on_cluster)
    await progress.reached(CLUSTER_MESSAGES // 4, within=120)
    leader = cluster.leader_of(f"{on_cluster.prefix}.incoming")
    await cluster.until_safe_to_lose(leader)  # every queue's replicas are up: a healthy cluster
    leader.kill()
    # RabbitMQ 3.10.8 here has left a quorum queue without a leader, two nodes of three up, in
    # some runs (docs/scaling.md): the pushes stall until the node is back, and nothing is lost
    stalls = [] if await progress.reached_or_stalled(CLUSTER_MESSAGES // 2) else ["after the first kill"]
    await leader.start()
    await cluster.until_in_sync(message_path(on_cluster))
    await progress.reached(3 * CLUSTER_MESSAGES // 4, within=120)
    other = cluster.leader_of(f"{on_cluster.prefix}.incoming")
    if other is leader:  # leadership came back to it: kill one of the others
        other = next(node for node in cluster.nodes if node is not leader)
    await cluster.until_safe_to_lose(other)  # the node started again has caught up
    other.kill()
    if not await progress.reached_or_stalled(CLUSTER_MESSAGES):
        stalls.append("after the second kill")
    await other.start()
    await cluster.until_in_sync(message_path(on_cluster))
    await stream
    print(f"pushes stalled until the node was back: {stalls or 'never'}")
    await check_deliveries("leader SIGKILLed, back, another node SIGKILLed", cluster, on_cluster, progress)


async def test_a_rolling_restart_of_every_node_under_load(on_cluster: Stack, cluster: RabbitCluster) -> None:
    await on_cluster.start("gateway", "validator", "router")
    progress = Push()
    stream = pushing(progress, on_cluster, rate=RATE / 4)  # 75 s: enough for three restarts
    for node, at in zip(cluster.nodes, (0.1, 0.4, 0.7), strict=True):
        await progress.reached(int(at * CLUSTER_MESSAGES), within=120)
        await cluster.restart(node, message_path(on_cluster))
    restarted_at = len(progress.accepted)
    await stream
    print(f"all three nodes restarted by push {restarted_at} of {CLUSTER_MESSAGES}")
    await check_deliveries("rolling restart of three nodes", cluster, on_cluster, progress)


async def test_two_replicas_of_every_service_one_of_each_killed_mid_stream(
    on_cluster: Stack, cluster: RabbitCluster, ledger_db: asyncpg.Pool, subscriptions_file: Path
) -> None:
    """Gateway, validator, router, ledger and deliverer twice over; the gateways share the pushes,
    and an endpoint subscriber `hooks` takes every product as a signed POST."""
    async with Receiver() as receiver:
        endpoint = f'{{url: "{receiver.url}", secret: {WEBHOOK_SECRET}}}'
        hooks = f'  hooks:\n    messages: ["product:*"]\n    endpoint: {endpoint}\n'
        await asyncio.to_thread(subscriptions_file.write_text, SUBSCRIPTIONS + hooks)
        on_cluster.env |= {"INTEGRATOR_LEDGER": "true", "INTEGRATOR_ALLOW_PRIVATE_ENDPOINTS": "true"}
        replicas = Stack(on_cluster.prefix, on_cluster.workdir / "replicas", on_cluster.env)
        services = ("gateway", "validator", "router", "ledger", "deliverer")
        try:
            await on_cluster.start(*services)
            await replicas.start(*services)
            progress = Push()
            stream = pushing(progress, on_cluster, replicas)
            for i, name in enumerate(services, 1):
                await progress.reached(i * CLUSTER_MESSAGES // 7, within=120)
                replicas.service(name).kill()
                if name == "gateway":  # its share of the pushes goes to the other, as a load balancer's would
                    await replicas.start("gateway")
            await stream
            await check_deliveries("one replica of each service SIGKILLed", cluster, on_cluster, progress)
            expected = {child_message_id(parent, "hooks") for parent in progress.accepted}
            deadline = time.monotonic() + 120
            while not expected <= {r.headers["webhook-id"] for r in receiver.requests}:
                assert time.monotonic() < deadline, "a copy never reached the endpoint"
                await asyncio.sleep(0.2)
            print(f"hooks: {len(receiver.requests)} requests for {len(expected)} copies")
            await assert_recorded_once(ledger_db, progress.accepted, True, ("erp", "hooks", "store"))
        finally:
            replicas.stop()


async def test_two_gateways_share_a_store_s_rate_limit(
    on_cluster: Stack, cluster: RabbitCluster, ledger_db: asyncpg.Pool
) -> None:
    rate, burst = 20, 20
    on_cluster.env |= {"INTEGRATOR_AUTH": "true", "INTEGRATOR_STORE_RATE": str(rate),
                       "INTEGRATOR_STORE_BURST": str(burst)}  # fmt: skip
    _, token = await stores.create(ledger_db, STORE)
    second = Stack(on_cluster.prefix, on_cluster.workdir / "second", on_cluster.env)
    try:
        await on_cluster.start("gateway")
        await second.start("gateway")
        bearer = {"Authorization": f"Bearer {token}"}
        statuses: dict[int, int] = {}
        async with aiohttp.ClientSession() as http:

            async def flood(url: str, until: float) -> None:
                while time.monotonic() < until:
                    async with http.post(url + "/messages", json=product(0), headers=bearer) as response:
                        statuses[response.status] = statuses.get(response.status, 0) + 1

            start = time.monotonic()
            await asyncio.gather(*(flood(g.url, start + 3) for g in (on_cluster, second) for _ in range(4)))
            elapsed = time.monotonic() - start
        allowed = burst + rate * elapsed
        print(f"two gateways, {elapsed:.1f} s: {statuses}; the store's rate allows {allowed:.0f}")
        assert set(statuses) == {202, 429}
        assert burst <= statuses[202] <= allowed, "the rate of the store in total, not per gateway"
    finally:
        second.stop()
