"""`python -m services.console` / `integrator-console`: the web console over the ledger and the
broker, for the hub's administrators and its stores."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote, urlsplit

from aiohttp import web

from integrator import db
from integrator.connection import broker_urls
from integrator.service import load_catalogue_or_exit, run_service, settings_or_exit
from integrator.topology import Topology
from services.console.app import add_routes, error_pages, sessions
from services.console.broker import BrokerLink
from services.console.keys import (
    BROKER,
    CATALOGUE,
    DATABASE,
    QUEUES,
    SETTINGS,
    SUBSCRIPTIONS,
    TOPOLOGY,
)
from services.console.overview import QueueWatch
from services.console.subscribers import CurrentSubscriptions

log = logging.getLogger("integrator.console")


def main() -> None:
    settings = settings_or_exit()
    catalogue = load_catalogue_or_exit("console", settings)
    topology = Topology.from_settings(settings)

    async def console(stopping: asyncio.Event) -> None:
        app = web.Application(middlewares=[error_pages, sessions])
        app[SETTINGS], app[CATALOGUE], app[TOPOLOGY] = settings, catalogue, topology
        app[SUBSCRIPTIONS] = CurrentSubscriptions(settings.subscriptions)
        app[DATABASE] = await db.open_pool(settings.database_url, max_size=4)
        vhost = unquote(urlsplit(broker_urls(settings.amqp_url)[0]).path[1:]) or "/"
        app[BROKER] = BrokerLink(settings.amqp_url)
        app[QUEUES] = QueueWatch(topology, settings.management_url, vhost)
        add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            try:  # its tables, if the ledger has not made them yet
                await db.upgrade(settings.database_url)
            except db.UNAVAILABLE as exc:  # pages say so until PostgreSQL is back
                log.warning("PostgreSQL unavailable", extra={"error": str(exc)})
            await web.TCPSite(runner, settings.console_host, settings.console_port).start()
            log.info("serving", extra={"port": settings.console_port})
            await stopping.wait()
        finally:
            await runner.cleanup()
            await app[BROKER].close()
            await app[QUEUES].close()
            await app[DATABASE].close()

    run_service("console", settings, console)


if __name__ == "__main__":
    main()
