"""Health and metrics over HTTP: /healthz, /readyz and /metrics, for orchestrators and Prometheus.

The gateway adds these routes to its own application; a worker serves them on a small port of
its own.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from integrator.http_json import json_answer, json_errors
from integrator.metrics import registry_for

NOT_CONNECTED = "not connected to the broker"


def add_health_routes(
    app: web.Application,
    service: str,
    ready: Callable[[], bool],
    why_not: Callable[[], str] = lambda: NOT_CONNECTED,
) -> None:
    """`ready()` says whether the service can do its work: connected, topology declared; `why_not()`
    what a 503 says otherwise. /metrics shows the metrics `service` keeps, and the process's own."""
    registry = registry_for(service)

    async def healthz(_: web.Request) -> web.Response:
        return json_answer({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return json_answer({"status": "ready"})
        return json_answer({"status": why_not()}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def serve_health(host: str, port: int, service: str, ready: Callable[[], bool]) -> web.AppRunner:
    app = web.Application(middlewares=[json_errors])
    add_health_routes(app, service, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
