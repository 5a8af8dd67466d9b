"""`python -m integrator.check_broker`: say plainly whether the broker at AMQP_URL answers.

`make run` calls it first, so a missing broker is one clear sentence, not a stream of retries.
"""

from __future__ import annotations

import asyncio
import sys

import aio_pika

from integrator.connection import BROKER_ERRORS
from integrator.settings import Settings


async def _check(url: str) -> str | None:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), 5)
    except BROKER_ERRORS as exc:
        return repr(exc)
    await connection.close()
    return None


def main() -> None:
    url = Settings.from_env().amqp_url
    problem = asyncio.run(_check(url))
    if problem is not None:
        sys.exit(
            f"No RabbitMQ answers at {url} ({problem}).\n"
            "Start one with `rabbitmq-server -detached` (or `docker compose up -d rabbitmq`),\n"
            "or point AMQP_URL at a running broker."
        )


if __name__ == "__main__":
    main()
