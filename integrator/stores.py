"""Store access tokens: who may push for which store.

Tokens are random (32 bytes), shown once when created, and kept only as SHA-256 hashes in the
stores file, so the file leaks nothing usable. A store may hold several tokens at once, which is
how a token is rotated without downtime: create the new one, switch senders, revoke the old one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from integrator.ids import is_object_id

log = logging.getLogger("integrator.stores")


class StoresFileError(Exception):
    """The stores file cannot be read or is malformed."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoreTokens:
    by_hash: dict[str, str]  # sha256 of a token -> its store

    def store_for(self, token: str) -> str | None:
        """The store a token belongs to. The secret is hashed before any lookup, so timing says
        nothing about it."""
        return self.by_hash.get(_hash(token))


def read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"stores": {}}
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StoresFileError(f"{path}: {exc}") from None
    if not isinstance(document.get("stores", {}), dict):
        raise StoresFileError(f"{path}: expected a mapping under 'stores'")
    document.setdefault("stores", {})
    return document


def load(path: Path) -> StoreTokens:
    stores = read(path)["stores"]
    return StoreTokens(
        {t["sha256"]: store for store, entry in stores.items() for t in entry.get("tokens", [])}
    )


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=True))
    os.chmod(temporary, 0o600)
    temporary.replace(path)  # atomic: a gateway reloading never sees half a file


def create(path: Path, store_id: str) -> tuple[str, str]:
    """A new token for `store_id`: (its public id, the secret, shown this once)."""
    if not is_object_id(store_id):
        raise StoresFileError(f"{store_id!r} is not a store id (24 hexadecimal characters)")
    document = read(path)
    secret = secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(4)
    entry = document["stores"].setdefault(store_id, {"tokens": []})
    entry["tokens"].append(
        {
            "id": token_id,
            "sha256": _hash(secret),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    _write(path, document)
    return token_id, secret


def listing(path: Path) -> list[dict[str, str]]:
    """Every token's store, id and creation time; never a secret or a hash."""
    return [
        {"store_id": store, "token_id": t["id"], "created_at": t["created_at"]}
        for store, entry in read(path)["stores"].items()
        for t in entry.get("tokens", [])
    ]


def revoke(path: Path, store_id: str, token_id: str) -> bool:
    document = read(path)
    tokens = document["stores"].get(store_id, {}).get("tokens", [])
    kept = [t for t in tokens if t["id"] != token_id]
    if len(kept) == len(tokens):
        return False
    document["stores"][store_id]["tokens"] = kept
    _write(path, document)
    return True


class ReloadingTokens:
    """The stores file as the gateway sees it: read again when it changes, checked once a second."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime: float | None = None
        self._checked = 0.0
        self._tokens = StoreTokens({})
        self.refresh()

    def refresh(self) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            try:
                self._tokens = load(self._path)
            except StoresFileError as exc:
                if self._mtime is None and not self._tokens.by_hash:
                    raise  # at start-up: refuse to run on a broken file
                log.error(
                    "stores file unreadable; keeping the tokens loaded before", extra={"error": str(exc)}
                )
            self._mtime = mtime

    def store_for(self, token: str) -> str | None:
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            self.refresh()
        return self._tokens.store_for(token)
