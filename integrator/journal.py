"""What the hub did with its messages, told to the ledger in one small message per batch.

The gateway tells of the messages it accepted and the deliverer of its attempts, one event per
message, in one message per turn of the event loop (TurnJournal); the validator and the
router tell of what each of their batches decided.
The pipeline so pays a few microseconds a message for the ledger and never waits on
PostgreSQL; only dead messages reach the ledger one by one, through its queue's binding to
`dead`. Each decision brings its own event (integrator.consumer.Decision):

    {"at": <unix ms>, "events": [["accepted", id, message, store_id, received_at, warnings, envelope],
                                 ["validated", id, warnings], ["rejected", id, errors, warnings],
                                 ["routed", parent_id, [[copy_id, subscriber], ...], routing],
                                 ["unrouted", id, routing],
                                 ["attempt", copy_id, parent_id, subscriber, attempt, state]]}

`envelope` is the message's JSON body as it went to `incoming`, as a string; `routing` is each
subscriber's outcome, in file order (integrator.subscriptions.Outcome); `attempt` is one try
at delivering a copy to its endpoint (services/deliverer/sender.py), `state` what it left the
copy in.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from integrator import envelope
from integrator.ids import new_message_id
from integrator.publisher import Outbound, Publisher
from integrator.topology import Topology

EVENTS_TYPE = "ledger:events"


def accepted(message_id: str, message_type: str, headers: dict[str, Any], body: bytes) -> list[Any]:
    """The event of a message going to `incoming` with these properties and body."""
    return [
        "accepted",
        message_id,
        message_type,
        headers.get("store_id"),
        headers.get("received_at"),
        headers.get("warnings", []),
        body.decode(),
    ]


def entry_body(events: list[list[Any]]) -> bytes:
    return orjson.dumps({"at": envelope.now_ms(), "events": events})


class Journal:
    def __init__(self, topology: Topology) -> None:
        self._exchange = topology.ledger_events

    def entry(self, events: list[list[Any]]) -> Outbound:
        """The batch event telling of `events`."""
        properties = envelope.properties(EVENTS_TYPE, new_message_id(), {})
        return Outbound(self._exchange, "", entry_body(events), properties)


class TurnJournal:
    """Events told during one turn of the event loop, published as one batch event.

    A service that settles messages one at a time (the gateway, the deliverer) tells of each
    here and awaits the confirm of the batch event that carries it before settling. The send
    is scheduled when a turn's first event is told, before that message's own publishes, so
    it runs before the publisher's writer does and everything goes out in one socket write.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._events: list[list[Any]] = []
        self._told: asyncio.Future[None] | None = None  # the confirm of this turn's batch event

    def tell(self, publisher: Publisher, event: list[Any]) -> asyncio.Future[None]:
        """Add `event` to this turn's batch event; the future settles with its confirm. It is
        shared by the turn's messages: await it through `asyncio.shield`."""
        if self._told is None:
            loop = asyncio.get_running_loop()
            self._told = loop.create_future()
            loop.call_soon(self._send, publisher)
        self._events.append(event)
        return self._told

    def _send(self, publisher: Publisher) -> None:
        events, told = self._events, self._told
        self._events, self._told = [], None
        try:
            sending = publisher.send(self._journal.entry(events))
        except Exception as exc:  # a closed channel, say: the turn's messages must hear of it, not hang
            _fail(told, exc)
        else:
            sending.add_done_callback(lambda sent: _settle(told, sent))


def _settle(told: asyncio.Future[None], sending: asyncio.Task[None]) -> None:
    if told.done():
        return
    if sending.cancelled():
        told.cancel()
    elif (exc := sending.exception()) is not None:
        _fail(told, exc)
    else:
        told.set_result(None)


def _fail(told: asyncio.Future[None], exc: BaseException) -> None:
    told.set_exception(exc)
    told.exception()  # marked retrieved: every message of the turn that awaits it raises it anyway
