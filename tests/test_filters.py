"""Payload filters: every operator, wildcard paths, numbers in strings, and rules refused at load."""

from __future__ import annotations

from typing import Any

import pytest

from integrator.filters import RuleError, compile_rule, values_at

PAYLOAD: dict[str, Any] = {
    "order": {
        "number": "R123",
        "total": "120.50",
        "items": 3,
        "express": True,
        "note": "",
        "tags": ["gift", "vip"],
        "coupon": None,
        "line_items": [{"sku": "ROR-1", "quantity": 1}, {"sku": "SPREE-T", "quantity": 4}],
        "totals": {"tax": 5, "shipping": 10},
        "empty_list": [],
    }
}


def holds(path: str, operator: str, value: Any = ..., payload: Any = PAYLOAD) -> bool:
    spec: dict[str, Any] = {"path": path, "operator": operator}
    if value is not ...:
        spec["value"] = value
    return compile_rule(spec).holds(payload)


@pytest.mark.parametrize(
    ("path", "operator", "value", "expected"),
    [
        ("order.number", "eq", "R123", True),
        ("order.number", "eq", "R124", False),
        ("order.total", "eq", 120.5, True),  # a numeric string compares as a number
        ("order.total", "eq", "120.5", False),  # a string compares exactly
        ("order.items", "eq", 3, True),
        ("order.express", "eq", True, True),
        ("order.items", "eq", True, False),  # 3 is not true, and 1 would not be either
        ("order.coupon", "eq", None, True),
        ("order.number", "neq", "R124", True),
        ("order.number", "neq", "R123", False),
        ("order.missing", "neq", "x", True),  # neq is not eq, so nothing there is not equal
        ("order.total", "gt", 120, True),
        ("order.total", "gt", 120.5, False),
        ("order.total", "gte", 120.5, True),
        ("order.items", "lt", "3.5", True),
        ("order.items", "lte", 2, False),
        ("order.number", "gt", 1, False),  # not a number: no comparison holds
        ("order.missing", "lt", 1, False),
        ("order.number", "begin", "R1", True),
        ("order.number", "begin", "X", False),
        ("order.number", "end", "23", True),
        ("order.items", "end", "3", False),  # begin and end are for strings
        ("order.number", "contains", "12", True),
        ("order.tags", "contains", "vip", True),
        ("order.tags", "contains", "sale", False),
        ("order.number", "in", ["R1", "R123"], True),
        ("order.items", "in", [1, 3], True),
        ("order.total", "in", [120.5], True),
        ("order.number", "in", ["R1"], False),
        ("order.express", "in", [1, True], True),
        ("order.number", "present", ..., True),
        ("order.note", "present", ..., False),
        ("order.coupon", "present", ..., False),
        ("order.missing", "present", ..., False),
        ("order.note", "empty", ..., True),
        ("order.coupon", "empty", ..., True),
        ("order.empty_list", "empty", ..., True),
        ("order.missing", "empty", ..., True),
        ("order.tags", "empty", ..., False),
        ("order.number", "match", "^R[0-9]+$", True),
        ("order.number", "match", "^X", False),
        ("order.items", "match", "3", False),  # match is for strings
    ],
)
def test_each_operator(path: str, operator: str, value: Any, expected: bool) -> None:
    assert holds(path, operator, value) is expected


@pytest.mark.parametrize(
    ("path", "operator", "value", "expected"),
    [
        ("order.line_items.*.sku", "eq", "SPREE-T", True),  # any element matching is enough
        ("order.line_items.*.sku", "eq", "NONE", False),
        ("order.line_items.*.quantity", "gt", 3, True),
        ("order.line_items.1.sku", "begin", "SPREE", True),  # an index names one element
        ("order.line_items.0.sku", "begin", "SPREE", False),
        ("order.line_items.9.sku", "present", ..., False),
        ("order.totals.*", "gte", 10, True),  # a wildcard also takes every member of an object
        ("order.tags.*", "in", ["vip"], True),
        ("order.*.sku", "present", ..., False),  # one level only: line_items is a list, not its skus
        ("order.line_items.*.missing", "empty", ..., True),
    ],
)
def test_wildcard_and_index_paths(path: str, operator: str, value: Any, expected: bool) -> None:
    assert holds(path, operator, value) is expected


def test_values_at_collects_every_value_a_wildcard_reaches() -> None:
    assert values_at(PAYLOAD, ("order", "line_items", "*", "sku")) == ["ROR-1", "SPREE-T"]
    assert values_at(PAYLOAD, ("order", "nothing", "*")) == []
    assert values_at("not an object", ("order",)) == []


def test_a_payload_of_another_shape_matches_nothing() -> None:
    assert holds("order.number", "eq", "R123", payload={"order": ["R123"]}) is False
    assert holds("order.number", "present", payload={"order": "R123"}) is False


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # (a+)+$ takes exponential time in a backtracking engine on "aaaa...b"; RE2 has no backtracking
    rule = compile_rule({"path": "s", "operator": "match", "value": "(a+)+$"})
    assert rule.holds({"s": "a" * 100_000 + "b"}) is False
    assert rule.holds({"s": "b" + "a" * 100_000}) is True


def test_a_rule_names_itself_for_the_routing_explanation() -> None:
    assert compile_rule({"path": "order.total", "operator": "gt", "value": 100}).text == "order.total gt 100"
    assert compile_rule({"path": "order.note", "operator": "present"}).text == "order.note present"
    assert compile_rule({"path": "a", "operator": "in", "value": ["x", 1]}).text == 'a in ["x",1]'


@pytest.mark.parametrize(
    ("spec", "key", "message"),
    [
        ({"path": "a..b", "operator": "eq", "value": 1}, "path", "is not a dotted path"),
        ({"path": "", "operator": "eq", "value": 1}, "path", "must be a dotted path"),
        ({"path": 5, "operator": "eq", "value": 1}, "path", "must be a dotted path"),
        ({"path": "a", "operator": "like", "value": 1}, "operator", "'like' is not one of eq, neq"),
        ({"path": "a", "operator": "gt", "value": "many"}, "value", 'gt compares with a number, got "many"'),
        ({"path": "a", "operator": "lte", "value": True}, "value", "lte compares with a number"),
        ({"path": "a", "operator": "eq", "value": [1]}, "value", "eq compares with a string, number"),
        ({"path": "a", "operator": "eq"}, "value", "eq needs a value"),
        ({"path": "a", "operator": "present", "value": 1}, "value", "present takes no value"),
        ({"path": "a", "operator": "begin", "value": 1}, "value", "begin takes a string, got 1"),
        ({"path": "a", "operator": "in", "value": "x"}, "value", "in takes a non-empty list"),
        ({"path": "a", "operator": "in", "value": []}, "value", "in takes a non-empty list"),
        ({"path": "a", "operator": "in", "value": [{"x": 1}]}, "value", "in takes a non-empty list"),
        ({"path": "a", "operator": "contains", "value": {}}, "value", "contains looks for a string"),
        ({"path": "a", "operator": "match", "value": "(a"}, "value", "RE2 accepts: missing )"),
        ({"path": "a", "operator": "match", "value": r"(a)\1"}, "value", "RE2 accepts: invalid escape"),
        ({"path": "a", "operator": "eq", "value": 1, "op": "x"}, None, "unknown keys ['op']"),
        ("a eq 1", None, "must be a mapping"),
    ],
)
def test_a_rule_that_cannot_be_compiled_names_its_key(spec: Any, key: str | None, message: str) -> None:
    with pytest.raises(RuleError) as raised:
        compile_rule(spec)
    assert raised.value.key == key
    assert message in str(raised.value)
