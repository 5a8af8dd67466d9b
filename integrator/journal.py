"""What the hub did with its messages, told to the ledger in one small message per batch.

The gateway tells of the messages it accepted, one event per message, in one message per turn
of its event loop; the validator and the router tell of what each of their batches decided.
The pipeline so pays a few microseconds a message for the ledger and never waits on
PostgreSQL; only dead messages reach the ledger one by one, through its queue's binding to
`dead`. Each decision brings its own event (integrator.consumer.Decision):

    {"at": <unix ms>, "events": [["accepted", id, message, store_id, received_at, warnings, envelope],
                                 ["validated", id, warnings], ["rejected", id, errors, warnings],
                                 ["routed", parent_id, [[copy_id, subscriber], ...], routing],
                                 ["unrouted", id, routing]]}

`envelope` is the message's JSON body as it went to `incoming`, as a string; `routing` is each
subscriber's outcome, in file order (integrator.subscriptions.Outcome).
"""

from __future__ import annotations

from typing import Any

import orjson

from integrator import envelope
from integrator.ids import new_message_id
from integrator.publisher import Outbound
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
