"""Per-store rate limiting, so one store's flood cannot take every other store's capacity.

A token bucket per store, in this gateway's memory: with several gateway instances each
enforces the limit on its own share of the traffic.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_TRACKED_STORES = 100_000
"""Buckets kept at once; the least recently seen store's is forgotten (it refills anyway)."""


class StoreRateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, last refill

    def retry_after(self, store_id: str) -> int | None:
        """None if the store may send one message now; otherwise whole seconds to wait."""
        if self._rate <= 0:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(store_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1
        self._buckets[store_id] = (tokens - 1 if allowed else tokens, now)
        if len(self._buckets) > MAX_TRACKED_STORES:
            self._buckets.popitem(last=False)
        return None if allowed else max(1, math.ceil((1 - tokens) / self._rate))
