"""Owns talking to the broker: connecting with capped, logged retries, and reconnecting after loss.

AMQP_URL may name several nodes of a cluster, separated by commas: a connection goes to the
first that answers, and after a loss the next attempt starts with the node after the lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from integrator.logs import redact

log = logging.getLogger("integrator.connection")

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
FIRST_DELAY = 0.2
STABLE_SESSION = 10.0  # seconds a session must last for the backoff to start over
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
REFUSED = (aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.AuthenticationError)


class BrokerRefused(Exception):
    """The broker answers but will not let us in: retrying the same credentials cannot help."""


Session = Callable[[AbstractConnection], Awaitable[None]]


def broker_urls(url: str) -> list[str]:
    """The nodes AMQP_URL names: one URL, or several separated by commas."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect_first(url: str, name: str, per_node: float = CONNECT_TIMEOUT) -> AbstractConnection:
    """A connection to the first node of `url` that answers, for a one-off client (the CLI, a
    check); raises the last node's error if none does."""
    urls = broker_urls(url)
    for i, node in enumerate(urls):
        try:
            return await aio_pika.connect(node, client_properties={"connection_name": name}, timeout=per_node)
        except BROKER_ERRORS:
            if i == len(urls) - 1:
                raise
    raise ValueError("AMQP_URL names no broker")


async def connect(
    url: str, name: str, stopping: asyncio.Event, first: int = 0
) -> tuple[AbstractConnection, int] | None:
    """Connect to the nodes of `url` in turn from the `first`, each round of them retried with
    exponential backoff capped at MAX_DELAY; the connection and its node's index, or None once
    `stopping` is set. Raises BrokerRefused at once if a broker refuses the credentials."""
    urls = broker_urls(url)
    delay = FIRST_DELAY
    attempt = 1
    while not stopping.is_set():
        node = (first + attempt - 1) % len(urls)
        try:
            connection = await _unless_stopping(
                aio_pika.connect(urls[node], client_properties={"connection_name": name},
                                 timeout=CONNECT_TIMEOUT),
                stopping,
            )  # fmt: skip
            return None if connection is None else (connection, node)
        except REFUSED as exc:
            raise BrokerRefused(redact(f"the broker refuses the credentials of AMQP_URL: {exc}")) from None
        except Exception as exc:  # any other failure to connect is worth another try
            round_done = attempt % len(urls) == 0  # every node tried once: wait before the next round
            log.warning("broker unreachable", extra={"attempt": attempt, "node": redact(urls[node]),
                        "retry_in": delay if round_done else 0, "error": repr(exc)})  # fmt: skip
            if round_done:
                await _sleep(delay, stopping)
                delay = min(delay * 2, MAX_DELAY)
        attempt += 1
    return None


async def _unless_stopping(
    connecting: Awaitable[AbstractConnection], stopping: asyncio.Event
) -> AbstractConnection | None:
    """The connection, or None as soon as `stopping` is set: a stop must not wait out the
    connect timeout of a broker that accepts TCP but never answers."""
    attempt = asyncio.ensure_future(connecting)
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait((attempt, stop), return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not attempt.done():
        # a cancelled handshake may itself never finish: give it CLOSE_TIMEOUT, as `_close` does
        attempt.cancel()
        await asyncio.wait((attempt,), timeout=CLOSE_TIMEOUT)
        return None
    return attempt.result()


async def stay_connected(url: str, name: str, session: Session, stopping: asyncio.Event) -> None:
    """Run `session` on a connection, and on a fresh one after every loss, until `stopping` is set.

    A session returns when `stopping` is set. It is cancelled if its connection is lost, and may
    raise a broker error when its channel is; either way a new connection follows.
    """
    quick_failures, first = 0, 0
    while (connected := await connect(url, name, stopping, first)) is not None:
        connection, node = connected
        first = node + 1  # after a loss, another node first: this one may be the one that went
        log.info("connected to broker", extra={"node": redact(broker_urls(url)[node])})
        started = time.monotonic()
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
        except Exception as exc:
            # aiormq fails pending confirms and acks with a bare Exception when the connection
            # drops; only an error with the connection still up is a bug worth crashing for
            if not await _was_lost(connection, lost):
                raise
            log.warning("broker connection lost", extra={"error": repr(exc)})
        finally:
            watching.cancel()
            await _close(connection)
        # a session that fails as soon as it starts (a channel error, say) must not spin
        quick_failures = quick_failures + 1 if time.monotonic() - started < STABLE_SESSION else 0
        if quick_failures:
            await _sleep(min(FIRST_DELAY * 2**quick_failures, MAX_DELAY), stopping)


async def _was_lost(connection: AbstractConnection, lost: asyncio.Event) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(lost.wait(), CLOSE_TIMEOUT)
    return lost.is_set() or connection.is_closed


async def _sleep(seconds: float, stopping: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def _close(connection: AbstractConnection) -> None:
    """Close, but never hang: closing a connection the broker already dropped may never finish
    (nor finish being cancelled), and the connection is gone either way."""
    closing = asyncio.ensure_future(connection.close())
    await asyncio.wait((closing,), timeout=CLOSE_TIMEOUT)
    if closing.done() and not closing.cancelled() and closing.exception() is not None:
        log.debug("close failed", extra={"error": repr(closing.exception())})
