"""Subscriptions that say what a subscriber wants: filters, identifiers, the routing explanation in
the ledger, and the subscriptions file changed while the router runs, through the real services."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
from aio_pika.abc import AbstractChannel

from integrator.ids import child_message_id
from tests.conftest import OTHER_STORE, STORE
from tests.support.broker import body, depth, take
from tests.support.load import Push, push
from tests.support.processes import Stack
from tests.support.proxy import Proxy
from tests.support.scrape import scrape
from tests.test_ledger import pushed, record_in, typed
from tests.test_ledger_faults import wait_until_recorded
from tests.test_operations import cli, cli_process

READY = json.loads(Path("schemas/shipment/ready.json").read_text())["examples"][0]
"""A shipment:ready payload: number H438105531460, stock_location default, cost 5, tracking null."""

SHIPPING = f"""
subscribers:
  store:
    messages: ["order:*", "product:*"]
  mailer:
    messages: ["shipment:*"]
    stores: ["{OTHER_STORE}"]
  shipping:
    messages: [shipment:ready]
    filters:
      - {{path: shipment.stock_location, operator: eq, value: default}}
    identifiers: {{number: shipment.number}}
  tracker:
    messages: [shipment:ready]
    filters:
      - {{path: shipment.cost, operator: gt, value: 1}}
      - {{path: shipment.items.*.sku, operator: begin, value: SPREE}}
    identifiers: {{tracking: shipment.tracking}}
"""


def ready(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(READY)
    payload["shipment"].update(changes)
    return typed("shipment:ready", **payload)


def outcome(subscriber: str, kind: str, detail: str | None = None, copy_id: str | None = None) -> dict:
    return {"subscriber": subscriber, "outcome": kind, "detail": detail, "copy_id": copy_id}


def replace_file(path: Path, text: str) -> None:
    """Write the file as a deployment tool would: whole, then renamed into place."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


async def test_the_routing_explanation_names_every_outcome(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path
) -> None:
    replace_file(subscriptions_file, SHIPPING)
    await stack.start("gateway", "validator", "router", "ledger")
    first = (await pushed(http, stack, ready()))["message_id"]
    again = (await pushed(http, stack, ready()))["message_id"]  # the same shipment, re-sent
    elsewhere = (await pushed(http, stack, ready(stock_location="ny", cost=0.5)))["message_id"]
    nobody = (await pushed(http, stack, typed("stock:change", sku="S", quantity=2)))["message_id"]

    unchecked = "no value for identifier tracking at shipment.tracking; delivered unchecked"
    shipped = child_message_id(first, "shipping")
    record = await record_in(http, stack, first, "routed")
    assert record["routing"] == [
        outcome("store", "type"),
        outcome("mailer", "store"),
        outcome("shipping", "delivered", 'number="H438105531460"', shipped),
        outcome("tracker", "delivered", unchecked, child_message_id(first, "tracker")),
    ]
    assert record["children"] == [
        {"message_id": shipped, "subscriber": "shipping"},
        {"message_id": child_message_id(first, "tracker"), "subscriber": "tracker"},
    ]
    record = await record_in(http, stack, again, "routed")
    assert record["routing"][2:] == [
        outcome("shipping", "identifier", 'number="H438105531460"', shipped),  # the earlier copy
        outcome("tracker", "delivered", unchecked, child_message_id(again, "tracker")),
    ]
    record = await record_in(http, stack, elsewhere, "unrouted")  # declined by every taker
    assert record["routing"][2:] == [
        outcome("shipping", "filter", 'shipment.stock_location eq "default"'),
        outcome("tracker", "filter", "shipment.cost gt 1"),
    ]
    record = await record_in(http, stack, nobody, "unrouted")
    assert [o["outcome"] for o in record["routing"]] == ["type", "type", "type", "type"]

    [held] = await take(channel, f"{stack.prefix}.unrouted", 1)  # only what no type or store took
    assert held.message_id == nobody
    assert [m.message_id for m in await take(channel, f"{stack.prefix}.accepted.shipping", 1)] == [shipped]
    tracked = await take(channel, f"{stack.prefix}.accepted.tracker", 2)
    assert {body(m)["parent_id"] for m in tracked} == {first, again}
    for queue in ("unrouted", "accepted.shipping", "accepted.tracker", "accepted.mailer", "accepted.store"):
        assert await depth(channel, f"{stack.prefix}.{queue}") == 0, queue

    [shown] = await asyncio.to_thread(cli, stack, "show", again)
    assert shown["routing"][2] == outcome("shipping", "identifier", 'number="H438105531460"', shipped)
    metrics = await scrape(http, stack.service_url("router"))
    assert (
        metrics[("integrator_copies_declined_total", (("outcome", "identifier"), ("subscriber", "shipping")))]
        == 1
    )
    assert (
        metrics[("integrator_copies_declined_total", (("outcome", "filter"), ("subscriber", "tracker")))] == 1
    )


