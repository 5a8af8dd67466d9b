"""Who is asking: the store a request's token belongs to."""

from __future__ import annotations

from aiohttp import web

from services.gateway.keys import SETTINGS, TOKENS
from services.gateway.problems import Problem

CREDENTIAL_HEADERS = ("Authorization", "X-Hub-Access-Token", "X-Hub-Store")


def authenticate(request: web.Request) -> str | None:
    """The store whose token the request carries (None with authentication off), or a 401.

    The token comes in `X-Hub-Access-Token` or `Authorization: Bearer`; an `X-Hub-Store` header,
    if present, must name the token's store. The answer never says which part was wrong.
    """
    if TOKENS not in request.app:
        return None
    # closing spares reading an unwanted body: anonymous 1 MB dry runs no longer cost their size
    denied = Problem(
        401, "missing or invalid credentials", headers={"WWW-Authenticate": "Bearer"}, close=True
    )
    if any(len(request.headers.getall(name, ())) > 1 for name in CREDENTIAL_HEADERS):
        raise denied  # which of two would count is a guess a proxy and the gateway may make apart
    token = request.headers.get("X-Hub-Access-Token")
    authorization = request.headers.get("Authorization", "")
    if token is None and authorization[:7].lower() == "bearer ":  # the scheme is case-insensitive
        token = authorization[7:].strip()
    tokens = request.app[TOKENS]
    if not tokens.loaded:
        retry_after = {"Retry-After": str(request.app[SETTINGS].retry_after_seconds)}
        raise Problem(
            503, "store tokens not read yet: PostgreSQL unavailable; retry later", headers=retry_after
        )
    store = tokens.store_for(token) if token else None
    claimed = request.headers.get("X-Hub-Store")
    if store is None or (claimed is not None and claimed != store):
        raise denied
    return store
