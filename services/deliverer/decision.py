"""What becomes of a copy after an attempt to deliver it, decided in one place.

2xx: delivered. 410: the endpoint is gone; disable it and keep the copy on its queue. 429 and
503 with a Retry-After: try again no sooner than it says. Anything else, a timeout or a
connection error: try again after the schedule's next delay, or park the copy once the
schedule is spent.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIVERED, RETRY, PARK, DISABLE = "delivered", "retry", "park", "disable"
STATE = {DELIVERED: "delivered", RETRY: "failing", PARK: "parked", DISABLE: "disabled"}
"""The copy's state in the ledger after each verdict."""


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str
    delay: float = 0.0  # seconds before the next attempt, for RETRY

    @property
    def state(self) -> str:
        return STATE[self.kind]


def decide(
    status: int | None, retry_after: float | None, attempts: int, schedule: tuple[float, ...]
) -> Verdict:
    """The verdict on the `attempts`-th attempt (from 1), which answered `status` (None: no
    answer) with `retry_after` seconds (None: no usable header)."""
    if status is not None and 200 <= status < 300:
        return Verdict(DELIVERED)
    if status == 410:
        return Verdict(DISABLE)
    if attempts > len(schedule):
        return Verdict(PARK)
    if status in (429, 503) and retry_after is not None:
        return Verdict(RETRY, retry_after)
    return Verdict(RETRY, schedule[attempts - 1])
