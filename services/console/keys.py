"""What the console's handlers find on the application."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from integrator.topology import Topology
from services.console.broker import BrokerLink
from services.console.overview import QueueWatch
from services.console.subscribers import CurrentSubscriptions

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", asyncpg.Pool)
BROKER = web.AppKey("broker", BrokerLink)
TOPOLOGY = web.AppKey("topology", Topology)
QUEUES = web.AppKey("queues", QueueWatch)
CATALOGUE = web.AppKey("catalogue", SchemaCatalogue)
SUBSCRIPTIONS = web.AppKey("subscriptions", CurrentSubscriptions)
