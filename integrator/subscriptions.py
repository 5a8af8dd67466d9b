"""Who receives what: subscribers, their message-type patterns and optional store filters.

Patterns follow AMQP topic semantics on colon-separated segments: `*` is exactly one segment,
`#` zero or more, so `order:*` matches `order:new` but not `order:payment:captured`, and `#`
alone matches everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from integrator.ids import is_object_id

SUBSCRIBER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PATTERN_SEGMENT = re.compile(r"[a-z0-9_]+|\*|#")


class SubscriptionsError(Exception):
    """The subscriptions file is missing or malformed; the router refuses to start with it."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    patterns: tuple[tuple[str, ...], ...]  # each pattern split into its segments
    stores: frozenset[str] | None  # None: every store

    def wants_store(self, store_id: str) -> bool:
        return self.stores is None or store_id in self.stores


class Subscriptions:
    def __init__(self, subscribers: list[Subscriber]) -> None:
        self.subscribers = tuple(subscribers)
        self._by_type = lru_cache(maxsize=4096)(self._match_type)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subscribers)

    def match(self, message_type: str, store_id: str) -> list[str]:
        """Names of the subscribers that receive this message, in file order."""
        return [s.name for s in self._by_type(message_type) if s.wants_store(store_id)]

    def _match_type(self, message_type: str) -> tuple[Subscriber, ...]:
        segments = tuple(message_type.split(":"))
        return tuple(s for s in self.subscribers if any(topic_matches(p, segments) for p in s.patterns))

    @classmethod
    def load(cls, path: Path) -> Subscriptions:
        try:
            document = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SubscriptionsError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SubscriptionsError(f"{path}: not valid YAML: {exc}") from None
        try:
            return cls.parse(document)
        except SubscriptionsError as exc:
            raise SubscriptionsError(f"{path}: {exc}") from None

    @classmethod
    def parse(cls, document: Any) -> Subscriptions:
        if not isinstance(document, dict) or not isinstance(document.get("subscribers"), dict):
            raise SubscriptionsError("expected a mapping under 'subscribers'")
        return cls([_subscriber(name, spec) for name, spec in document["subscribers"].items()])


def _subscriber(name: Any, spec: Any) -> Subscriber:
    if not isinstance(name, str) or not SUBSCRIBER_NAME.fullmatch(name):
        raise SubscriptionsError(
            f"subscriber {name!r}: names are lower-case letters, digits, '-' and '_' (at most 64)"
        )
    if not isinstance(spec, dict) or not isinstance(spec.get("messages"), list) or not spec["messages"]:
        raise SubscriptionsError(f"subscriber {name!r}: 'messages' must be a non-empty list of patterns")
    for pattern in spec["messages"]:
        if not is_pattern(pattern):
            raise SubscriptionsError(f"subscriber {name!r}: bad message pattern {pattern!r}")
    stores = spec.get("stores")
    if stores is not None and (not isinstance(stores, list) or not all(is_object_id(s) for s in stores)):
        raise SubscriptionsError(f"subscriber {name!r}: 'stores' must be a list of 24-hex store ids")
    unknown = set(spec) - {"messages", "stores"}
    if unknown:
        raise SubscriptionsError(f"subscriber {name!r}: unknown keys {sorted(unknown)}")
    patterns = tuple(tuple(p.split(":")) for p in spec["messages"])
    return Subscriber(name, patterns, None if stores is None else frozenset(stores))


def is_pattern(pattern: object) -> bool:
    """A message-type pattern: colon-separated segments, each a word, `*` or `#`."""
    return isinstance(pattern, str) and all(PATTERN_SEGMENT.fullmatch(s) for s in pattern.split(":"))


def pattern_regex(pattern: str) -> str:
    """The pattern as a regular expression over `":" || message`, for PostgreSQL's `~`."""
    parts = {"*": ":[a-z0-9_]+", "#": "(?::[a-z0-9_]+)*"}
    return "^" + "".join(parts.get(s, ":" + s) for s in pattern.split(":")) + "$"


def topic_matches(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    """AMQP topic matching on segments: `*` takes exactly one, `#` zero or more."""
    if not pattern:
        return not segments
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, segments[i:]) for i in range(len(segments) + 1))
    return bool(segments) and head in ("*", segments[0]) and topic_matches(rest, segments[1:])
