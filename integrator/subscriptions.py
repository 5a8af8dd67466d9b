"""Who receives what: subscribers, their message-type patterns, stores, payload filters and
identifiers, and why each subscriber did or did not take a given message.

Patterns follow AMQP topic semantics on colon-separated segments: `*` is exactly one segment,
`#` zero or more, so `order:*` matches `order:new` but not `order:payment:captured`, and `#`
alone matches everything. Filters are integrator.filters rules; identifiers name the paths
whose values make a message the same logical message for its subscriber, which the router
then copies to it once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Any

import orjson
import yaml

from integrator.endpoints import Endpoint, address_problems, parse_endpoint, secret_problems, unknown_keys
from integrator.filters import MISSING, WILDCARD, Path, Rule, RuleError, compile_rule, parse_path, value_at
from integrator.ids import is_object_id

SUBSCRIBER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PATTERN_SEGMENT = re.compile(r"[a-z0-9_]+|\*|#")
MAX_PATTERN_SEGMENTS = 16


DELIVERED, TYPE, STORE, FILTER, IDENTIFIER = "delivered", "type", "store", "filter", "identifier"
KEYS = ("messages", "stores", "filters", "match", "identifiers", "identifier_days", "endpoint")
DEFAULT_IDENTIFIER_DAYS = 30
SHOWN_MAX = 300  # characters of an identity shown in a routing explanation

Outcome = list[Any]
"""One subscriber's part in routing a message: [subscriber, outcome, detail?, copy_id?]."""


class SubscriptionsError(Exception):
    """The subscriptions file is missing or malformed; every problem is named with its place."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes a message the same logical message for a subscriber."""

    digest: bytes | None  # None: an identifier has no value in this payload
    shown: str  # the values, or which one is missing, for the routing explanation


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    patterns: tuple[tuple[str, ...], ...]  # each pattern split into its segments
    stores: frozenset[str] | None = None  # None: every store
    filters: tuple[Rule, ...] = ()
    match_any: bool = False
    identifiers: tuple[tuple[str, Path], ...] = ()
    identifier_days: int = DEFAULT_IDENTIFIER_DAYS
    endpoint: Endpoint | None = None  # None: the subscriber consumes its queue itself

    def wants_store(self, store_id: str) -> bool:
        return self.stores is None or store_id in self.stores

    def refusal(self, payload: Any) -> str | None:
        """The filter that keeps `payload` from this subscriber; None if it passes."""
        if not self.filters:
            return None
        if self.match_any:
            if any(rule.holds(payload) for rule in self.filters):
                return None
            return "none of: " + "; ".join(rule.text for rule in self.filters)
        return next((rule.text for rule in self.filters if not rule.holds(payload)), None)

    def identity(self, payload: Any) -> Identity:
        values = []
        for name, path in self.identifiers:
            value = value_at(payload, path)
            if value is MISSING or value is None:
                missing = f"no value for identifier {name} at {'.'.join(path)}; delivered unchecked"
                return Identity(None, missing)
            values.append(value)
        encoded = orjson.dumps(values)
        shown = ", ".join(
            f"{name}={orjson.dumps(value).decode()}"
            for (name, _), value in zip(self.identifiers, values, strict=True)
        )
        return Identity(hashlib.sha256(encoded).digest(), shown[:SHOWN_MAX])


