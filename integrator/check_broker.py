"""`python -m integrator.check_broker`: say plainly whether the broker at AMQP_URL answers.

`make run` and `make test` call it first, so a missing broker is one clear sentence, not a stream of retries.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from integrator.connection import BROKER_ERRORS, REFUSED, connect_first
from integrator.logs import redact
from integrator.settings import Settings


def missing(url: str, error: BaseException) -> str:
    """What to tell a user whose broker does not answer or let in, credentials redacted."""
    if isinstance(error, REFUSED):
        return redact(f"RabbitMQ at {url} refuses these credentials ({error}); fix the user in AMQP_URL.")
    return redact(
        f"No RabbitMQ answers at {url} ({error!r}).\n"
        "Start one with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`),\n"
        "or point AMQP_URL at a running broker."
    )


async def problem(url: str) -> str | None:
    """None if the broker at `url` lets us in, else what to tell the user."""
    try:
        connection = await connect_first(url, "integrator-check", per_node=5)
    except BROKER_ERRORS as exc:
        return missing(url, exc)
    await connection.close()
    return None


def main() -> None:
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # the one sentence below says it all
    if (found := asyncio.run(problem(Settings.from_env().amqp_url))) is not None:
        sys.exit(found)


if __name__ == "__main__":
    main()
