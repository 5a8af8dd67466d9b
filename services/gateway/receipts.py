"""The gateway's receipts: what it accepted, told to the ledger in one batch event per turn.

The ledger records a message as accepted from its receipt, so a push is answered 202 only once
both the message and the batch event telling of it are confirmed. The receipts gathered in one
turn of the event loop go out as one message, in the same socket write as the messages: the
send is scheduled before the turn's first message is published, so it runs before the
publisher's writer does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from integrator import journal
from integrator.journal import Journal
from integrator.publisher import Outbound, Publisher


class Receipts:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._events: list[list[Any]] = []
        self._told: asyncio.Future[None] | None = None  # the confirm of this turn's batch event

    def add(self, publisher: Publisher, out: Outbound) -> asyncio.Future[None]:
        """Note the receipt of `out`, which is to be published next, in this same turn; the
        future settles with the confirm of the batch event that tells of it. It is shared by
        the turn's pushes: await it through `asyncio.shield`."""
        if self._told is None:
            loop = asyncio.get_running_loop()
            self._told = loop.create_future()
            loop.call_soon(self._send, publisher)
        props = out.properties
        self._events.append(journal.accepted(props.message_id, props.message_type, props.headers, out.body))
        return self._told

    def _send(self, publisher: Publisher) -> None:
        events, told = self._events, self._told
        self._events, self._told = [], None
        try:
            sending = publisher.send(self._journal.entry(events))
        except Exception as exc:  # a closed channel, say: the turn's pushes must hear of it, not hang
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
    told.exception()  # marked retrieved: every push of the turn that awaits it raises it anyway
