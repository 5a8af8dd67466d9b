"""The identities queues have received, in PostgreSQL, checked in one round trip per batch.

Claiming is one upsert: an identity nobody holds (or whose time is up) becomes the claiming
copy's; one already held keeps its copy, and the statement returns the holder either way. A
copy's id is derived from its parent and queue, so a message the router sees again (it
was redelivered after a crash) finds its own copy holding the identity and is copied again
rather than lost. Concurrent routers serialise on the primary key, so two of them cannot both
claim one identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from integrator.db import connection

CLAIM = """
INSERT INTO identities AS i (queue, identity, copy_id, expires_at)
SELECT queue, identity, copy_id, now() + make_interval(days => days)
FROM unnest($1::text[], $2::bytea[], $3::text[], $4::int[]) AS t (queue, identity, copy_id, days)
ON CONFLICT (queue, identity) DO UPDATE SET
    copy_id = CASE WHEN i.expires_at < now() THEN excluded.copy_id ELSE i.copy_id END,
    expires_at = CASE WHEN i.expires_at < now() THEN excluded.expires_at ELSE i.expires_at END
RETURNING queue, identity, copy_id
"""

Key = tuple[str, bytes]  # (subscriber's queue, identity): hubs sharing a database keep apart


@dataclass(frozen=True, slots=True)
class Claim:
    queue: str
    identity: bytes
    copy_id: str
    days: int


class Identities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def holders(self, claims: list[Claim]) -> dict[Key, str]:
        """The copy holding each claimed identity once the claims are made: the first claimant's
        where it was free. DatabaseUnavailable if PostgreSQL cannot be reached."""
        first: dict[Key, Claim] = {}
        for claim in claims:
            first.setdefault((claim.queue, claim.identity), claim)
        ordered = [first[key] for key in sorted(first)]  # one lock order for every router
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                CLAIM,
                [c.queue for c in ordered], [c.identity for c in ordered],
                [c.copy_id for c in ordered], [c.days for c in ordered],
            )  # fmt: skip
        return {(row["queue"], row["identity"]): row["copy_id"] for row in rows}
