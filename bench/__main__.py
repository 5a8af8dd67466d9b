"""`python -m bench` (`make bench`): the hub against a plain reference, in one run, on this machine.

Every phase runs real processes on the local broker under its own prefix; the load comes from
`wrk` (or a paced Python client for fixed rates), never from inside a service process. Results
are printed as a markdown report for docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp
import orjson

from bench.corpus import INVALID_EVERY, SUBSCRIBERS, SUBSCRIPTIONS, bodies, costly_dry_run_script, wrk_script
from bench.delivery import delivery_section
from bench.filters import filter_section
from bench.procstat import broker_pid, cpu_seconds, machine_cpu_seconds, rss_mb
from bench.rate_limit import rate_limit_section
from integrator import db, stores
from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from integrator.topology import Topology
from tests.support.broker import delete_topology
from tests.support.cluster import RabbitCluster
from tests.support.database import create_database, drop_database
from tests.support.processes import ROOT, Stack, free_port
from tests.support.rabbit_node import RabbitNode

AMQP_URL = Settings.from_env().amqp_url
WARMUP = float(os.environ.get("BENCH_WARMUP_SECONDS", "5"))
WINDOW = float(os.environ.get("BENCH_SECONDS", "15"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "15"))
OVERLOAD_SECONDS = float(os.environ.get("BENCH_OVERLOAD_SECONDS", "60"))
RSS_EVERY = 30.0
FLOOD_FACTOR = float(os.environ.get("BENCH_FLOOD_FACTOR", "3"))
BENCH_ENV = {"INTEGRATOR_STORE_RATE": "0", "INTEGRATOR_LEDGER": "false"}
"""One store drives the load: no per-store limit. No ledger but in the phases that run it, so
that no queue fills that nothing reads."""
PROBED, COUNTED = "store", "erp"
"""Every valid original reaches both: the latency probe consumes `store` in every phase that
delivers (so saturation and the flood pay for the same consumer), and depths are read on `erp`."""


@dataclass
class Saturation:
    originals_per_s: float
    copies_per_s: float
    cpu_ms_per_original: dict[str, float]  # per process, plus "hub" and "machine"
    rss_mb: list[tuple[float, dict[str, float]]]  # (seconds into the window, per service), every RSS_EVERY s
    ingest_per_s: float
    refused_per_s: float = 0.0  # 503s over the whole run, for the hub
    latency: dict[str, float] | None = None  # of copies arriving in the window, for the hub
    ledger_lag_p99: float | None = None  # seconds, from the ledger's histogram, when it ran
    ledger_lag_series: list[tuple[float, float]] = field(default_factory=list)  # p99 of each RSS_EVERY s


def prefix(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:6]}"


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    return (await channel.declare_queue(queue, passive=True)).declaration_result.message_count or 0


async def declare(name: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        await Topology(name, 20).declare(await connection.channel(), SUBSCRIBERS)


def wrk(url: str, script: Path, seconds: float, connections: int = 32) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(script), url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def requests_per_s(wrk_output: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", wrk_output).group(1))


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})})


async def wait_for_port(port: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def refused_at_the_door(gateway_url: str) -> int:
    """Pushes the gateway answered 422 so far (its requests counter)."""
    async with aiohttp.ClientSession() as http, http.get(gateway_url + "/metrics") as response:
        found = re.search(
            r'^integrator_gateway_requests_total\{outcome="invalid"\} (\S+)$', await response.text(), re.M
        )
    return int(float(found.group(1))) if found else 0


async def measure(
    name: str,
    pids: dict[str, int],
    extra_pids: dict[str, int],
    gateway_urls: tuple[str, ...] = (),
    ledger_url: str | None = None,
    broker: Broker | None = None,
) -> Saturation:
    """Over WINDOW seconds after WARMUP: originals reaching subscriber COUNTED, or `rejected`, or
    refused at the gateways' door (422); CPU per original. With `ledger_url`, the ledger's lag
    p99 over each RSS_EVERY seconds, and over the whole run. `broker`: the machine's unless given."""
    topology = Topology(name, 20)
    broker = broker or Broker.machines()
    watched = pids | broker.pids
    async with await aio_pika.connect(broker.first_url) as connection:
        channel = await connection.channel()
        await asyncio.sleep(WARMUP)

        async def counts() -> tuple[int, int, int]:
            """Originals handled (delivered, rejected or refused at the door), valid ones, and
            originals taken in (delivered, rejected or still on `incoming`)."""
            valid = await depth(channel, topology.accepted_queue(COUNTED))
            rejected = await depth(channel, topology.rejected)
            refused = sum([await refused_at_the_door(url) for url in gateway_urls])
            incoming = await depth(channel, topology.incoming)
            return valid + rejected + refused, valid, valid + rejected + incoming

        rss = [(0.0, {k: rss_mb(p) for k, p in pids.items()})]
        lags, buckets = [], await lag_buckets(ledger_url) if ledger_url else []
        cpu0 = {k: cpu_seconds(p) for k, p in {**watched, **extra_pids}.items()}
        machine0, (done0, valid0, in0), t0 = machine_cpu_seconds(), await counts(), time.monotonic()
        while (left := t0 + WINDOW - time.monotonic()) > 0:
            await asyncio.sleep(min(left, RSS_EVERY))
            into = time.monotonic() - t0
            rss.append((into, {k: rss_mb(p) for k, p in pids.items()}))
            if ledger_url:
                previous, buckets = buckets, await lag_buckets(ledger_url)
                lags.append((into, p99_bucket(buckets, previous)))
        done1, valid1, in1 = await counts()
        elapsed, machine1 = time.monotonic() - t0, machine_cpu_seconds()
        cpu1 = {k: cpu_seconds(p) for k, p in {**watched, **extra_pids}.items()}
    originals = max(done1 - done0, 1)
    per = {k: (cpu1[k] - cpu0[k]) * 1000 / originals for k in cpu0}
    per["hub"] = sum(per[k] for k in watched)
    per["machine"] = (machine1 - machine0) * 1000 / originals
    copies_per_original = len(SUBSCRIBERS)  # order:new reaches every subscriber
    return Saturation(
        originals_per_s=originals / elapsed,
        copies_per_s=(valid1 - valid0) * copies_per_original / elapsed,
        cpu_ms_per_original=per,
        rss_mb=rss,
        ingest_per_s=(in1 - in0) / elapsed,
        ledger_lag_p99=p99_bucket(buckets) if ledger_url else None,
        ledger_lag_series=lags,
    )


