"""Message ids: BSON ObjectIds, fresh for incoming messages and derived for fan-out copies."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

from bson import ObjectId


def new_message_id() -> str:
    return str(ObjectId())


def is_object_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value)


def child_message_id(parent_id: str, subscriber: str) -> str:
    """The id of the copy of `parent_id` for `subscriber`, the same every time it is computed.

    A message redelivered to the router after a crash therefore yields the same child ids, so a
    subscriber can drop duplicates by `message_id`. The parent's 4 timestamp bytes keep the id a
    valid ObjectId that sorts by receipt time; 8 bytes of a hash make it unique per subscriber.
    """
    digest = hashlib.blake2b(f"{parent_id}:{subscriber}".encode(), digest_size=8).hexdigest()
    return parent_id[:8] + digest


def day_of(message_id: str) -> date:
    """The UTC day of an ObjectId's timestamp: the ledger partition its rows live in."""
    return datetime.fromtimestamp(int(message_id[:8], 16), UTC).date()
