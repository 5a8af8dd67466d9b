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

FIRST_DELAY = 0.2
MAX_DELAY = 5.0
BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, asyncio.TimeoutError)
"""What a lost or refused broker connection raises; anything else is a bug and propagates."""

Session = Callable[[AbstractConnection], Awaitable[None]]


async def connect(url: str, name: str, stopping: asyncio.Event) -> AbstractConnection | None:
    """Connect, retrying with exponential backoff capped at MAX_DELAY; None once `stopping` is set."""
    delay = FIRST_DELAY
    attempt = 1
    while not stopping.is_set():
        try:
            return await aio_pika.connect(url, client_properties={"connection_name": name})
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

    A session returns when `stopping` is set and raises when its connection or channel is lost.
    """
    while (connection := await connect(url, name, stopping)) is not None:
        log.info("connected to broker")
        try:
            await session(connection)
        except BROKER_ERRORS as exc:
            log.warning("broker connection lost", extra={"error": repr(exc)})
        finally:
            with contextlib.suppress(*BROKER_ERRORS):
                await connection.close()