@dataclass
class GatewayRun:
    requests_per_s: float
    gateway_cpu_ms: float  # per request, the gateway process
    broker_cpu_ms: float  # per request, RabbitMQ


async def drive_gateway(url: str, pid: int, script: Path, seconds: int) -> GatewayRun:
    broker = broker_pid()
    before = (cpu_seconds(pid), cpu_seconds(broker) if broker else 0.0)
    output = (await asyncio.to_thread(wrk(url, script, seconds).communicate))[0]
    after = (cpu_seconds(pid), cpu_seconds(broker) if broker else 0.0)
    rate = requests_per_s(output)
    count = rate * seconds
    return GatewayRun(rate, (after[0] - before[0]) * 1000 / count, (after[1] - before[1]) * 1000 / count)


GATEWAY_ROUNDS = 5
CHECK_CALLS = 2000


def payload_check_ms() -> list[float]:
    """The gateway's added stage measured in-process, where the noise of a shared machine does
    not drown it: CPU per `check_payload` of a valid corpus order, for each of GATEWAY_ROUNDS runs."""
    catalogue = SchemaCatalogue.load(ROOT / "schemas")
    payloads = [orjson.loads(b)["payload"] for b in bodies(100, invalid_every=0)]
    runs = []
    for _ in range(GATEWAY_ROUNDS):
        started = time.process_time()
        for i in range(CHECK_CALLS):
            catalogue.check_payload("order:new", payloads[i % len(payloads)])
        runs.append((time.process_time() - started) * 1000 / CHECK_CALLS)
    return runs


async def gateway_phase(workdir: Path) -> dict[str, list[GatewayRun]]:
    """Ours, ours without the payload check at the door, and the naive handler, all running,
    driven in turns of WINDOW / GATEWAY_ROUNDS seconds with valid orders only (every one is
    published): the machine's speed drifts by tens of percent over a minute, and taking turns
    lets the drift touch all alike."""
    script = workdir / "valid.lua"
    script.write_text(wrk_script(invalid_every=0))
    ours, unchecked, naive_name, port = prefix("gw"), prefix("gwoff"), prefix("naive"), free_port()
    publishing = {"INTEGRATOR_MAX_BACKLOG": "0", **BENCH_ENV}  # publishing, not shedding
    stack = Stack(ours, workdir / "gw", publishing)
    unchecked_stack = Stack(
        unchecked, workdir / "gwoff", {**publishing, "INTEGRATOR_GATEWAY_VALIDATES": "false"}
    )
    await stack.start("gateway")
    await unchecked_stack.start("gateway")
    await declare(naive_name)
    naive = python("-m", "bench.reference", "naive-gateway", naive_name, str(port))
    try:
        await wait_for_port(port)
        await asyncio.sleep(1)
        targets = {
            "ours": (stack.url, stack.service("gateway").process.pid, Topology(ours, 20).incoming),
            "unchecked": (
                unchecked_stack.url,
                unchecked_stack.service("gateway").process.pid,
                Topology(unchecked, 20).incoming,
            ),
            "naive": (f"http://127.0.0.1:{port}", naive.pid, Topology(naive_name, 20).incoming),
        }
        turns: dict[str, list[GatewayRun]] = {name: [] for name in targets}
        seconds = max(1, round(WINDOW / GATEWAY_ROUNDS))
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            for _ in range(GATEWAY_ROUNDS):
                for name, (url, pid, incoming) in targets.items():
                    turns[name].append(await drive_gateway(url, pid, script, seconds))
                    await (await channel.get_queue(incoming, ensure=False)).purge()  # each turn starts empty
    finally:
        naive.terminate()
        naive.wait()
        stack.stop()
        unchecked_stack.stop()
        for name in (ours, unchecked, naive_name):
            await delete_topology(name, SUBSCRIBERS)
    return turns


def median_run(turns: list[GatewayRun]) -> GatewayRun:
    return GatewayRun(
        statistics.median(t.requests_per_s for t in turns),
        statistics.median(t.gateway_cpu_ms for t in turns),
        statistics.median(t.broker_cpu_ms for t in turns),
    )


