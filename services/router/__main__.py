"""`python -m services.router` / `integrator-router`."""

from __future__ import annotations

import asyncio
import sys

from integrator import db
from integrator.service import run_service, settings_or_exit
from integrator.subscriptions import Subscriptions, SubscriptionsError
from integrator.topology import Topology
from integrator.worker import deciding, worker_main
from services.router.handler import Router
from services.router.identities import Identities
from services.router.reload import follow


def main() -> None:
    settings = settings_or_exit()
    try:
        subscriptions = Subscriptions.load(settings.subscriptions)
    except SubscriptionsError as exc:
        sys.exit(f"router: {exc}")
    topology = Topology.from_settings(settings)

    async def router(stopping: asyncio.Event) -> None:
        pool = await db.open_pool(settings.database_url)  # used only for identifiers
        persistence = db.Persistence(settings.database_url, stopping)
        routing = Router(subscriptions, topology, Identities(pool), persistence)
        consumer = deciding("router", settings, routing.on)
        consume = worker_main("router", settings, topology.validated, consumer, settings.router_port)
        following = asyncio.ensure_future(follow(settings.subscriptions, routing, stopping))
        try:
            await consume(stopping)
        finally:
            following.cancel()
            await pool.close()

    run_service("router", settings, router)


if __name__ == "__main__":
    main()
