"""The ledger under faults: PostgreSQL cut off mid-stream, the ledger SIGKILLed mid-stream. The
pushes go on; afterwards every accepted message is in the ledger once, routed, with its copies,
and its timeline holds each state once."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg

from tests.support.load import FAULT_MESSAGES, Push, product, push
from tests.support.processes import Stack
from tests.support.proxy import Proxy
from tests.test_operations import wait_for_status


async def wait_until_recorded(
    db: asyncpg.Pool, ids: list[str], within: float = 60, states: tuple[str, ...] = ("routed",)
) -> None:
    """Until the ledger has every message of `ids` in one of `states`."""
    deadline = time.monotonic() + within
    while True:
        async with db.acquire() as conn:
            settled = await conn.fetchval(
                "SELECT count(*) FROM messages"
                " WHERE message_id = ANY($1::text[]) AND state = ANY($2::text[])",
                ids, list(states),
            )  # fmt: skip
        if settled == len(ids):
            return
        assert time.monotonic() < deadline, f"{settled} of {len(ids)} {' or '.join(states)} in the ledger"
        await asyncio.sleep(0.2)


async def assert_recorded_once(
    db: asyncpg.Pool,
    ids: list[str],
    redelivered: bool = False,
    subscribers: tuple[str, ...] = ("erp", "store"),
) -> None:
    """Every message routed in the ledger, with one copy for each subscriber. Its timeline is
    accepted, validated, routed; with `redelivered` (a service died holding it, or a gateway
    that died had published a keyed push that its retry published again), steps may come again,
    as they happened again."""
    await wait_until_recorded(db, ids)
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message_id, timeline FROM messages WHERE message_id = ANY($1::text[])", ids
        )
        copies = await conn.fetch(
            "SELECT parent_id, subscriber FROM copies WHERE parent_id = ANY($1::text[])", ids
        )
    assert sorted(r["message_id"] for r in rows) == sorted(ids)
    timelines = {tuple(e[1] for e in r["timeline"]) for r in rows}
    if redelivered:
        timelines = {tuple(dict.fromkeys(t)) for t in timelines}
    assert timelines == {("accepted", "validated", "routed")}
    assert sorted((c["parent_id"], c["subscriber"]) for c in copies) == sorted(
        (i, s) for i in ids for s in subscribers
    )


async def test_postgresql_cut_off_mid_stream(
    stack: Stack, ledger_db: asyncpg.Pool, proxied_database_url: str, postgres_proxy: Proxy
) -> None:
    stack.env["INTEGRATOR_DATABASE_URL"] = proxied_database_url
    await stack.start("gateway", "validator", "router", "ledger")
    ledger = stack.service("ledger")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    await progress.reached(FAULT_MESSAGES // 3)
    offset = len(ledger.log_text())
    readyz = stack.service_url("ledger") + "/readyz"
    async with aiohttp.ClientSession() as http:
        await wait_for_status(http, readyz, 200)
        postgres_proxy.cut()
        await ledger.wait_for_log("PostgreSQL unavailable; holding the batch", offset=offset)
        await wait_for_status(http, readyz, 503)
        await progress.reached(2 * FAULT_MESSAGES // 3)
        postgres_proxy.restore()
        await pushing
        assert progress.statuses.get(503, 0) == 0, "the pipeline did not wait on PostgreSQL"
        await ledger.wait_for_log("PostgreSQL reachable again", offset=offset)
        await wait_for_status(http, readyz, 200)
    await assert_recorded_once(ledger_db, progress.accepted)


async def test_ledger_killed_mid_stream(stack: Stack, ledger_db: asyncpg.Pool) -> None:
    await stack.start("gateway", "validator", "router", "ledger")
    progress = Push()
    pushing = asyncio.create_task(push(stack.url, [product(i) for i in range(FAULT_MESSAGES)], progress))
    await progress.reached(FAULT_MESSAGES // 2)
    await wait_until_recorded(ledger_db, progress.accepted[: FAULT_MESSAGES // 4])
    stack.service("ledger").kill()
    await stack.start("ledger")
    await pushing
    await assert_recorded_once(ledger_db, progress.accepted)
