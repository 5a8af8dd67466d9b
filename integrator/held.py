"""Messages held in the hub's holding queues (rejected, unrouted, dead, parked.SUBSCRIBER): looking
at them with their reasons, sending them back through the pipeline, or discarding them.

Shared by the CLI and the console. RabbitMQ cannot look without delivering: a look takes each
message unacked and the channel's close puts it back. Replaying or discarding goes through the
queue once: what is chosen is sent back (or dropped), what is not goes round to the back of the
queue, so only one message is in hand at a time however many are held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from integrator import journal
from integrator.envelope import now_ms
from integrator.ids import new_message_id
from integrator.topology import Topology

REPLAY_STRIPS = ("x-death", "x-delivery-count", "x-first-death-exchange", "x-first-death-queue",
                 "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                 "x-last-death-reason", "errors", "reason", "attempts",
                 "original-expiration")  # fmt: skip

Choice = Callable[[AbstractIncomingMessage], bool]


async def held(ch: AbstractChannel, queue: str, limit: int | None) -> AsyncIterator[AbstractIncomingMessage]:
    """Every message waiting in `queue`, each left unacked until the channel closes, which puts
    back what is not acked. On a subscriber's queue that counts as one delivery of each toward
    INTEGRATOR_DELIVERY_LIMIT: the broker has no other way to look."""
    q = await ch.get_queue(queue, ensure=False)
    taken = 0
    while limit is None or taken < limit:
        message = await q.get(no_ack=False, fail=False)
        if message is None:
            return
        taken += 1
        yield message


def summary(message: AbstractIncomingMessage) -> dict[str, Any]:
    """What a list of held messages shows of each: its id, type, reason and deliveries so far."""
    return {
        "message_id": message.message_id,
        "message": message.type,
        "reason": reason(message),
        "deliveries": (message.headers or {}).get("x-delivery-count", 0),
    }


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The summary, with the attempts a parked copy carries, and the body."""
    try:
        body: Any = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        body = message.body.decode(errors="replace")
    attempts = (message.headers or {}).get("attempts")
    return {**summary(message), **({"attempts": attempts} if attempts else {}), "body": body}


def reason(message: AbstractIncomingMessage) -> str | None:
    headers = message.headers or {}
    if "errors" in headers:
        return "; ".join(f"{e['path'] or '/'}: {e['message']}" for e in headers["errors"])
    if "reason" in headers:
        return str(headers["reason"])
    if deaths := headers.get("x-death"):
        return f"{deaths[0]['reason']} in {deaths[0]['queue']}"
    return None


def store_of(message: AbstractIncomingMessage) -> str | None:
    """The store a held message belongs to: its header, as every stage sets it."""
    store = (message.headers or {}).get("store_id")
    return store if isinstance(store, str) else None


def replay_target(topology: Topology, stage: str, message: AbstractIncomingMessage) -> tuple[str, str]:
    """Where a held message re-enters: rejected ones are validated again (after a schema fix),
    unrouted ones routed again (after a subscription fix), dead ones go back where they died."""
    if stage == "unrouted":
        return topology.validated, message.type or ""
    if stage.startswith("parked."):  # back to its endpoint's queue, the retry schedule afresh
        return topology.accepted, stage.removeprefix("parked.")
    deaths = (message.headers or {}).get("x-death")
    if stage == "dead" and deaths:
        keys = deaths[0].get("routing-keys") or [""]
        return str(deaths[0]["exchange"]), str(keys[0])
    return topology.incoming, message.type or ""


async def act_on(
    ch: AbstractChannel,
    topology: Topology,
    stage: str,
    chosen: Choice,
    replay: bool,
    tell_ledger: bool,
    limit: int | None = None,
) -> AsyncIterator[AbstractIncomingMessage]:
    """Replay (or, with `replay` false, discard) the messages of the holding queue `stage` that
    `chosen` picks, at most `limit`; yields each once it is done. `ch` has publisher confirms."""
    queue = topology.name(stage)
    done = 0
    held_now = (await ch.declare_queue(queue, passive=True)).declaration_result.message_count or 0
    async for message in held(ch, queue, held_now):
        if limit is not None and done >= limit:
            return
        if not chosen(message):
            await _publish(ch, "", queue, _copy(message, message.headers or {}))  # to the back
            await message.ack()
            continue
        if replay:
            exchange, key = replay_target(topology, stage, message)
            headers = {k: v for k, v in (message.headers or {}).items() if k not in REPLAY_STRIPS}
            again = _copy(message, {**headers, "replayed_from": queue, "replayed_at": now_ms()})
            await _publish(ch, exchange, key, again)
            if exchange == topology.incoming and tell_ledger:  # accepted again, as the gateway tells
                await _publish(ch, topology.ledger_events, "", _receipt(again))
        await message.ack()
        done += 1
        yield message


def _copy(message: AbstractIncomingMessage, headers: dict) -> aio_pika.Message:
    return aio_pika.Message(
        message.body, headers=headers, content_type=message.content_type, delivery_mode=2,
        message_id=message.message_id, type=message.type, timestamp=message.timestamp,
    )  # fmt: skip


def _receipt(message: aio_pika.Message) -> aio_pika.Message:
    """The ledger's batch event telling that `message` went to `incoming`."""
    event = journal.accepted(message.message_id, message.type, message.headers, message.body)
    return aio_pika.Message(
        journal.entry_body([event]), delivery_mode=2,
        message_id=new_message_id(), type=journal.EVENTS_TYPE, content_type="application/json",
    )  # fmt: skip


async def _publish(ch: AbstractChannel, exchange: str, key: str, message: aio_pika.Message) -> None:
    """Publish and wait for the confirm; `exchange` "" is the default one, `key` a queue."""
    target = ch.default_exchange if exchange == "" else await ch.get_exchange(exchange, ensure=False)
    await target.publish(message, routing_key=key, mandatory=True)
