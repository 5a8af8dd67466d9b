"""Idempotent pushes: an `Idempotency-Key` a store used within INTEGRATOR_IDEMPOTENCY_HOURS
answers its first push's 202 again and publishes nothing.

A key is claimed in PostgreSQL before its push is published and given the answer once the
broker has confirmed it; a push without the header never comes here. A claim whose push never
finished (its gateway died) is taken over after IN_FLIGHT_GRACE beyond the publish timeout; one
whose publish went unconfirmed (a 503) at once. Either may have reached the queue, so a retry
with the same body takes over its message id: what got through and what the retry sends are
copies of one message, which subscribers tell apart by id.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import orjson
from aiohttp import web

from integrator.db import DatabaseUnavailable, connection
from integrator.errors import field_error
from services.gateway.keys import DATABASE, SETTINGS
from services.gateway.messages import ledger_unavailable
from services.gateway.problems import Problem

log = logging.getLogger("integrator.gateway")

HEADER = "Idempotency-Key"
KEY = re.compile(r"[\x20-\x7e]{1,255}")
IN_FLIGHT_GRACE = 5.0

CLAIM = """
INSERT INTO idempotency_keys AS k (store_id, key, body_hash, message_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (store_id, key) DO UPDATE
    SET message_id = CASE WHEN k.answer IS NULL AND k.body_hash = excluded.body_hash
                          THEN k.message_id ELSE excluded.message_id END,
        body_hash = excluded.body_hash, answer = NULL, unconfirmed = false, created_at = now()
    WHERE k.created_at < now() - make_interval(hours => $5)
       OR (k.answer IS NULL AND (k.unconfirmed OR k.created_at < now() - make_interval(secs => $6)))
RETURNING message_id
"""
EARLIER = "SELECT body_hash, answer FROM idempotency_keys WHERE store_id = $1 AND key = $2"


def key_of(request: web.Request) -> str | None:
    """The request's key, or None; a 400 for a malformed or repeated header."""
    keys = request.headers.getall(HEADER, ())
    if not keys:
        return None
    if len(keys) > 1 or not KEY.fullmatch(keys[0]):
        rule = "must be given once, 1 to 255 printable ASCII characters"
        raise Problem(400, "invalid Idempotency-Key", [field_error(f"/headers/{HEADER}", "pattern", rule)])
    return keys[0]


async def claim(request: web.Request, store_id: str, key: str, doc: dict[str, Any], message_id: str) -> str:
    """Claim `key` for this push and say its message id: `message_id`, or that of an earlier
    push of the same body that was never confirmed. Or raise the answer an earlier push decides:
    the push still in flight is a 409, the same body replays its 202, another body is a 422."""
    settings = request.app[SETTINGS]
    body_hash = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).digest()
    in_flight = settings.publish_timeout + IN_FLIGHT_GRACE
    try:
        async with connection(request.app[DATABASE]) as conn:
            args = (store_id, key, body_hash, message_id, settings.idempotency_hours, in_flight)
            if (claimed := await conn.fetchval(CLAIM, *args)) is not None:
                return claimed
            earlier = await conn.fetchrow(EARLIER, store_id, key)
    except DatabaseUnavailable:
        raise ledger_unavailable(request) from None
    if earlier is None:  # expired and forgotten between the two statements: a new push after all
        return await claim(request, store_id, key, doc, message_id)
    if earlier["answer"] is None:
        retry_after = str(max(1, int(in_flight)))
        raise Problem(409, "a push with this Idempotency-Key is in flight; retry later",
                      headers={"Retry-After": retry_after})  # fmt: skip
    if earlier["body_hash"] != body_hash:
        raise Problem(422, "this Idempotency-Key was used for another message", [field_error(
            f"/headers/{HEADER}", "unique", "was used for another message by this store")])  # fmt: skip
    raise Replayed(earlier["answer"])


class Replayed(Problem):
    """The answer to the first push with this key, given again."""

    def __init__(self, answer: bytes) -> None:
        super().__init__(202, "replayed")
        self.answer = answer

    def response(self) -> web.Response:
        return web.Response(
            status=202, body=self.answer, content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )  # fmt: skip


async def settle(request: web.Request, store_id: str, key: str, answer: bytes | None) -> None:
    """Record the push's answer, or (None) that it went unconfirmed: a retry may take it over."""
    where = "WHERE store_id = $1 AND key = $2"
    sql = (
        f"UPDATE idempotency_keys SET answer = $3 {where}"
        if answer is not None
        else f"UPDATE idempotency_keys SET unconfirmed = true {where} AND answer IS NULL"
    )
    try:
        async with connection(request.app[DATABASE]) as conn:
            await conn.execute(sql, store_id, key, *(() if answer is None else (answer,)))
    except DatabaseUnavailable as exc:
        # the push stands; the key answers 409 until IN_FLIGHT_GRACE has passed, then is free
        log.warning("idempotency key not settled", extra={"store_id": store_id, "error": str(exc)})
