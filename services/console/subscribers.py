"""The subscriptions file as the router has it loaded: read again (in a thread) when it changes,
and, like the router, the last good one kept while the file is broken."""

from __future__ import annotations

import asyncio
from pathlib import Path

from integrator import files
from integrator.subscriptions import Subscriptions, SubscriptionsError


class CurrentSubscriptions:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: files.Version = None
        self._last = Subscriptions([])
        self.problems: tuple[str, ...] = ()  # of the file as it is now, if it is broken

    async def get(self) -> Subscriptions:
        version = await asyncio.to_thread(files.version, self.path)
        if version != self._version:
            try:
                self._last, self.problems = await asyncio.to_thread(Subscriptions.load, self.path), ()
            except SubscriptionsError as exc:
                self.problems = tuple(exc.problems)
            self._version = version
        return self._last
