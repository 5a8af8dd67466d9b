"""Payload filters: rules on dotted paths into the payload, compiled once when subscriptions load.

A path is dotted segments; `*` stands for every element of an array or member of an object, and
a rule on a wildcard path holds when it holds for any value found there. Numbers compare with
numeric strings as numbers (`"12.50"` is 12.5). Regular expressions run on RE2, whose time is
linear in the input, so no pattern can hang the router.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from integrator.safe_regex import PatternError, compile_search

WILDCARD = "*"
NUMERIC = ("gt", "gte", "lt", "lte")
TEXT = ("begin", "end")
OPERATORS = ("eq", "neq", *NUMERIC, *TEXT, "contains", "in", "present", "empty", "match")
MAX_PATH_DEPTH = 32

Path = tuple[str, ...]
Test = Callable[[Any], bool]


class RuleError(ValueError):
    """A rule that cannot be compiled; `key` is the rule's key at fault, if one is."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def parse_path(text: Any) -> Path:
    """`order.line_items.*.sku` as its segments; RuleError if it is not such a path."""
    if not isinstance(text, str) or not text:
        raise RuleError("must be a dotted path into the payload, like order.number")
    segments = tuple(text.split("."))
    if any(not s for s in segments) or len(segments) > MAX_PATH_DEPTH:
        raise RuleError(f"{text!r} is not a dotted path (empty segment, or deeper than {MAX_PATH_DEPTH})")
    return segments


MISSING = object()


def _child(value: Any, segment: str) -> Any:
    """The member or element `segment` names in `value`, or MISSING."""
    if isinstance(value, dict):
        return value.get(segment, MISSING)
    if isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
        return value[int(segment)]
    return MISSING


def value_at(doc: Any, path: Path) -> Any:
    """The value at a path without wildcards, or MISSING."""
    for segment in path:
        doc = _child(doc, segment)
        if doc is MISSING:
            return MISSING
    return doc


def values_at(doc: Any, path: Path) -> list[Any]:
    """Every value at `path` in `doc`: none if it leads nowhere, several through a wildcard."""
    found = [doc]
    for segment in path:
        step: list[Any] = []
        for value in found:
            if segment != WILDCARD:
                if (child := _child(value, segment)) is not MISSING:
                    step.append(child)
            elif isinstance(value, dict):
                step.extend(value.values())
            elif isinstance(value, list):
                step.extend(value)
        if not step:
            return step
        found = step
    return found


def _number(value: Any) -> float | None:
    """A JSON number, or a string that spells one, as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _equal_to(expected: Any) -> Test:
    number = None if isinstance(expected, str) else _number(expected)
    if number is not None:
        return lambda value: _number(value) == number
    return lambda value: value == expected and isinstance(value, bool) == isinstance(expected, bool)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled filter: `holds(payload)` answers it; `text` names it in explanations."""

    text: str
    holds: Callable[[Any], bool]


def compile_rule(spec: Any) -> Rule:
    """A rule from its `{path, operator, value}` mapping; RuleError naming the key at fault."""
    if not isinstance(spec, dict):
        raise RuleError("must be a mapping with path, operator and (for most operators) value")
    unknown = set(spec) - {"path", "operator", "value"}
    if unknown:
        raise RuleError(f"unknown keys {sorted(unknown)} (expected path, operator, value)")
    try:
        path = parse_path(spec.get("path"))
    except RuleError as exc:
        raise RuleError(str(exc), "path") from None
    operator = spec.get("operator")
    if operator not in OPERATORS:
        raise RuleError(f"{operator!r} is not one of {', '.join(OPERATORS)}", "operator")
    has_value, value = "value" in spec, spec.get("value")
    if operator in ("present", "empty"):
        if has_value:
            raise RuleError(f"{operator} takes no value", "value")
        text = f"{spec['path']} {operator}"
    else:
        if not has_value:
            raise RuleError(f"{operator} needs a value", "value")
        text = f"{spec['path']} {operator} {_shown(value)}"
    if operator == "empty":
        return Rule(text, lambda doc: not (found := values_at(doc, path)) or any(map(_is_empty, found)))
    test = _value_test(operator, value)
    if operator == "neq":  # the negation of eq, so a path that leads nowhere is not equal
        return Rule(text, lambda doc: not any(map(test, values_at(doc, path))))
    if WILDCARD not in path:  # the common case: at most one value, found without the walk
        return Rule(text, lambda doc: (found := value_at(doc, path)) is not MISSING and test(found))
    return Rule(text, lambda doc: any(map(test, values_at(doc, path))))


def _value_test(operator: str, value: Any) -> Test:
    """The test one value at the path must pass; RuleError if `value` does not suit `operator`."""
    if operator == "present":
        return lambda found: not _is_empty(found)
    if operator in ("eq", "neq"):
        if not _scalar(value):
            raise RuleError(f"{operator} compares with a string, number, boolean or null", "value")
        return _equal_to(value)
    if operator in NUMERIC:
        number = _number(value)
        if number is None:
            raise RuleError(f"{operator} compares with a number, got {_shown(value)}", "value")
        compare = {"gt": float.__gt__, "gte": float.__ge__, "lt": float.__lt__, "lte": float.__le__}[operator]
        return lambda found: (n := _number(found)) is not None and compare(n, number)
    if operator in TEXT or operator == "match":
        if not isinstance(value, str):
            raise RuleError(f"{operator} takes a string, got {_shown(value)}", "value")
        if operator == "begin":
            return lambda found: isinstance(found, str) and found.startswith(value)
        if operator == "end":
            return lambda found: isinstance(found, str) and found.endswith(value)
        try:
            search = compile_search(value)
        except PatternError as exc:
            raise RuleError(f"not a regular expression RE2 accepts: {exc}", "value") from None
        return lambda found: isinstance(found, str) and search(found)
    if operator == "contains":
        if not _scalar(value):
            raise RuleError("contains looks for a string, number, boolean or null", "value")
        element = _equal_to(value)
        return lambda found: (
            (isinstance(found, str) and isinstance(value, str) and value in found)
            or (isinstance(found, list) and any(map(element, found)))
        )
    # in
    if not isinstance(value, list) or not value or not all(map(_scalar, value)):
        raise RuleError("in takes a non-empty list of strings, numbers, booleans or nulls", "value")
    return _member_of(value)


def _member_of(values: list[Any]) -> Test:
    """Membership by hashing: strings exactly, numbers (and numeric strings) by value."""
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(n for v in values if not isinstance(v, str) and (n := _number(v)) is not None)
    singletons = tuple(v for v in values if v is None or isinstance(v, bool))

    def test(found: Any) -> bool:
        if isinstance(found, str) and found in strings:
            return True
        if numbers and (n := _number(found)) is not None and n in numbers:
            return True
        return any(found is v for v in singletons)

    return test


def _shown(value: Any) -> str:
    return orjson.dumps(value).decode()