def probe(name: str, seconds: float, out: Path, amqp_url: str = AMQP_URL) -> subprocess.Popen[bytes]:
    """The latency probe on subscriber PROBED's queue, recording to `out` for `seconds`."""
    queue = Topology(name, 20).accepted_queue(PROBED)
    return python("-m", "bench.latency", "probe", queue, str(seconds), str(out), env={"AMQP_URL": amqp_url})


def arrivals(out: Path) -> list[tuple[int, int]]:
    """What a probe recorded: (arrival ms, latency ms) per copy."""
    return orjson.loads(out.read_bytes())


def warm(copies: list[tuple[int, int]], started: float, ended: float = float("inf")) -> list[int]:
    """Latencies of the copies that arrived after the warm-up that began at `started` (ms), up to `ended`."""
    return [latency for t, latency in copies if started + WARMUP * 1000 <= t <= ended]


@dataclass(frozen=True)
class Broker:
    """Where a phase's RabbitMQ is: AMQP_URL for the services, and the VMs whose CPU counts."""

    url: str
    pids: dict[str, int]

    @classmethod
    def machines(cls) -> Broker:
        """The machine's broker; its VM's CPU when it runs here."""
        pid = broker_pid()
        return cls(AMQP_URL, {"rabbitmq": pid} if pid else {})

    @property
    def first_url(self) -> str:
        return self.url.split(",")[0]


async def reference_phase(workdir: Path) -> Saturation:
    name = prefix("ref")
    await declare(name)
    procs = {role: python("-m", "bench.reference", role, name) for role in ("validate", "route", "feed")}
    procs["probe"] = probe(name, WARMUP + WINDOW + 2, workdir / "reference-latency.json")
    try:
        return await measure(name, {"validate": procs["validate"].pid, "route": procs["route"].pid},
                             {"feed": procs["feed"].pid, "probe": procs["probe"].pid})  # fmt: skip
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait()
        await delete_topology(name, SUBSCRIBERS)


