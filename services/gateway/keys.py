"""What the gateway's application holds, by key: settings, broker link, catalogue and the rest."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from integrator.stores import GatewayTokens
from services.gateway.broker import BrokerLink
from services.gateway.rate_limit import SharedRateLimiter

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", BrokerLink)
RATE_LIMITER = web.AppKey("rate_limiter", SharedRateLimiter)
CATALOGUE = web.AppKey("catalogue", SchemaCatalogue)
TOKENS = web.AppKey("tokens", GatewayTokens)
DATABASE = web.AppKey("database", asyncpg.Pool)
