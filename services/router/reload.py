"""Following the subscriptions file: a change is in force within two seconds, or refused whole.

The file is polled, and read once it has stayed the same for a poll, so an editor's write in
progress is not taken for the new file. The new subscriptions are loaded and checked completely
before they replace the old ones in one assignment; the router reads them once per batch, so
no message is routed by a mix of the two. A broken file leaves the old subscriptions in force.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from integrator import files, metrics
from integrator.consumer import wait_for
from integrator.subscriptions import Subscriptions, SubscriptionsError
from services.router.handler import Router

log = logging.getLogger("integrator.router")

POLL_SECONDS = 0.5


async def follow(path: Path, router: Router, stopping: asyncio.Event) -> None:
    """Put each settled change of `path` in force on `router` until `stopping` is set."""
    loaded = previous = files.version(path)
    metrics.subscriptions_valid.set(1)
    while not await wait_for(stopping, POLL_SECONDS):
        current = files.version(path)
        settled, previous = current == previous, current
        if current == loaded or not settled:
            continue
        loaded = current
        try:
            subscriptions = Subscriptions.load(path)
        except SubscriptionsError as exc:
            metrics.subscriptions_reloads.labels("refused").inc()
            metrics.subscriptions_valid.set(0)
            log.error("subscriptions file refused; the loaded subscriptions stay in force",
                      extra={"problems": exc.problems})  # fmt: skip
            continue
        router.subscriptions = subscriptions
        metrics.subscriptions_reloads.labels("loaded").inc()
        metrics.subscriptions_valid.set(1)
        log.info("subscriptions reloaded", extra={"subscribers": list(subscriptions.names)})
