"""The ledger: every state a message reaches, shown by id and found by search, through the real
services and a real PostgreSQL database of the run's own."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from integrator import db, stores
from integrator.ids import child_message_id
from integrator.journal import EVENTS_TYPE
from tests.conftest import INVALID_PRODUCT, NEW_PRODUCT, OTHER_STORE, STORE
from tests.support.broker import body, depth, take
from tests.support.database import create_database, drop_database
from tests.support.processes import Stack
from tests.support.scrape import scrape
from tests.test_operations import cli

Doc = dict[str, Any]


def typed(message: str, store_id: str = STORE, **payload: Any) -> Doc:
    return {"message": message, "store_id": store_id, "payload": payload}


async def pushed(http: aiohttp.ClientSession, stack: Stack, doc: Doc, **headers: str) -> Doc:
    async with http.post(stack.url + "/messages", json=doc, headers=headers) as response:
        assert response.status == 202, await response.text()
        return await response.json()


async def record_in(
    http: aiohttp.ClientSession, stack: Stack, message_id: str, state: str, within: float = 20, **headers: str
) -> Doc:
    """GET /messages/{id} until the ledger shows `state`."""
    deadline = time.monotonic() + within
    while True:
        async with http.get(f"{stack.url}/messages/{message_id}", headers=headers) as response:
            answer = await response.json()
            if response.status == 200 and answer["state"] == state:
                return answer
        assert time.monotonic() < deadline, f"{message_id} never {state}: {response.status} {answer}"
        await asyncio.sleep(0.05)


async def test_a_routed_message_and_its_copies(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway", "validator", "router", "ledger")
    sent = await pushed(http, stack, NEW_PRODUCT)
    parent_id = sent["message_id"]
    record = await record_in(http, stack, parent_id, "routed")
    assert record["message"] == "product:new" and record["store_id"] == STORE
    assert record["payload"] == NEW_PRODUCT["payload"]
    assert record["errors"] == [] and record["warnings"] == sent.get("warnings", [])
    assert [e["state"] for e in record["timeline"]] == ["accepted", "validated", "routed"]
    assert record["received_at"] <= record["updated_at"]
    children = {c["subscriber"]: c["message_id"] for c in record["children"]}
    assert children == {s: child_message_id(parent_id, s) for s in ("store", "erp")}
    copy = await record_in(http, stack, children["erp"], "pending")
    assert (copy["parent_id"], copy["subscriber"], copy["message"]) == (parent_id, "erp", "product:new")
    assert copy["payload"] == NEW_PRODUCT["payload"] and "children" not in copy


async def test_accepted_then_validated_while_the_next_stage_is_down(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await stack.start("gateway", "ledger")
    message_id = (await pushed(http, stack, NEW_PRODUCT))["message_id"]
    assert (await record_in(http, stack, message_id, "accepted"))["children"] == []
    await stack.start("validator")
    assert [e["state"] for e in (await record_in(http, stack, message_id, "validated"))["timeline"]] == [
        "accepted",
        "validated",
    ]


async def test_rejected_with_its_errors(stack: Stack, http: aiohttp.ClientSession) -> None:
    stack.env["INTEGRATOR_GATEWAY_VALIDATES"] = "false"  # so the validator is the one to refuse it
    await stack.start("gateway", "validator", "ledger")
    message_id = (await pushed(http, stack, INVALID_PRODUCT))["message_id"]
    record = await record_in(http, stack, message_id, "rejected")
    assert [e["path"] for e in record["errors"]] == ["/payload/price"]
    assert record["payload"]["price"] == []


async def test_unrouted(stack: Stack, http: aiohttp.ClientSession, subscriptions_file: Path) -> None:
    await asyncio.to_thread(
        subscriptions_file.write_text, "subscribers:\n  erp:\n    messages: ['order:*']\n"
    )
    await stack.start("gateway", "validator", "router", "ledger")
    message_id = (await pushed(http, stack, NEW_PRODUCT))["message_id"]
    record = await record_in(http, stack, message_id, "unrouted")
    assert record["children"] == []


async def test_dead_with_the_reason(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "ledger")
    message_id = (await pushed(http, stack, NEW_PRODUCT))["message_id"]
    await record_in(http, stack, message_id, "accepted")
    incoming = await channel.get_queue(f"{stack.prefix}.incoming")
    message = await incoming.get(timeout=10)
    assert message is not None and message.message_id == message_id
    await message.reject(requeue=False)  # what a consumer does with a message it cannot handle
    record = await record_in(http, stack, message_id, "dead")
    assert record["timeline"][-1]["detail"] == f"set aside from {stack.prefix}.incoming (rejected)"
    await stack.start("validator", "router")
    await asyncio.to_thread(cli, stack, "replay", "dead")  # back to incoming, and on
    record = await record_in(http, stack, message_id, "routed")
    assert [e["state"] for e in record["timeline"]] == ["accepted", "dead", "accepted", "validated", "routed"]


async def test_unknown_and_malformed_ids_answer_404(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")
    async with http.get(f"{stack.url}/messages/6b1125f1e8d13bdc8d2abbc0") as response:
        assert (response.status, await response.json()) == (404, {"error": "no such message", "errors": []})
    for malformed in ("not-an-id", "6B1125F1E8D13BDC8D2ABBC0"):
        async with http.get(f"{stack.url}/messages/{malformed}") as response:
            answer = await response.json()
            assert (response.status, answer["error"]) == (404, f"no such path: /messages/{malformed}")


async def test_a_store_sees_only_its_own_messages(
    stack: Stack, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    _, token = await stores.create(ledger_db, STORE)
    _, other_token = await stores.create(ledger_db, OTHER_STORE)
    stack.env |= {"INTEGRATOR_AUTH": "true"}
    await stack.start("gateway", "validator", "router", "ledger")
    mine = {"Authorization": f"Bearer {token}"}
    theirs = {"Authorization": f"Bearer {other_token}"}
    message_id = (await pushed(http, stack, NEW_PRODUCT, **mine))["message_id"]
    await record_in(http, stack, message_id, "routed", **mine)
    unknown = "6b1125f1e8d13bdc8d2abbc0"
    for path in (
        f"/messages/{message_id}",
        f"/messages/{unknown}",
        f"/api/stores/{OTHER_STORE}/messages/{message_id}",
    ):
        async with http.get(stack.url + path, headers=theirs) as response:
            assert (response.status, await response.json()) == (
                404,
                {"error": "no such message", "errors": []},
            )
    async with http.get(f"{stack.url}/api/stores/{STORE}/messages/{message_id}", headers=theirs) as response:
        assert response.status == 403
    async with http.get(f"{stack.url}/api/stores/{STORE}/messages/{message_id}", headers=mine) as response:
        assert (response.status, (await response.json())["message_id"]) == (200, message_id)
    async with http.get(f"{stack.url}/messages?limit=500", headers=theirs) as response:
        listed = (await response.json())["messages"]  # other tests' messages of that store may be there
        assert message_id not in {m["message_id"] for m in listed}
        assert {m["store_id"] for m in listed} <= {OTHER_STORE}
    async with http.get(f"{stack.url}/messages/{message_id}") as response:
        assert response.status == 401


async def test_search_filters_and_cursor(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway", "validator", "router", "ledger")
    store = "5279008084a81693d50000aa"  # this test's own store: the run's database is shared
    ids = {}
    for message in ("widget:new", "widget:updated", "widget:part:added", "gadget:new", "widget:new"):
        ids.setdefault(message, []).append((await pushed(http, stack, typed(message, store)))["message_id"])
    last = ids["widget:new"][-1]
    await record_in(http, stack, last, "routed")
    newest_first = [
        ids["widget:new"][1], ids["gadget:new"][0], ids["widget:part:added"][0],
        ids["widget:updated"][0], ids["widget:new"][0],
    ]  # fmt: skip

    async def listed(query: str) -> Doc:
        async with http.get(f"{stack.url}/api/stores/{store}/messages?{query}") as response:
            assert response.status == 200, await response.text()
            return await response.json()

    assert [m["message_id"] for m in (await listed(""))["messages"]] == newest_first
    assert [m["message_id"] for m in (await listed("message=widget:*"))["messages"]] == [
        newest_first[0], newest_first[3], newest_first[4]]  # fmt: skip
    assert [m["message_id"] for m in (await listed("message=widget:%23"))["messages"]] == [
        newest_first[0], newest_first[2], newest_first[3], newest_first[4]]  # fmt: skip
    pages, query = [], "limit=2"
    while True:
        page = await listed(query)
        pages.append([m["message_id"] for m in page["messages"]])
        if page["next_cursor"] is None:
            break
        query = f"limit=2&cursor={page['next_cursor']}"
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    first = await listed("limit=1")
    summary = first["messages"][0]
    assert set(summary) == {"message_id", "message", "store_id", "state", "received_at", "updated_at"}
    assert (await listed(f"since={summary['received_at']}"))["messages"] == [summary]
    assert [m["message_id"] for m in (await listed(f"until={summary['received_at']}"))["messages"]] == (
        newest_first[1:]
    )
    assert (await listed("state=rejected"))["messages"] == []
    assert (await listed("state=routed&message=gadget:new"))["messages"][0]["message_id"] == newest_first[1]


@pytest.mark.parametrize(
    ("query", "path", "rule"),
    [
        ("state=lost", "/query/state", "enum"),
        ("message=Order:*", "/query/message", "pattern"),
        ("since=yesterday", "/query/since", "format"),
        ("limit=0", "/query/limit", "maximum"),
        ("limit=501", "/query/limit", "maximum"),
        ("cursor=abc", "/query/cursor", "format"),
        ("sort=asc", "/query/sort", "additionalProperties"),
        ("state=routed&state=rejected", "/query/state", "maxItems"),
    ],
)
async def test_search_refuses_a_bad_query(
    stack: Stack, http: aiohttp.ClientSession, query: str, path: str, rule: str
) -> None:
    await stack.start("gateway")
    async with http.get(f"{stack.url}/messages?{query}") as response:
        answer = await response.json()
        assert response.status == 400
        assert answer["error"] == "invalid query"
        assert [(e["path"], e["rule"]) for e in answer["errors"]] == [(path, rule)]


async def test_the_cli_shows_a_record_and_lists(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway", "validator", "router", "ledger")
    store = "5279008084a81693d50000ab"
    message_id = (await pushed(http, stack, {**NEW_PRODUCT, "store_id": store}))["message_id"]
    await record_in(http, stack, message_id, "routed")
    [shown] = await asyncio.to_thread(cli, stack, "show", message_id)
    assert (shown["message_id"], shown["state"], len(shown["children"])) == (message_id, "routed", 2)
    listed = await asyncio.to_thread(
        cli, stack, "messages", "--store", store, "--since", "1h", "--type", "product:*"
    )
    assert [(m["message_id"], m["state"]) for m in listed] == [(message_id, "routed")]
    assert await asyncio.to_thread(cli, stack, "messages", "--store", store, "--state", "rejected") == []


async def test_retention_drops_old_partitions_whole(
    stack: Stack, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    async with ledger_db.acquire() as conn:
        for table in ("messages", "copies"):
            await conn.execute(
                f"CREATE TABLE {table}_20000101 PARTITION OF {table}"
                " FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')"
            )
    stack.env["INTEGRATOR_RETENTION_DAYS"] = "30"
    ledger = await stack.service("ledger").start("consuming")
    await ledger.wait_for_text('"partition":"copies_20000101"')
    assert '"partition":"messages_20000101"' in ledger.log_text()
    async with ledger_db.acquire() as conn:
        left = await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE '%_20000101'")
    assert left == 0


async def published_to(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count


async def test_idempotent_pushes(stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel) -> None:
    await stack.start("gateway")
    key = {"Idempotency-Key": f"order R{time.time_ns()} / attempt"}
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT, headers=key) as first:
        assert first.status == 202 and "Idempotent-Replayed" not in first.headers
        answer = await first.read()
    reordered = {"payload": NEW_PRODUCT["payload"], "store_id": STORE, "message": "product:new"}
    async with http.post(stack.url + "/messages", json=reordered, headers=key) as again:
        assert (again.status, again.headers["Idempotent-Replayed"], await again.read()) == (
            202,
            "true",
            answer,
        )
    assert await published_to(channel, f"{stack.prefix}.incoming") == 1, "the replay published nothing"
    other = {**NEW_PRODUCT, "payload": {**NEW_PRODUCT["payload"], "name": "Another"}}
    async with http.post(stack.url + "/messages", json=other, headers=key) as refused:
        body = await refused.json()
        assert refused.status == 422
        assert body["errors"] == [{"path": "/headers/Idempotency-Key", "rule": "unique",
                                   "message": "was used for another message by this store"}]  # fmt: skip
    for_other = {"message": "product:new", "payload": NEW_PRODUCT["payload"]}
    async with http.post(
        f"{stack.url}/api/stores/{OTHER_STORE}/messages", json=for_other, headers=key
    ) as elsewhere:
        assert elsewhere.status == 202, "a key is a store's own"
    unkeyed = [await pushed(http, stack, NEW_PRODUCT) for _ in range(2)]
    assert unkeyed[0]["message_id"] != unkeyed[1]["message_id"]
    assert await published_to(channel, f"{stack.prefix}.incoming") == 4


async def test_a_key_in_flight_answers_409(
    stack: Stack, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    await stack.start("gateway")
    key = f"in-flight-{time.time_ns()}"
    async with ledger_db.acquire() as conn:  # as a push that has claimed its key and awaits its confirm
        await conn.execute(
            "INSERT INTO idempotency_keys (store_id, key, body_hash, message_id) VALUES ($1, $2, $3, $4)",
            STORE, key, b"\0" * 32, "6b1125f1e8d13bdc8d2abbc0",
        )  # fmt: skip
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT, headers={"Idempotency-Key": key}) as r:
        assert (r.status, r.headers["Retry-After"]) == (409, "15")
        assert (await r.json())["error"] == "a push with this Idempotency-Key is in flight; retry later"


async def test_a_retry_takes_over_the_message_id_of_a_push_never_confirmed(
    stack: Stack, http: aiohttp.ClientSession, ledger_db: asyncpg.Pool
) -> None:
    """A keyed push answered 503 after its publish (or whose gateway died) may be in the queue:
    a retry of the same body gets its message id, so what got through is a copy of the same
    message; another body under the key is a new push."""
    await stack.start("gateway")
    same = hashlib.sha256(orjson.dumps(NEW_PRODUCT, option=orjson.OPT_SORT_KEYS)).digest()
    claims = {  # key: (message id, body hash, unconfirmed, seconds ago), as pushes left them
        "unconfirmed": ("6b1125f1e8d13bdc8d2abbc1", same, True, 0),
        "gateway died": ("6b1125f1e8d13bdc8d2abbc2", same, False, 3600),
        "other body": ("6b1125f1e8d13bdc8d2abbc3", b"\0" * 32, True, 0),
    }
    async with ledger_db.acquire() as conn:
        for key, (message_id, body_hash, unconfirmed, ago) in claims.items():
            await conn.execute(
                "INSERT INTO idempotency_keys (store_id, key, body_hash, message_id, unconfirmed, created_at)"
                " VALUES ($1, $2, $3, $4, $5, now() - make_interval(secs => $6))",
                STORE, f"{stack.prefix} {key}", body_hash, message_id, unconfirmed, ago,
            )  # fmt: skip
    pushed_ids = [
        (await pushed(http, stack, NEW_PRODUCT, **{"Idempotency-Key": f"{stack.prefix} {key}"}))["message_id"]
        for key in claims
    ]
    assert pushed_ids[:2] == ["6b1125f1e8d13bdc8d2abbc1", "6b1125f1e8d13bdc8d2abbc2"]
    assert pushed_ids[2] != "6b1125f1e8d13bdc8d2abbc3", "another body is another message"


async def test_an_expired_key_is_a_new_push(stack: Stack, http: aiohttp.ClientSession) -> None:
    stack.env["INTEGRATOR_IDEMPOTENCY_HOURS"] = "0"
    await stack.start("gateway")
    key = {"Idempotency-Key": f"expiring-{time.time_ns()}"}
    first, second = [(await pushed(http, stack, NEW_PRODUCT, **key))["message_id"] for _ in range(2)]
    assert first != second


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_a_malformed_key_is_refused(stack: Stack, http: aiohttp.ClientSession, key: str) -> None:
    await stack.start("gateway")
    async with http.post(
        stack.url + "/messages", json=NEW_PRODUCT, headers={"Idempotency-Key": key.encode().decode("latin-1")}
    ) as response:
        assert response.status == 400
        assert [e["path"] for e in (await response.json())["errors"]] == ["/headers/Idempotency-Key"]


async def test_without_postgresql_keyed_pushes_get_503_and_the_rest_go_on(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    from tests.support.processes import free_port

    stack.env["INTEGRATOR_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    await stack.start("gateway")
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT, headers={"Idempotency-Key": "k1"}) as r:
        assert (r.status, r.headers["Retry-After"]) == (503, "1")
        assert (await r.json())["error"] == "the ledger is unavailable; retry later"
    await pushed(http, stack, NEW_PRODUCT)
    async with http.get(f"{stack.url}/messages/6b1125f1e8d13bdc8d2abbc0") as r:
        assert r.status == 503


async def test_the_gateway_tells_the_ledger_of_its_pushes_a_turn_at_a_time(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    """Concurrent pushes share batch events, and nothing reaches the ledger's queue twice: the
    binding to `incoming` an older version made is undone when the gateway declares."""
    ledger_queue, incoming = f"{stack.prefix}.ledger", f"{stack.prefix}.incoming"
    await stack.start("gateway")
    await (await channel.get_queue(ledger_queue)).bind(incoming)  # as before receipts
    assert stack.service("gateway").stop() == 0
    await stack.start("gateway")
    answers = await asyncio.gather(*(pushed(http, stack, NEW_PRODUCT) for _ in range(100)))
    entries = await take(channel, ledger_queue, await depth(channel, ledger_queue))
    assert {entry.type for entry in entries} == {EVENTS_TYPE}
    events = [event for entry in entries for event in body(entry)["events"]]
    assert sorted(event[1] for event in events) == sorted(answer["message_id"] for answer in answers)
    assert {event[0] for event in events} == {"accepted"}
    assert len(entries) < len(answers), "one batch event per push: the receipts were not batched"


async def test_a_message_s_events_fold_into_one_write(stack: Stack, http: aiohttp.ClientSession) -> None:
    """Gathering a batch for a moment, the ledger writes a message's receipt, validation and
    routing as one row: its copies' rows are written with it, and the original only once."""
    stack.env["INTEGRATOR_LEDGER_LINGER_MS"] = "2000"
    await stack.start("gateway", "validator", "router", "ledger")
    message_id = (await pushed(http, stack, NEW_PRODUCT))["message_id"]
    await record_in(http, stack, message_id, "routed")
    deadline = time.monotonic() + 10
    while (written := await recorded(http, stack))["copies"] < 2:
        assert time.monotonic() < deadline, f"the copies were never written: {written}"
        await asyncio.sleep(0.05)
    assert written == {"messages": 1, "copies": 2}


