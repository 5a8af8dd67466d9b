"""Owns talking to the broker: connecting with capped, logged retries, and reconnecting after loss."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

log = logging.getLogger("integrator.connection")

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
BROKER_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    StopAsyncIteration,  # aiormq's word for a socket closed mid-handshake
)
"""What a lost or refused broker connection raises; anything else is a bug and propagates."""

Session = Callable[[AbstractConnection], Awaitable[None]]


async def connect(url: str, name: str, stopping: asyncio.Event) -> AbstractConnection | None:
    """Connect, retrying with exponential backoff capped at MAX_DELAY; None once `stopping` is set."""
    delay = FIRST_DELAY
    attempt = 1
    while not stopping.is_set():
        try:
            return await aio_pika.connect(
                url, client_properties={"connection_name": name}, timeout=CONNECT_TIMEOUT
            )
        except BROKER_ERRORS as exc:
            log.warning(
                "broker unreachable", extra={"attempt": attempt, "retry_in": delay, "error": repr(exc)}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(delay * 2, MAX_DELAY)
        attempt += 1
    return None


async def stay_connected(url: str, name: str, session: Session, stopping: asyncio.Event) -> None:
    """Run `session` on a connection, and on a fresh one after every loss, until `stopping` is set.

    A session returns when `stopping` is set. It is cancelled if its connection is lost, and may
    raise a broker error when its channel is; either way a new connection follows.
    """
    while (connection := await connect(url, name, stopping)) is not None:
        log.info("connected to broker")
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_, lost=lost: lost.set())
        running = asyncio.create_task(session(connection))
        watching = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait((running, watching), return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                running.cancel()
                log.warning("broker connection lost")
            with contextlib.suppress(asyncio.CancelledError):
                await running
        except BROKER_ERRORS as exc:
            log.warning("broker connection lost", extra={"error": repr(exc)})
        finally:
            watching.cancel()
            await _close(connection)


async def _close(connection: AbstractConnection) -> None:
    """Close, but never hang: closing a connection the broker already dropped may never finish
    (nor finish being cancelled), and the connection is gone either way."""
    closing = asyncio.ensure_future(connection.close())
    await asyncio.wait((closing,), timeout=CLOSE_TIMEOUT)
    if closing.done() and not closing.cancelled() and closing.exception() is not None:
        log.debug("close failed", extra={"error": repr(closing.exception())})
