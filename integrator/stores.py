"""Store access tokens: who may push for which store.

Tokens are random (32 bytes), shown once when created, and kept only as SHA-256 hashes in the
stores file, so the file leaks nothing usable. A store may hold several tokens at once, which is
how a token is rotated without downtime: create the new one, switch senders, revoke the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from integrator import files
from integrator.ids import is_object_id

log = logging.getLogger("integrator.stores")


class StoresFileError(Exception):
    """The stores file cannot be read or is malformed."""


def token_hash(token: str) -> str:
    """How a token is kept and looked up: its SHA-256, so a leaked table holds nothing usable."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoreTokens:
    by_hash: dict[str, str]  # sha256 of a token -> its store

    def store_for(self, token: str) -> str | None:
        """The store a token belongs to. The secret is hashed before any lookup, so timing says
        nothing about it."""
        return self.by_hash.get(token_hash(token))


def read(path: Path) -> dict[str, Any]:
    """The stores file, checked entry by entry: a malformed one raises StoresFileError naming
    the place, rather than failing every push that looks a token up."""
    if not path.exists():
        return {"stores": {}}
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StoresFileError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.setdefault("stores", {}), dict):
        raise StoresFileError(f"{path}: expected a mapping under 'stores'")
    for store, entry in document["stores"].items():
        if not is_object_id(store):
            raise StoresFileError(f"{path}: {str(store)[:40]!r} is not a store id")
        if not isinstance(entry, dict) or not isinstance(entry.setdefault("tokens", []), list):
            raise StoresFileError(f"{path}: store {store}: expected a mapping with a list of tokens")
        for i, token in enumerate(entry["tokens"]):
            if not isinstance(token, dict) or not all(isinstance(token.get(k), str) for k in TOKEN_FIELDS):
                raise StoresFileError(f"{path}: store {store}, token {i}: needs {', '.join(TOKEN_FIELDS)}")
    return document


TOKEN_FIELDS = ("id", "sha256", "created_at")


def load(path: Path) -> StoreTokens:
    stores = read(path)["stores"]
    return StoreTokens({t["sha256"]: store for store, entry in stores.items() for t in entry["tokens"]})


@contextlib.contextmanager
def _changing(path: Path) -> Iterator[dict[str, Any]]:
    """The stores file, to change and write back, with every other change waiting its turn: two
    `integrator tokens create` at once both land. Written to a temporary file that is 0600 from
    its creation, then renamed over the file, so a reloading gateway never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = read(path)
        yield document
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp creates it 0600
                file.write(yaml.safe_dump(document, sort_keys=True))
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


def create(path: Path, store_id: str) -> tuple[str, str]:
    """A new token for `store_id`: (its public id, the secret, shown this once)."""
    if not is_object_id(store_id):
        raise StoresFileError(f"{store_id!r} is not a store id (24 hexadecimal characters)")
    secret = secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(4)
    with _changing(path) as document:
        entry = document["stores"].setdefault(store_id, {"tokens": []})
        entry["tokens"].append(
            {
                "id": token_id,
                "sha256": token_hash(secret),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    return token_id, secret


def listing(path: Path) -> list[dict[str, str]]:
    """Every token's store, id and creation time; never a secret or a hash."""
    return [
        {"store_id": store, "token_id": t["id"], "created_at": t["created_at"]}
        for store, entry in read(path)["stores"].items()
        for t in entry["tokens"]
    ]


def revoke(path: Path, store_id: str, token_id: str) -> bool:
    with _changing(path) as document:
        tokens = document["stores"].get(store_id, {}).get("tokens", [])
        kept = [t for t in tokens if t["id"] != token_id]
        if kept != tokens:
            document["stores"][store_id]["tokens"] = kept
    return kept != tokens


class ReloadingTokens:
    """The stores file as the gateway sees it: read again when it changes, checked once a second."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._version: files.Version = None
        self._checked = 0.0
        self._tokens = StoreTokens({})
        self.refresh(starting=True)

    def refresh(self, starting: bool = False) -> None:
        """Read the file again if it is another file than last time."""
        version = files.version(self._path)
        if version != self._version:
            try:
                self._tokens = load(self._path)
                if not starting:
                    log.info("stores file reloaded")
            except StoresFileError as exc:
                if starting:
                    raise  # refuse to run on a broken file
                log.error(
                    "stores file unreadable; keeping the tokens loaded before", extra={"error": str(exc)}
                )
            self._version = version

    def store_for(self, token: str) -> str | None:
        return self.store_for_hash(token_hash(token))

    def store_for_hash(self, sha256: str) -> str | None:
        """The store of the token with this hash, while the token is not revoked."""
        now = time.monotonic()
        if now - self._checked > 1.0:
            self._checked = now
            self.refresh()
        return self._tokens.by_hash.get(sha256)