IDENTIFIED = """
subscribers:
  shipping:
    messages: [shipment:ready]
    identifiers: {number: shipment.number, at: shipment.stock_location}
    identifier_days: 1
"""


async def test_an_identity_is_remembered_across_restarts_until_its_window_ends(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path,
    ledger_db: asyncpg.Pool,
) -> None:  # fmt: skip
    replace_file(subscriptions_file, IDENTIFIED)
    await stack.start("gateway", "validator", "router", "ledger")
    first = (await pushed(http, stack, ready()))["message_id"]
    other = (await pushed(http, stack, ready(stock_location="ny")))["message_id"]  # another identity
    assert [o["outcome"] for o in (await record_in(http, stack, first, "routed"))["routing"]] == ["delivered"]
    assert [o["outcome"] for o in (await record_in(http, stack, other, "routed"))["routing"]] == ["delivered"]

    stack.service("router").stop()
    stack.services.pop("router")
    await stack.start("router")
    again = (await pushed(http, stack, ready()))["message_id"]
    [seen] = (await record_in(http, stack, again, "unrouted"))["routing"]
    assert seen == outcome("shipping", "identifier", 'number="H438105531460", at="default"',
                           child_message_id(first, "shipping"))  # fmt: skip

    # a day later (the window is one day): the identity is free again
    await ledger_db.execute(
        "UPDATE identities SET expires_at = now() - interval '1 second' WHERE queue = $1",
        f"{stack.prefix}.accepted.shipping",
    )
    later = (await pushed(http, stack, ready()))["message_id"]
    [delivered] = (await record_in(http, stack, later, "routed"))["routing"]
    assert delivered["outcome"] == "delivered" and delivered["copy_id"] == child_message_id(later, "shipping")
    copies = await take(channel, f"{stack.prefix}.accepted.shipping", 3)
    assert [body(m)["parent_id"] for m in copies] == [first, other, later]
    assert await depth(channel, f"{stack.prefix}.accepted.shipping") == 0


async def test_two_routers_copy_each_identity_once(
    stack: Stack, channel: AbstractChannel, subscriptions_file: Path, ledger_db: asyncpg.Pool
) -> None:
    """Two router replicas take turns on `validated`; shipments of 20 numbers, 10 of each, pushed
    at once: each number reaches `shipping` once, whichever router saw it first."""
    replace_file(subscriptions_file, IDENTIFIED)
    second = Stack(stack.prefix, stack.workdir / "second", stack.env)
    try:
        await stack.start("gateway", "validator", "router", "ledger")
        await second.start("router")
        docs = [ready(number=f"H{i % 20:03}") for i in range(200)]
        progress = await push(stack.url, docs, Push(), rate=1000, concurrency=32)
        await wait_until_recorded(ledger_db, progress.accepted, states=("routed", "unrouted"))
        copies = await take(channel, f"{stack.prefix}.accepted.shipping", 20)
        assert sorted(body(m)["payload"]["shipment"]["number"] for m in copies) == [
            f"H{i:03}" for i in range(20)
        ]
        assert await depth(channel, f"{stack.prefix}.accepted.shipping") == 0
        handled = [await routed_by(s) for s in (stack, second)]
        assert sum(handled) == 200 and min(handled) > 0, f"both routers took part: {handled}"
    finally:
        second.stop()


async def routed_by(stack: Stack) -> int:
    """Messages the stack's router copied to `shipping` or declined for it."""
    async with aiohttp.ClientSession() as http:
        metrics = await scrape(http, stack.service_url("router"))
    counted = ("integrator_messages_routed_total", "integrator_copies_declined_total")
    return int(sum(value for (name, _), value in metrics.items() if name in counted))


