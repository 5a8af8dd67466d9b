"""`python -m services.router` / `integrator-router`."""

from __future__ import annotations

import sys

from integrator.service import settings_or_exit
from integrator.subscriptions import Subscriptions, SubscriptionsError
from integrator.topology import Topology
from integrator.worker import run_worker
from services.router.handler import routing_handler


def main() -> None:
    settings = settings_or_exit()
    try:
        subscriptions = Subscriptions.load(settings.subscriptions)
    except SubscriptionsError as exc:
        sys.exit(f"router: {exc}")
    topology = Topology.from_settings(settings)
    handler = routing_handler(subscriptions, topology)
    run_worker("router", settings, topology.validated, handler, settings.router_port, subscriptions.names)


if __name__ == "__main__":
    main()
