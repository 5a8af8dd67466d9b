"""Assembling and serving the gateway: the aiohttp application and its broker link."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from integrator import db
from integrator.http_json import json_errors
from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from integrator.stores import GatewayTokens
from services.gateway import http_errors
from services.gateway.broker import BrokerLink
from services.gateway.keys import BROKER, CATALOGUE, DATABASE, RATE_LIMITER, SETTINGS, TOKENS
from services.gateway.messages import add_message_routes
from services.gateway.problems import json_problems
from services.gateway.rate_limit import SharedRateLimiter
from services.gateway.routes import add_routes

log = logging.getLogger("integrator.gateway")


def create_app(settings: Settings, broker: BrokerLink, catalogue: SchemaCatalogue) -> web.Application:
    http_errors.install()
    app = web.Application(middlewares=[json_errors, json_problems], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BROKER] = broker
    app[CATALOGUE] = catalogue
    if not settings.auth:
        log.warning("authentication is off: any client may push for any store")
    app.cleanup_ctx.append(database)
    add_routes(app)
    add_message_routes(app)
    return app


async def database(app: web.Application) -> AsyncIterator[None]:
    """PostgreSQL, opened without connecting, and what the gateway keeps there: store tokens
    (read again in the background whenever they change), the shared rate limits, idempotency
    keys and the ledger it reads."""
    settings = app[SETTINGS]
    pool = app[DATABASE] = await db.open_pool(settings.database_url, max_size=8)
    app[RATE_LIMITER] = SharedRateLimiter(pool, settings.prefix, settings.store_rate, settings.store_burst)
    stopping = asyncio.Event()
    if settings.auth:
        app[TOKENS] = GatewayTokens(pool)
        reading = asyncio.create_task(app[TOKENS].keep_current(stopping))
    yield
    stopping.set()
    if settings.auth:
        await reading
    await pool.close()


async def serve(settings: Settings, catalogue: SchemaCatalogue, stopping: asyncio.Event) -> None:
    """Serve until `stopping`; then stop listening, let in-flight requests finish, and disconnect.

    The broker link outlives the HTTP server so that requests in flight at shutdown still get
    their confirms and a truthful answer.
    """
    if settings.auth and settings.stores.exists():
        log.warning(
            "the stores file is no longer read: store tokens live in PostgreSQL;"
            " `integrator tokens import` moves its tokens there",
            extra={"file": str(settings.stores)},
        )
    broker = BrokerLink(settings)
    broker_stopping = asyncio.Event()
    link = asyncio.create_task(broker.run(broker_stopping))
    runner = web.AppRunner(create_app(settings, broker, catalogue), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
    log.info("listening", extra={"host": settings.gateway_host, "port": settings.gateway_port})
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait((stop, link), return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    await runner.cleanup()
    broker_stopping.set()
    await link  # re-raises what ended the link early, such as a TopologyConflict