async def test_a_redelivered_message_is_copied_again_not_taken_for_a_duplicate(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path,
    ledger_db: asyncpg.Pool,
) -> None:  # fmt: skip
    """The router claimed the identity, then died before its copies were confirmed: the
    message comes back, finds its own copy holding the identity, and is copied."""
    replace_file(subscriptions_file, IDENTIFIED)
    await stack.start("gateway", "validator", "router", "ledger")
    first = (await pushed(http, stack, ready()))["message_id"]
    await record_in(http, stack, first, "routed")
    [copied] = await take(channel, f"{stack.prefix}.accepted.shipping", 1)
    # what the router does with `first` when it sees it again is what it does after a crash
    doc = {"message": "shipment:ready", "message_id": first, "store_id": STORE, "payload": READY}
    validated = await channel.get_exchange(f"{stack.prefix}.validated")
    message = aio_pika.Message(orjson.dumps(doc), message_id=first, type="shipment:ready")
    await validated.publish(message, routing_key="shipment:ready")
    [again] = await take(channel, f"{stack.prefix}.accepted.shipping", 1)
    assert again.message_id == copied.message_id == child_message_id(first, "shipping")


async def test_a_changed_file_is_in_force_while_messages_flow(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path
) -> None:
    replace_file(subscriptions_file, 'subscribers:\n  store:\n    messages: ["#"]\n')
    await stack.start("gateway", "validator", "router", "ledger")
    router = stack.service("router")
    sent: list[str] = []

    async def push() -> None:
        sent.append(
            (await pushed(http, stack, typed("stock:change", sku=f"S{len(sent)}", quantity=1)))["message_id"]
        )

    for _ in range(100):
        await push()
    offset = len(router.log_text())
    replace_file(
        subscriptions_file,
        'subscribers:\n  store:\n    messages: ["#"]\n  late:\n    messages: ["stock:*"]\n',
    )
    while "subscriptions reloaded" not in router.log_text(offset):  # pushing on meanwhile
        await push()
    count_at_reload = len(sent)
    for _ in range(100):
        await push()

    stored = await take(channel, f"{stack.prefix}.accepted.store", len(sent), within=60)
    assert sorted(body(m)["parent_id"] for m in stored) == sorted(sent)  # none lost
    late = {body(m)["parent_id"] for m in await take(channel, f"{stack.prefix}.accepted.late", 1, within=30)}
    while m := await (await channel.get_queue(f"{stack.prefix}.accepted.late")).get(no_ack=True, fail=False):
        late.add(body(m)["parent_id"])
    assert set(sent[count_at_reload:]) <= late  # everything pushed after the reload reached `late`
    assert await depth(channel, f"{stack.prefix}.unrouted") == 0  # its queue existed before its first copy
    # each message was routed by one file or the other, whole
    for message_id in sent[::10]:
        record = await record_in(http, stack, message_id, "routed")
        names = [o["subscriber"] for o in record["routing"]]
        assert names == (["store", "late"] if message_id in late else ["store"]), record["routing"]


async def test_a_broken_file_leaves_the_old_subscriptions_in_force(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path
) -> None:
    await stack.start("gateway", "validator", "router")
    router = stack.service("router")
    offset = len(router.log_text())
    replace_file(
        subscriptions_file,
        "subscribers:\n  erp:\n    messages: [order:*]\n    filters: [{path: a, operator: is}]\n",
    )
    await router.wait_for_log(
        "subscriptions file refused; the loaded subscriptions stay in force", offset=offset
    )
    assert "filters[0].operator: 'is' is not one of" in router.log_text(offset)
    metrics = await scrape(http, stack.service_url("router"))
    assert metrics[("integrator_subscriptions_file_valid", ())] == 0
    assert metrics[("integrator_subscriptions_reloads_total", (("outcome", "refused"),))] == 1
    message_id = (await pushed(http, stack, typed("stock:change", sku="S", quantity=2)))["message_id"]
    [copy] = await take(channel, f"{stack.prefix}.accepted.store", 1)  # `store` takes "#" in the old file
    assert body(copy)["parent_id"] == message_id

    offset = len(router.log_text())
    replace_file(subscriptions_file, "subscribers:\n  erp:\n    messages: [stock:*]\n")
    await router.wait_for_log("subscriptions reloaded", offset=offset)
    metrics = await scrape(http, stack.service_url("router"))
    assert metrics[("integrator_subscriptions_file_valid", ())] == 1
    message_id = (await pushed(http, stack, typed("stock:change", sku="S", quantity=2)))["message_id"]
    [copy] = await take(channel, f"{stack.prefix}.accepted.erp", 1)
    assert body(copy)["parent_id"] == message_id
    assert await depth(channel, f"{stack.prefix}.accepted.store") == 0