async def hub_phase(
    workdir: Path, subscriptions: Path, database_url: str | None = None, replicas: int = 1,
    broker: Broker | None = None,
) -> Saturation:  # fmt: skip
    """The hub pushed by 64 connections that send as fast as answers come: more than it can
    take, so the gateway refuses the excess and the pipeline stays full. With `database_url`,
    the ledger runs too, writing there. `replicas` of every service, the connections shared
    among the gateways; on `broker` (the machine's by default), its quorum queues on every node."""
    name = prefix("hub")
    broker = broker or Broker.machines()
    env = {"INTEGRATOR_SUBSCRIPTIONS": str(subscriptions), **BENCH_ENV, **with_ledger(database_url),
           "AMQP_URL": broker.url}  # fmt: skip
    label = f"hub{'-ledger' if database_url else ''}{f'-x{replicas}' if replicas > 1 else ''}"
    stacks = [Stack(name, workdir / f"{label}-{i}", env) for i in range(replicas)]
    services = ("gateway", "validator", "router", *(("ledger",) if database_url else ()))
    for stack in stacks:
        await stack.start(*services)
    script = workdir / "saturation.lua"
    script.write_text(wrk_script(count_statuses=True))
    seconds = WARMUP + WINDOW + 2
    out = workdir / "saturation-latency.json"
    latency_probe = probe(name, seconds + 1, out, broker.first_url)
    loads = [wrk(stack.url, script, seconds, connections=64 // replicas) for stack in stacks]
    started = time.time() * 1000
    try:
        pids = {f"{n}{f'-{i + 1}' if i else ''}": s.process.pid
                for i, stack in enumerate(stacks) for n, s in stack.services.items()}  # fmt: skip
        ledger_url = stacks[0].service_url("ledger") if database_url else None
        extra = {**{f"wrk{f'-{i + 1}' if i else ''}": load.pid for i, load in enumerate(loads)},
                 "probe": latency_probe.pid}  # fmt: skip
        result = await measure(name, pids, extra, tuple(s.url for s in stacks), ledger_url, broker)
        ended = time.time() * 1000
    finally:
        outputs = [load.communicate()[0] for load in loads]
        await asyncio.to_thread(latency_probe.wait)
        for stack in stacks:
            stack.stop()
        if broker.url == AMQP_URL:
            await delete_topology(name, SUBSCRIBERS)
    result.refused_per_s = sum(answers(output)["refused"] for output in outputs) / seconds
    result.latency = percentiles(warm(arrivals(out), started, ended))
    return result


def with_ledger(database_url: str | None) -> dict[str, str]:
    return {"INTEGRATOR_LEDGER": "true", "INTEGRATOR_DATABASE_URL": database_url} if database_url else {}


async def latency_phase(
    workdir: Path, subscriptions: Path, rate: float, database_url: str | None = None
) -> dict[str, float]:
    """Latency of copies pushed at `rate` for LATENCY_SECONDS after WARMUP seconds of the same,
    like every other phase: the first copies after start-up meet cold code paths (up to 60 ms
    here), which the report shows on their own. With `database_url`, the ledger's lag too."""
    name = prefix("lat")
    env = {"INTEGRATOR_SUBSCRIPTIONS": str(subscriptions), **BENCH_ENV, **with_ledger(database_url)}
    stack = Stack(name, workdir / f"lat{int(rate)}{'-ledger' if database_url else ''}", env)
    await stack.start("gateway", "validator", "router", *(("ledger",) if database_url else ()))
    out = workdir / f"latency-{int(rate)}.json"
    latency_probe = probe(name, WARMUP + LATENCY_SECONDS + 3, out)
    await asyncio.sleep(1)
    started = time.time() * 1000
    pusher = python("-m", "bench.latency", "push", stack.url, str(rate), str(WARMUP + LATENCY_SECONDS))
    await asyncio.to_thread(pusher.wait)
    await asyncio.to_thread(latency_probe.wait)
    lag = p99_bucket(await lag_buckets(stack.service_url("ledger"))) if database_url else None
    stack.stop()
    await delete_topology(name, SUBSCRIBERS)
    copies = arrivals(out)
    return {
        "rate": rate,
        "ledger_lag_p99": lag,
        **percentiles(warm(copies, started)),
        "warmup_max": max((latency for t, latency in copies if t < started + WARMUP * 1000), default=0),
    }


async def lag_buckets(ledger_url: str) -> list[tuple[float, float]]:
    """The ledger's lag histogram (receipt to written): cumulative (upper bound s, count)."""
    async with aiohttp.ClientSession() as http, http.get(ledger_url + "/metrics") as response:
        text = await response.text()
    return [(float(le), float(n)) for le, n in re.findall(
        r'^integrator_ledger_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]  # fmt: skip


def p99_bucket(buckets: list[tuple[float, float]], since: list[tuple[float, float]] = ()) -> float:
    """The upper bound of the bucket the 99th percentile falls in, of what was observed after
    `since` (an earlier scrape of the same histogram): seconds."""
    before = dict(since)
    counts = [(le, n - before.get(le, 0.0)) for le, n in buckets]
    total = counts[-1][1]
    return next(le for le, n in counts if n >= 0.99 * total)


async def ledger_phase(workdir: Path, subscriptions: Path, without: Saturation, rounds: int = 1) -> str:
    """The hub at saturation with the ledger against the same without it (`rounds` times each,
    alternating, medians compared), the ledger's lag at 100 originals/s and at saturation, and
    PostgreSQL's bytes per original: a report section."""
    database_url = await create_database()
    try:
        withs, withouts = [await hub_phase(workdir, subscriptions, database_url)], [without]
        for _ in range(rounds - 1):
            withouts.append(await hub_phase(workdir, subscriptions))
            withs.append(await hub_phase(workdir, subscriptions, database_url))
        slow = await latency_phase(workdir, subscriptions, 100, database_url)
        pool = await db.open_pool(database_url, max_size=1)
        async with pool.acquire() as conn:
            originals = await conn.fetchval("SELECT count(*) FROM messages")
            size = await conn.fetchval(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                " WHERE inhparent IN ('messages'::regclass, 'copies'::regclass)"
            )
        await pool.close()
    finally:
        await drop_database(database_url)

    def median(runs: list[Saturation], process: str) -> float:
        return statistics.median(run.cpu_ms_per_original.get(process, 0.0) for run in runs)

    rate_without = statistics.median(run.originals_per_s for run in withouts)
    rate_with = statistics.median(run.originals_per_s for run in withs)
    rise = median(withs, "machine") / median(withouts, "machine") - 1
    by_round = ", ".join(
        f"{w.cpu_ms_per_original['machine'] / wo.cpu_ms_per_original['machine'] - 1:+.0%}"
        for wo, w in zip(withouts, withs, strict=True)
    )
    lag_saturation = max(run.ledger_lag_p99 or 0 for run in withs)
    told = f"median of {rounds} alternating runs each; " if rounds > 1 else ""
    return f"""
### The ledger (same run)

{told}machine CPU per original, with the ledger against without, run by run: {by_round}.

| measure | without the ledger | with it | change |
|---|---|---|---|
| originals/s delivered at saturation | {rate_without:.0f} | {rate_with:.0f} | {rate_with / rate_without - 1:+.0%} |
| machine CPU per original (PostgreSQL included), ms | {median(withouts, "machine"):.2f} | {median(withs, "machine"):.2f} | {rise:+.0%} |
| hub CPU per original (services + RabbitMQ), ms | {median(withouts, "hub"):.2f} | {median(withs, "hub"):.2f} | |
| the ledger process's CPU per original, ms | | {median(withs, "ledger"):.3f} | |
| the gateway's CPU per original, ms | {median(withouts, "gateway"):.3f} | {median(withs, "gateway"):.3f} | |
| RabbitMQ CPU per original, ms | {median(withouts, "rabbitmq"):.3f} | {median(withs, "rabbitmq"):.3f} | |
| ledger lag p99 (receipt to written, histogram bucket), 100 originals/s | | <= {slow["ledger_lag_p99"]} s | |
| ledger lag p99, saturation (the worst run) | | <= {lag_saturation} s | |
| PostgreSQL bytes per original (messages + copies, indexes, payload ~1.2 KB) | | {size / max(originals, 1):.0f} ({originals} originals) | |
"""


def percentiles(latencies: list[int]) -> dict[str, float]:
    quantiles = statistics.quantiles(sorted(latencies), n=100)
    return {"count": len(latencies), "p50": quantiles[49], "p90": quantiles[89], "p99": quantiles[98]}


@dataclass
class Overload:
    offered_per_s: float
    answers: dict[str, int]  # accepted (202), refused (503), limited (429), other
    delivered_per_s: float  # valid originals reaching `store` during the flood, after warm-up
    latency: dict[str, float]  # of copies arriving during the flood, after warm-up
    delivered_after_drain: int  # valid copies on `store` plus messages on `rejected`
    drain_seconds: float
    cpu_share: dict[str, float]  # of the machine's CPU during the flood, by process
    answer_ms: tuple[float, float]  # p50, p99 of the time clients waited for any answer


def answers(wrk_output: str) -> dict[str, int]:
    """What a script with `count_statuses` tallied: accepted (202), refused (503), limited (429), other."""
    statuses = re.search(r"STATUS (\d+) (\d+) (\d+) (\d+)", wrk_output).groups()
    return dict(zip(("accepted", "refused", "limited", "other"), map(int, statuses), strict=True))


def answer_ms(wrk_output: str) -> tuple[float, float]:
    """What a script with `count_statuses` measured: p50 and p99 ms from request to answer."""
    p50, p99 = re.search(r"ANSWER_MS ([\d.]+) ([\d.]+)", wrk_output).groups()
    return float(p50), float(p99)


HOSTILE_RATE = 200  # pushes/s of the authenticated client
HOSTILE_CLIENTS = 3


@dataclass
class Hostile:
    idle_ms: tuple[float, float]  # p50, p99 of the authenticated pushes' time to an answer, alone
    loaded_ms: tuple[float, float]  # the same while the anonymous clients send
    dry_runs_per_s: float  # what the anonymous clients sent, together
    dry_run_answers: dict[str, int]


async def hostile_phase(workdir: Path, subscriptions: Path) -> Hostile:
    """An authenticated client pushing HOSTILE_RATE/s, alone, then while HOSTILE_CLIENTS
    anonymous clients send ~1 MB dry runs as fast as they are answered."""
    name = prefix("hostile")
    database_url = await create_database()
    pool = await db.open_pool(database_url, max_size=1)
    _, token = await stores.create(pool, "5279008084a81693d5000001")
    await pool.close()
    env = {"INTEGRATOR_AUTH": "true", "INTEGRATOR_DATABASE_URL": database_url, **BENCH_ENV,
           "INTEGRATOR_SUBSCRIPTIONS": str(subscriptions)}  # fmt: skip
    stack = Stack(name, workdir / "hostile", env)
    await stack.start("gateway", "validator", "router")
    pushes, costly = workdir / "hostile-pushes.lua", workdir / "costly-dry-run.lua"
    pushes.write_text(wrk_script(count_statuses=True, rate=HOSTILE_RATE, token=token, invalid_every=0))
    costly.write_text(costly_dry_run_script())
    try:
        idle = (await asyncio.to_thread(wrk(stack.url, pushes, WINDOW, connections=8).communicate))[0]
        clients = [
            wrk(stack.url + "/messages/validate", costly, WINDOW + 2, 4) for _ in range(HOSTILE_CLIENTS)
        ]
        await asyncio.sleep(1)
        loaded = (await asyncio.to_thread(wrk(stack.url, pushes, WINDOW, connections=8).communicate))[0]
        outputs = [(await asyncio.to_thread(c.communicate))[0] for c in clients]
    finally:
        stack.stop()
        await delete_topology(name, SUBSCRIBERS)
        await drop_database(database_url)
    tallies = [answers(o) for o in outputs]
    return Hostile(
        idle_ms=answer_ms(idle),
        loaded_ms=answer_ms(loaded),
        dry_runs_per_s=sum(requests_per_s(o) for o in outputs),
        dry_run_answers={k: sum(t[k] for t in tallies) for k in tallies[0]},
    )


FLOOD_CONNECTIONS = 512  # enough that the schedule, not the answers, sets the pace


async def overload_phase(workdir: Path, subscriptions: Path, saturation: float) -> Overload:
    """Offer FLOOD_FACTOR times the saturation rate for OVERLOAD_SECONDS from clients that ignore
    Retry-After, then let the backlog drain and count."""
    name = prefix("flood")
    topology = Topology(name, 20)
    stack = Stack(name, workdir / "flood", {"INTEGRATOR_SUBSCRIPTIONS": str(subscriptions), **BENCH_ENV})
    await stack.start("gateway", "validator", "router")
    script = workdir / "flood.lua"
    script.write_text(wrk_script(count_statuses=True, rate=FLOOD_FACTOR * saturation))
    out = workdir / "flood-latency.json"
    latency_probe = probe(name, OVERLOAD_SECONDS + 20, out)
    await asyncio.sleep(1)
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        started = time.time() * 1000
        flood = wrk(stack.url, script, OVERLOAD_SECONDS, connections=FLOOD_CONNECTIONS)
        pids = {n: s.process.pid for n, s in stack.services.items()} | {
            "wrk": flood.pid,
            "probe": latency_probe.pid,
        }
        cpu_share = await cpu_shares(pids, WARMUP, OVERLOAD_SECONDS - WARMUP - 1)
        output = (await asyncio.to_thread(flood.communicate))[0]
        ended = time.time() * 1000
        drain_start = time.monotonic()
        while await depth(channel, topology.incoming) + await depth(channel, topology.validated):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        drain_seconds = time.monotonic() - drain_start
        await asyncio.to_thread(latency_probe.wait)
        rejected = await depth(channel, topology.rejected)
    stack.stop()
    await delete_topology(name, SUBSCRIBERS)
    copies = arrivals(out)
    steady = warm(copies, started, ended)
    return Overload(
        offered_per_s=requests_per_s(output),
        answers=answers(output),
        delivered_per_s=len(steady) / ((ended - started) / 1000 - WARMUP),
        latency=percentiles(steady),
        delivered_after_drain=len(copies) + rejected,
        drain_seconds=drain_seconds,
        cpu_share=cpu_share,
        answer_ms=answer_ms(output),
    )


async def cpu_shares(pids: dict[str, int], after: float, seconds: float) -> dict[str, float]:
    """Each process's share of all the machine's cores over `seconds`, starting `after` seconds
    from now; `other` is the kernel and everything else, `idle` what nobody used."""
    watched = pids | Broker.machines().pids
    await asyncio.sleep(after)
    before, machine0, t0 = (
        {k: cpu_seconds(p) for k, p in watched.items()},
        machine_cpu_seconds(),
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    shares = {k: cpu_seconds(p) - before[k] for k, p in watched.items()}
    busy, capacity = machine_cpu_seconds() - machine0, (time.monotonic() - t0) * (os.cpu_count() or 1)
    shares |= {"other": busy - sum(shares.values()), "idle": capacity - busy}
    return {k: v / capacity for k, v in shares.items()}


def report(
    gateway_turns: dict[str, list[GatewayRun]],
    check_runs: list[float],
    reference: Saturation,
    hub: Saturation,
    latencies: list[dict],
    overload: Overload,
    hostile: Hostile,
) -> str:
    gateway = {name: median_run(turns) for name, turns in gateway_turns.items()}
    check_ms = [
        checked.gateway_cpu_ms - unchecked.gateway_cpu_ms
        for checked, unchecked in zip(gateway_turns["ours"], gateway_turns["unchecked"], strict=True)
    ]
    turn_ratios = ", ".join(
        f"{ours.requests_per_s / naive.requests_per_s:.2f}x"
        for ours, naive in zip(gateway_turns["ours"], gateway_turns["naive"], strict=True)
    )
    cpu = "\n".join(
        f"| {k} | {v:.3f} |" for k, v in sorted(hub.cpu_ms_per_original.items(), key=lambda kv: -kv[1])
    )
    ref_cpu = "\n".join(f"| {k} | {v:.3f} |" for k, v in reference.cpu_ms_per_original.items())
    lat = "\n".join(
        [*(latency_row(f"{r['rate']:.0f}/s", r) for r in latencies), latency_row("saturation", hub.latency)]
    )
    return f"""## Run of {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

Machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; RabbitMQ {rabbitmq_version()}.
Window: {WINDOW:.0f} s after {WARMUP:.0f} s warm-up. Messages: `order:new`, ~1.2 KB, one in ten invalid; 3 subscribers.

| measure | hub | reference | ratio |
|---|---|---|---|
| originals/s delivered at saturation | {hub.originals_per_s:.0f} | {reference.originals_per_s:.0f} | {hub.originals_per_s / reference.originals_per_s:.2f}x |
| copies/s delivered | {hub.copies_per_s:.0f} | {reference.copies_per_s:.0f} | |
| hub CPU per original (services + RabbitMQ), ms | {hub.cpu_ms_per_original["hub"]:.2f} | {reference.cpu_ms_per_original["hub"]:.2f} | {reference.cpu_ms_per_original["hub"] / hub.cpu_ms_per_original["hub"]:.2f}x less |
| machine CPU per original (everything, load generator too), ms | {hub.cpu_ms_per_original["machine"]:.2f} | {reference.cpu_ms_per_original["machine"]:.2f} | |
| gateway requests/s with confirmed publishes (no consumers), median of {GATEWAY_ROUNDS} turns | {gateway["ours"].requests_per_s:.0f} | {gateway["naive"].requests_per_s:.0f} (confirm awaited per request, aio-pika + json) | {gateway["ours"].requests_per_s / gateway["naive"].requests_per_s:.2f}x (turn by turn: {turn_ratios}) |
| gateway process CPU per request, ms | {gateway["ours"].gateway_cpu_ms:.3f} | {gateway["naive"].gateway_cpu_ms:.3f} | {gateway["naive"].gateway_cpu_ms / gateway["ours"].gateway_cpu_ms:.2f}x less |
| the gateway's payload check, CPU per valid order, ms: in-process, median of {GATEWAY_ROUNDS} x {CHECK_CALLS} calls | {statistics.median(check_runs):.4f} (runs: {", ".join(f"{ms:.4f}" for ms in check_runs)}) | | |
| the same, as the gateway process's CPU per request with the check on minus off (`INTEGRATOR_GATEWAY_VALIDATES=false`), same turns, ms | {statistics.median(check_ms):.3f} ({gateway["ours"].gateway_cpu_ms:.3f} vs {gateway["unchecked"].gateway_cpu_ms:.3f}; turn by turn: {", ".join(f"{ms:.3f}" for ms in check_ms)}) | | |
| RabbitMQ CPU per gateway request, ms | {gateway["ours"].broker_cpu_ms:.3f} | {gateway["naive"].broker_cpu_ms:.3f} | |
| ingest (accepted by gateway or feed)/s during saturation | {hub.ingest_per_s:.0f} | {reference.ingest_per_s:.0f} | |
| refused (503)/s during saturation | {hub.refused_per_s:.0f} | | |

CPU per original, hub, by process (ms):

| process | ms |
|---|---|
{cpu}

CPU per original, reference, by process (ms):

| process | ms |
|---|---|
{ref_cpu}

Resident memory over the saturation window, start -> end (MB): {memory(hub.rss_mb[0][1], hub.rss_mb[-1][1])}.

End-to-end latency, gateway receipt to copy consumed from `accepted.store`, after {WARMUP:.0f} s at the same rate (ms):

| offered | copies | p50 | p90 | p99 | max during the warm-up |
|---|---|---|---|---|---|
{lat}

Overload: wrk with {FLOOD_CONNECTIONS} connections for {OVERLOAD_SECONDS:.0f} s, requests started on a schedule of {FLOOD_FACTOR:.0f}x the saturation rate, ignoring Retry-After.

| measure | value |
|---|---|
| offered requests/s | {overload.offered_per_s:.0f} ({overload.offered_per_s / hub.originals_per_s:.1f}x saturation) |
| answers | {", ".join(f"{k} {v}" for k, v in overload.answers.items())} |
| refused share | {overload.answers["refused"] / max(sum(overload.answers.values()), 1):.1%} |
| time to an answer (202 or 503) as clients saw it, p50 / p99 ms | {overload.answer_ms[0]:.0f} / {overload.answer_ms[1]:.0f} |
| valid originals delivered/s during the flood | {overload.delivered_per_s:.0f} ({overload.delivered_per_s / (hub.originals_per_s * (1 - 1 / INVALID_EVERY)):.0%} of the valid share at saturation) |
| end-to-end latency of accepted messages during the flood, p50 / p90 / p99 ms | {overload.latency["p50"]:.0f} / {overload.latency["p90"]:.0f} / {overload.latency["p99"]:.0f} |
| backlog drained after the flood in | {overload.drain_seconds:.1f} s |
| machine CPU during the flood, by process | {", ".join(f"{k} {v:.0%}" for k, v in sorted(overload.cpu_share.items(), key=lambda kv: -kv[1]))} |
| 202s vs messages delivered (store + rejected) after draining | {overload.answers["accepted"]} vs {overload.delivered_after_drain} ({"none lost" if overload.delivered_after_drain >= overload.answers["accepted"] else "LOST " + str(overload.answers["accepted"] - overload.delivered_after_drain)}) |

Costly dry runs: an authenticated client pushing {HOSTILE_RATE}/s (8 connections, valid orders), alone and while {HOSTILE_CLIENTS} anonymous clients (4 connections each) send ~1 MB `order:updated` dry runs, every item wrong, as fast as they are answered.

| measure | value |
|---|---|
| pushes' time to an answer alone, p50 / p99 ms | {hostile.idle_ms[0]:.1f} / {hostile.idle_ms[1]:.1f} |
| the same during the dry runs, p50 / p99 ms | {hostile.loaded_ms[0]:.1f} / {hostile.loaded_ms[1]:.1f} ({hostile.loaded_ms[1] / max(hostile.idle_ms[1], 0.1):.2f}x the p99 alone) |
| anonymous dry runs answered/s, and how | {hostile.dry_runs_per_s:.0f}; {", ".join(f"{k} {v}" for k, v in hostile.dry_run_answers.items())} (other: 401) |
"""


def latency_row(offered: str, r: dict[str, float]) -> str:
    return f"| {offered} | {r['count']} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r.get('warmup_max', '')} |"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def rabbitmq_version() -> str:
    try:
        out = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=20).stdout
        return out.strip() or "unknown"
    except OSError:
        return "unknown"


def workspace() -> tuple[Path, Path]:
    """A scratch folder with the subscriptions file every phase uses."""
    workdir = Path(tempfile.mkdtemp(prefix="integrator-bench-"))
    subscriptions = workdir / "subscriptions.yml"
    subscriptions.write_text(SUBSCRIPTIONS)
    return workdir, subscriptions


async def run() -> str:
    workdir, subscriptions = workspace()
    print("gateway: ours, ours without the payload check, a confirm-per-request handler ...", file=sys.stderr)
    gateway = await gateway_phase(workdir)
    print("reference relay chain at saturation ...", file=sys.stderr)
    reference = await reference_phase(workdir)
    print("hub at saturation ...", file=sys.stderr)
    hub = await hub_phase(workdir, subscriptions)
    print("latency at fixed rates ...", file=sys.stderr)
    latencies = [
        await latency_phase(workdir, subscriptions, rate) for rate in (100, round(hub.originals_per_s / 2))
    ]
    print(f"overload for {OVERLOAD_SECONDS:.0f} s ...", file=sys.stderr)
    overload = await overload_phase(workdir, subscriptions, hub.originals_per_s)
    print("pushes while anonymous clients send costly dry runs ...", file=sys.stderr)
    hostile = await hostile_phase(workdir, subscriptions)
    print("the hub with the ledger, at saturation and at 100/s ...", file=sys.stderr)
    ledger = await ledger_phase(workdir, subscriptions, hub)
    print("delivery to endpoints ...", file=sys.stderr)
    delivery = await delivery_section()
    print("replicas, and a three-node cluster against a single node ...", file=sys.stderr)
    scaling = await scaling_phase(workdir, subscriptions) + await rate_limit_section()
    sections = report(gateway, payload_check_ms(), reference, hub, latencies, overload, hostile)
    return sections + ledger + delivery + scaling + filter_section()


async def saturation_only() -> str:
    """`BENCH_ONLY=saturation BENCH_SECONDS=300`: the long saturation run, for memory growth;
    with BENCH_LEDGER=1, the ledger runs too (its lag is reported)."""
    workdir, subscriptions = workspace()
    database_url = await create_database() if os.environ.get("BENCH_LEDGER") else None
    try:
        hub = await hub_phase(workdir, subscriptions, database_url)
    finally:
        if database_url:
            await drop_database(database_url)
    lags = dict(hub.ledger_lag_series)
    lag_column = f" ledger lag p99 over the last {RSS_EVERY:.0f} s |" if lags else ""
    series = "\n".join(
        f"| {seconds:.0f} s | {' | '.join(f'{mb:.1f}' for mb in sample.values())} |"
        + (f" <= {lags[seconds]} s |" if seconds in lags else " |" if lags else "")
        for seconds, sample in hub.rss_mb
    )
    return f"""Saturation for {WINDOW:.0f} s after {WARMUP:.0f} s warm-up: {hub.originals_per_s:.0f} originals/s, \
{hub.cpu_ms_per_original["hub"]:.2f} ms hub CPU per original; ledger lag p99 <= {hub.ledger_lag_p99} s.

Resident memory (MB), and the ledger's lag when it ran:

| into the window | {" | ".join(hub.rss_mb[0][1])} |{lag_column}
|---|{"---|" * (len(hub.rss_mb[0][1]) + bool(lags))}
{series}
"""


async def ledger_only() -> str:
    """`BENCH_ONLY=ledger`: the hub at saturation without the ledger and with it, side by side,
    BENCH_ROUNDS (3) times each."""
    workdir, subscriptions = workspace()
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    return await ledger_phase(workdir, subscriptions, await hub_phase(workdir, subscriptions), rounds)


async def scaling_phase(workdir: Path, subscriptions: Path, rounds: int = 1) -> str:
    """Saturation with one and two replicas of every service on the machine's broker, and with
    one replica on a private single node against a private three-node cluster (started alike,
    quorum queues on every node): `rounds` of each, alternating, medians. A report section."""
    node = RabbitNode(workdir / "single")
    cluster = RabbitCluster.new(workdir / "cluster")
    try:
        await node.start()
        await cluster.start()
        single = Broker(node.url, {"rabbitmq": node.pid()})
        three = Broker(cluster.url, {f"rabbit-{i}": n.pid() for i, n in enumerate(cluster.nodes, 1)})
        runs: dict[str, list[Saturation]] = {name: [] for name in SCALING}
        for _ in range(rounds):
            runs["one replica"].append(await hub_phase(workdir, subscriptions))
            runs["two replicas"].append(await hub_phase(workdir, subscriptions, replicas=2))
            runs["single node"].append(await hub_phase(workdir, subscriptions, broker=single))
            runs["three-node cluster"].append(await hub_phase(workdir, subscriptions, broker=three))
    finally:
        node.remove()
        cluster.remove()
    cores = os.cpu_count() or 1

    def row(name: str) -> str:
        originals = statistics.median(r.originals_per_s for r in runs[name])
        cpu = {k: statistics.median(r.cpu_ms_per_original[k] for r in runs[name]) for k in ("hub", "machine")}
        busy = statistics.median(r.cpu_ms_per_original["machine"] * r.originals_per_s / 1000 / cores
                                 for r in runs[name])  # fmt: skip
        broker = statistics.median(sum(v for k, v in r.cpu_ms_per_original.items() if k.startswith("rabbit"))
                                   for r in runs[name])  # fmt: skip
        return (f"| {name} | {originals:.0f} | {cpu['machine']:.2f} | {cpu['hub']:.2f} |"
                f" {broker:.2f} | {busy:.0%} |")  # fmt: skip

    rows = "\n".join(row(name) for name in SCALING)
    return f"""
### Replicas and a three-node cluster (same run)

At saturation, median of {rounds} alternating runs each; CPU in ms per original; busy: the
machine's {cores} cores in use, all processes together.

| configuration | originals/s | machine CPU | hub CPU (services + broker) | broker CPU | busy |
|---|---|---|---|---|---|
{rows}
"""


SCALING = ("one replica", "two replicas", "single node", "three-node cluster")


async def scaling_only() -> str:
    """`BENCH_ONLY=scaling`: replicas and the three-node cluster, BENCH_ROUNDS (3) times each,
    and the shared rate limit's cost."""
    workdir, subscriptions = workspace()
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    return await scaling_phase(workdir, subscriptions, rounds) + await rate_limit_section()


def memory(start: dict[str, float], end: dict[str, float]) -> str:
    return ", ".join(f"{k} {start[k]:.0f} -> {end[k]:.0f}" for k in start)


def main() -> None:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        sys.exit("make bench needs wrk as its load generator: apt-get install wrk")
    only = os.environ.get("BENCH_ONLY")
    modes = {"saturation": saturation_only, "ledger": ledger_only, "delivery": delivery_section,
             "scaling": scaling_only}  # fmt: skip
    print(asyncio.run(modes.get(only, run)()))


if __name__ == "__main__":
    main()