async def recorded(http: aiohttp.ClientSession, stack: Stack) -> dict[str, float]:
    """The ledger's count of rows written, by table."""
    metrics = await scrape(http, stack.service_url("ledger"))
    return {table: metrics.get(("integrator_ledger_recorded_total", (("table", table),)), 0.0)
            for table in ("messages", "copies")}  # fmt: skip


async def test_the_ledger_catches_up_on_what_passed_while_it_was_away(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    await stack.start("gateway", "validator", "router")
    ids = [(await pushed(http, stack, NEW_PRODUCT))["message_id"] for _ in range(3)]
    await stack.start("ledger")
    for message_id in ids:
        await record_in(http, stack, message_id, "routed")


async def test_the_ledger_applies_its_migrations_to_an_empty_database(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    empty = await create_database(migrate=False)
    try:
        stack.env["INTEGRATOR_DATABASE_URL"] = empty
        await stack.start("gateway", "validator", "router", "ledger")
        sent = await pushed(http, stack, NEW_PRODUCT)
        await record_in(http, stack, sent["message_id"], "routed")
        connection = await asyncpg.connect(empty)
        try:
            applied = await connection.fetch("SELECT name FROM schema_migrations ORDER BY version")
        finally:
            await connection.close()
        assert [row["name"] for row in applied] == [name for _, name, _ in db.migrations()]
    finally:
        stack.stop()
        await drop_database(empty)
