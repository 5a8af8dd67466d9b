"""When an endpoint may be sent the next request: its circuit and its rate."""

from __future__ import annotations

import asyncio
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}  # as the circuit-state gauge shows them


class Circuit:
    """Stops hammering an endpoint that fails every request.

    After `failures_to_open` failures in a row it opens: attempts wait (the copies stay unacked,
    at most the endpoint's max_in_flight of them). After a cool-down one attempt goes through
    as a probe; its success closes the circuit, its failure opens it again for twice as long,
    up to `max_cooldown`.
    """

    def __init__(self, failures_to_open: int = 5, cooldown: float = 5.0, max_cooldown: float = 300.0) -> None:
        self.state = CLOSED
        self._failures_to_open = failures_to_open
        self._first_cooldown = self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._failures = 0
        self._opened_at = 0.0
        self._changed = asyncio.Event()

    async def admit(self) -> None:
        """Return when an attempt may go: at once while closed; as the probe, or after it."""
        while self.state != CLOSED:
            if self.state == OPEN:
                wait = self._opened_at + self._cooldown - time.monotonic()
                if wait <= 0:
                    self._become(HALF_OPEN)
                    return  # this attempt is the probe
                await asyncio.sleep(wait)
            else:
                await self._changed.wait()

    def record(self, ok: bool) -> None:
        if ok:
            self._failures, self._cooldown = 0, self._first_cooldown
            if self.state != CLOSED:
                self._become(CLOSED)
            return
        self._failures += 1
        if self.state == HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
            self._open()
        elif self.state == CLOSED and self._failures >= self._failures_to_open:
            self._open()

    def _open(self) -> None:
        self._opened_at = time.monotonic()
        self._become(OPEN)

    def _become(self, state: str) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()


class Pace:
    """At most `rate` requests a second, evenly spaced; None: no limit."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._next = 0.0

    async def take(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