class Subscriptions:
    def __init__(self, subscribers: list[Subscriber]) -> None:
        self.subscribers = tuple(subscribers)
        self._by_type = lru_cache(maxsize=4096)(self._match_type)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subscribers)

    def route(
        self, message_type: str, store_id: str, payload: Any
    ) -> tuple[list[Outcome], list[tuple[Subscriber, Outcome]]]:
        """Every subscriber's outcome in file order, and the subscribers that take the message with
        their outcomes (`delivered` until the router has checked identifiers and named the copy)."""
        outcomes: list[Outcome] = []
        takers: list[tuple[Subscriber, Outcome]] = []
        for subscriber, wants_type in self._by_type(message_type):
            if not wants_type:
                outcomes.append([subscriber.name, TYPE])
            elif not subscriber.wants_store(store_id):
                outcomes.append([subscriber.name, STORE])
            elif (refusal := subscriber.refusal(payload)) is not None:
                outcomes.append([subscriber.name, FILTER, refusal])
            else:
                outcome = [subscriber.name, DELIVERED]
                outcomes.append(outcome)
                takers.append((subscriber, outcome))
        return outcomes, takers

    def _match_type(self, message_type: str) -> tuple[tuple[Subscriber, bool], ...]:
        segments = tuple(message_type.split(":"))
        return tuple((s, any(topic_matches(p, segments) for p in s.patterns)) for s in self.subscribers)

    @classmethod
    def load(
        cls, path: FilePath, *, allow_private_endpoints: bool = True, signing: bool = False
    ) -> Subscriptions:
        """The file's subscriptions; SubscriptionsError naming the file and every problem in it.

        Unless `allow_private_endpoints`, an endpoint at an address the hub may not send to is
        one; with `signing`, an endpoint whose `secret_env` variable is missing here is one (what
        the deliverer and `integrator subscriptions check` ask)."""
        try:
            document = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise SubscriptionsError([f"{path}: cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise SubscriptionsError([f"{path}: not valid YAML: {exc}"]) from None
        try:
            subscriptions = cls.parse(document)
            problems = secret_problems(subscriptions.subscribers) if signing else []
            if not allow_private_endpoints:
                problems += address_problems(subscriptions.subscribers)
            if problems:
                raise SubscriptionsError(problems)
        except SubscriptionsError as exc:
            raise SubscriptionsError([f"{path}: {problem}" for problem in exc.problems]) from None
        return subscriptions

    @classmethod
    def parse(cls, document: Any) -> Subscriptions:
        if not isinstance(document, dict) or not isinstance(document.get("subscribers"), dict):
            raise SubscriptionsError(["expected a mapping under 'subscribers'"])
        problems: list[str] = []
        subscribers = []
        for name, spec in document["subscribers"].items():
            found: list[str] = []
            subscriber = _subscriber(name, spec, found)
            problems.extend(f"subscriber {name!r}: {problem}" for problem in found)
            if subscriber is not None:
                subscribers.append(subscriber)
        if problems:
            raise SubscriptionsError(problems)
        return cls(subscribers)


def _subscriber(name: Any, spec: Any, problems: list[str]) -> Subscriber | None:
    """The subscriber `spec` describes, or None with what is wrong added to `problems`."""
    if not isinstance(name, str) or not SUBSCRIBER_NAME.fullmatch(name):
        problems.append("names are lower-case letters, digits, '-' and '_' (at most 64)")
    if not isinstance(spec, dict):
        problems.append("expected a mapping with 'messages'")
        return None
    unknown_keys(spec, KEYS, problems)
    messages = spec.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("'messages' must be a non-empty list of patterns")
        messages = []
    for i, pattern in enumerate(messages):
        if not is_pattern(pattern):
            problems.append(f"messages[{i}]: bad message pattern {pattern!r}")
    stores = spec.get("stores")
    if stores is not None and (not isinstance(stores, list) or not all(is_object_id(s) for s in stores)):
        problems.append("'stores' must be a list of 24-hex store ids")
    filters = _filters(spec.get("filters", []), problems)
    match = spec.get("match", "all")
    if match not in ("all", "any"):
        problems.append(f"match: {match!r} is neither all nor any")
    identifiers = _identifiers(spec.get("identifiers", {}), problems)
    days = spec.get("identifier_days", DEFAULT_IDENTIFIER_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        problems.append(f"identifier_days: {days!r} is not a whole number of days from 1 to 3650")
    endpoint = parse_endpoint(spec["endpoint"], problems) if "endpoint" in spec else None
    if problems:
        return None
    patterns = tuple(tuple(p.split(":")) for p in messages)
    frozen_stores = None if stores is None else frozenset(stores)
    return Subscriber(name, patterns, frozen_stores, filters, match == "any", identifiers, days, endpoint)


def _filters(specs: Any, problems: list[str]) -> tuple[Rule, ...]:
    if not isinstance(specs, list):
        problems.append("filters: must be a list of {path, operator, value} rules")
        return ()
    rules = []
    for i, spec in enumerate(specs):
        try:
            rules.append(compile_rule(spec))
        except RuleError as exc:
            problems.append(f"filters[{i}]{'.' + exc.key if exc.key else ''}: {exc}")
    return tuple(rules)


def _identifiers(spec: Any, problems: list[str]) -> tuple[tuple[str, Path], ...]:
    if not isinstance(spec, dict):
        problems.append("identifiers: must map each name to a dotted path, like {number: shipment.number}")
        return ()
    identifiers = []
    for name, text in spec.items():
        try:
            path = parse_path(text)
        except RuleError as exc:
            problems.append(f"identifiers.{name}: {exc}")
            continue
        if WILDCARD in path:
            problems.append(f"identifiers.{name}: {text!r} has a wildcard; an identifier is one value")
            continue
        identifiers.append((str(name), path))
    return tuple(identifiers)


def is_pattern(pattern: object) -> bool:
    """A message-type pattern: colon-separated segments, each a word, `*` or `#`, at most
    MAX_PATTERN_SEGMENTS of them (matching a run of `#` against a type backtracks)."""
    if not isinstance(pattern, str) or pattern.count(":") >= MAX_PATTERN_SEGMENTS:
        return False
    return all(PATTERN_SEGMENT.fullmatch(s) for s in pattern.split(":"))


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