async def test_a_catastrophic_pattern_does_not_stall_the_router(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path
) -> None:
    # (a+)+$ on "aaa...b" takes a backtracking engine 2^n steps; 40 characters would be hours
    replace_file(
        subscriptions_file,
        'subscribers:\n  store:\n    messages: ["#"]\n'
        "    filters: [{path: sku, operator: match, value: '(a+)+$'}]\n",
    )
    await stack.start("gateway", "validator", "router")
    hostile = typed("stock:change", sku="a" * 40 + "b", quantity=1)
    pushes = [(await pushed(http, stack, hostile))["message_id"] for _ in range(20)]
    barrier = (await pushed(http, stack, typed("stock:change", sku="aaa", quantity=1)))["message_id"]
    [copy] = await take(channel, f"{stack.prefix}.accepted.store", 1, within=30)
    assert body(copy)["parent_id"] == barrier
    assert len(pushes) == 20 and await depth(channel, f"{stack.prefix}.unrouted") == 0


def test_subscriptions_check_prints_every_problem_with_its_place(stack: Stack, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "subscribers:\n  shipping:\n    messages: [shipment:ready]\n"
        "    filters: [{path: shipment..number, operator: eq, value: 1}, {path: a, operator: gt, value: x}]\n"
        "    identifiers: {n: shipment.*.number}\n    stores: [nope]\n    colour: blue\n"
    )
    process = cli_process(stack, "subscriptions", "check", str(broken))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert [json.loads(line)["problem"] for line in out.splitlines()] == [
        f"{broken}: subscriber 'shipping': unknown keys ['colour'] (expected messages, stores, filters,"
        " match, identifiers, identifier_days, endpoint)",
        f"{broken}: subscriber 'shipping': 'stores' must be a list of 24-hex store ids",
        f"{broken}: subscriber 'shipping': filters[0].path: 'shipment..number' is not a dotted path"
        " (empty segment, or deeper than 32)",
        f"{broken}: subscriber 'shipping': filters[1].value: gt compares with a number, got \"x\"",
        f"{broken}: subscriber 'shipping': identifiers.n: 'shipment.*.number' has a wildcard;"
        " an identifier is one value",
    ]
    assert err.strip() == f"{broken}: 5 problems"
    good = tmp_path / "good.yml"
    good.write_text(SHIPPING)
    assert cli(stack, "subscriptions", "check", str(good)) == [
        {"file": str(good), "subscribers": ["store", "mailer", "shipping", "tracker"]}
    ]


async def test_identifiers_hold_the_batch_while_postgresql_is_away(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, subscriptions_file: Path,
    proxied_database_url: str, postgres_proxy: Proxy,
) -> None:  # fmt: skip
    replace_file(subscriptions_file, IDENTIFIED)
    stack.env["INTEGRATOR_DATABASE_URL"] = proxied_database_url
    await stack.start("gateway", "validator", "router")
    router = stack.service("router")
    shipping = f"{stack.prefix}.accepted.shipping"
    first = (await pushed(http, stack, ready(number="P1")))["message_id"]
    assert [body(m)["parent_id"] for m in await take(channel, shipping, 1)] == [first]

    offset = len(router.log_text())
    postgres_proxy.cut()
    second = (await pushed(http, stack, ready(number="P2")))["message_id"]  # accepted meanwhile
    await pushed(http, stack, ready(number="P1"))  # a duplicate, which must not slip through
    await router.wait_for_log("PostgreSQL unavailable; holding the batch", offset=offset)
    assert await depth(channel, shipping) == 0
    postgres_proxy.restore()
    await router.wait_for_log("PostgreSQL reachable again", offset=offset)
    assert [body(m)["parent_id"] for m in await take(channel, shipping, 1)] == [second]
    barrier = (await pushed(http, stack, ready(number="P3")))["message_id"]
    assert [body(m)["parent_id"] for m in await take(channel, shipping, 1)] == [barrier]
