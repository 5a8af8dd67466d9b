"""Subscribers that are web endpoints: their `endpoint` settings, checked at load, the addresses
they may not reach, and the Standard Webhooks signature of every request sent to them.

    endpoint:
      url: https://erp.example.com/hub
      secret: whsec_...            # or a list of them during a rotation; or secret_env: ERP_SECRET
      timeout_seconds: 15
      max_in_flight: 8
      rate: 50                     # requests per second, optional

A secret is `whsec_` and the base64 of 24 to 64 random bytes, as Standard Webhooks has it.
Secrets never appear in a repr, a log line, a metric or an answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

KEYS = ("url", "secret", "secret_env", "timeout_seconds", "max_in_flight", "rate")
SECRET_PREFIX = "whsec_"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata.google.internal", "metadata")


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    secrets: tuple[bytes, ...] = field(repr=False)  # every one signs each request, newest first
    timeout_seconds: float = 15.0
    max_in_flight: int = 8
    rate: float | None = None  # requests per second; None: as fast as answers come
    secret_env: str | None = None  # the variable the secrets come from, where the file names one

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def signature(self, message_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
        for each secret, space-separated."""
        signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
        return " ".join(
            "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            for key in self.secrets
        )


def parse_endpoint(
    spec: Any, problems: list[str], environ: Mapping[str, str] = os.environ
) -> Endpoint | None:
    """The endpoint `spec` describes, or None with what is wrong added to `problems`."""
    if not isinstance(spec, dict):
        problems.append("endpoint: expected a mapping with 'url' and 'secret' or 'secret_env'")
        return None
    unknown = unknown_keys(spec, KEYS, problems, "endpoint: ")
    found: list[str] = []
    url = spec.get("url")
    if not isinstance(url, str) or (refusal := url_problem(url)) is not None:
        found.append(f"url: {refusal if isinstance(url, str) else 'must be an http or https URL'}")
    secrets = _secrets(spec, environ, found)
    timeout = spec.get("timeout_seconds", 15)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        found.append(f"timeout_seconds: {timeout!r} is not a number of seconds above 0 and at most 300")
    in_flight = spec.get("max_in_flight", 8)
    if isinstance(in_flight, bool) or not isinstance(in_flight, int) or not 1 <= in_flight <= 1000:
        found.append(f"max_in_flight: {in_flight!r} is not a whole number from 1 to 1000")
    rate = spec.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
        found.append(f"rate: {rate!r} is not a positive number of requests per second")
    problems.extend(f"endpoint.{problem}" for problem in found)
    if found or unknown:
        return None
    rate = None if rate is None else float(rate)
    return Endpoint(url, secrets, float(timeout), in_flight, rate, spec.get("secret_env"))


def unknown_keys(spec: dict[str, Any], keys: tuple[str, ...], problems: list[str], where: str = "") -> bool:
    """Whether `spec` has keys not in `keys`; if so, they are added to `problems`."""
    unknown = [key for key in spec if key not in keys]
    if unknown:
        problems.append(f"{where}unknown keys {unknown} (expected {', '.join(keys)})")
    return bool(unknown)


def _secrets(spec: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> tuple[bytes, ...]:
    if ("secret" in spec) == ("secret_env" in spec):
        problems.append("give either 'secret' or 'secret_env'")
        return ()
    if "secret_env" in spec:
        name = spec["secret_env"]
        if not isinstance(name, str):
            problems.append(f"secret_env: {name!r} is not the name of an environment variable")
            return ()
        if name not in environ:  # only the deliverer signs, and needs it (secret_problems)
            return ()
        texts: Any = environ[name].split()  # several, space-separated, during a rotation
        where = f"secret_env ({name})"
    else:
        texts = spec["secret"] if isinstance(spec["secret"], list) else [spec["secret"]]
        where = "secret"
    keys = []
    for text in texts:
        key = _key(text)
        if key is None:
            problems.append(f"{where}: each secret is whsec_ and the base64 of 24 to 64 bytes")
            return ()
        keys.append(key)
    if not keys:
        problems.append(f"{where}: no secret")
    return tuple(keys)


def _key(text: Any) -> bytes | None:
    if not isinstance(text, str) or not text.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        return None
    return key if 24 <= len(key) <= 64 else None


def url_problem(url: str) -> str | None:
    """What makes `url` no endpoint at all; None for an http or https URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} must be an http or https URL with a host"
    if parts.username or parts.password:
        return f"{url!r} must not carry credentials; use the secret"
    return None


def address_refusal(address: str) -> str | None:
    """Why the hub will not send to this IP address (loopback, private, link-local, metadata and
    every other address that is not global); None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    kind = "loopback" if ip.is_loopback else "link-local" if ip.is_link_local else "private"
    return f"{address} is a {kind} address"


def host_refusal(host: str) -> str | None:
    """Why the hub will not send to `host` as written (an address or a local name); names
    that resolve to such addresses are refused when they are resolved, at request time."""
    if host.lower().rstrip(".") in LOCAL_NAMES:
        return f"{host} is a local name"
    try:
        return address_refusal(host.strip("[]"))
    except ValueError:
        return None  # a name: judged by what it resolves to


class HasEndpoint(Protocol):
    name: str
    endpoint: Endpoint | None


def secret_problems(subscribers: Iterable[HasEndpoint]) -> list[str]:
    """Every endpoint whose `secret_env` names a variable this process does not have: only the
    deliverer signs, so only it (and `integrator subscriptions check`) asks."""
    return [
        f"subscriber {s.name!r}: endpoint.secret_env: no environment variable {s.endpoint.secret_env!r}"
        for s in subscribers
        if s.endpoint is not None and not s.endpoint.secrets
    ]


def address_problems(subscribers: Iterable[HasEndpoint]) -> list[str]:
    """Every endpoint whose URL names an address the hub may not send to."""
    return [
        f"subscriber {s.name!r}: endpoint.url: {refusal} (INTEGRATOR_ALLOW_PRIVATE_ENDPOINTS=true allows it)"
        for s in subscribers
        if s.endpoint is not None and (refusal := host_refusal(s.endpoint.host)) is not None
    ]
