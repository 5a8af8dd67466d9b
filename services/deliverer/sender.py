"""One attempt to deliver a copy: a signed POST, and what came of it.

Requests carry the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
`webhook-signature`); the body is the copy exactly as it is on the queue. Redirects are not
followed (a redirect could lead anywhere, a private address included): a 3xx is a failure.
Unless private endpoints are allowed, every address a name resolves to is checked at request
time, so a public name cannot lead to a private address either.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from integrator.endpoints import Endpoint, address_refusal
from integrator.envelope import now_ms

USER_AGENT = f"Integrator/{version('integrator')} (webhook delivery)"
HEAD_BYTES = 1024  # of each response, kept with the attempt
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True, slots=True)
class Attempt:
    at: int  # unix ms when the request started
    duration_ms: float
    status: int | None  # None: no answer
    error: str | None  # why there was no answer, or none worth delivering
    head: str  # the first KB of the response body
    retry_after: float | None  # seconds, from a Retry-After header

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> dict[str, Any]:
        """As the ledger records it and a parked copy carries it."""
        return {"at": self.at, "duration_ms": round(self.duration_ms, 1), "status": self.status,
                "error": self.error, "response": self.head}  # fmt: skip


class PublicResolver(AbstractResolver):
    """Resolves names only to public addresses: a name with no other is an error."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if address_refusal(r["host"]) is None]
        if not allowed:
            refusals = "; ".join(str(address_refusal(r["host"])) for r in results)
            raise OSError(f"{host} resolves to no public address ({refusals})")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


class Sender:
    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            limit=0,  # each endpoint keeps to its own max_in_flight
            resolver=None if self._allow_private else PublicResolver(),
        )
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def post(self, endpoint: Endpoint, message_id: str, body: bytes) -> Attempt:
        assert self._session is not None
        timestamp = int(time.time())
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": endpoint.signature(message_id, timestamp, body),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        at, started = now_ms(), time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout_seconds)
        try:
            async with self._session.post(
                endpoint.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                head = (await response.content.read(HEAD_BYTES)).decode(errors="replace")
                status, retry_after = response.status, _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            return _failed(at, started, f"no answer within {endpoint.timeout_seconds:g} s")
        except aiohttp.ClientConnectorError as exc:  # its own text drops the resolver's reason
            return _failed(at, started, f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
        except (aiohttp.ClientError, OSError) as exc:
            return _failed(at, started, f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return Attempt(at, elapsed, status, None, head, retry_after)


def _failed(at: int, started: float, error: str) -> Attempt:
    return Attempt(at, (time.perf_counter() - started) * 1000, None, error, "", None)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date), at most a day."""
    if value is None:
        return None
    try:
        seconds = (
            float(value)
            if value.strip().isdigit()
            else parsedate_to_datetime(value).timestamp() - time.time()
        )
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
