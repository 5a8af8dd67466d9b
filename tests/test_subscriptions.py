from __future__ import annotations

from pathlib import Path

import pytest

from integrator.subscriptions import Subscriptions, SubscriptionsError, topic_matches
from tests.conftest import OTHER_STORE, STORE


@pytest.mark.parametrize(
    ("pattern", "message", "matches"),
    [
        ("#", "order:new", True),
        ("#", "spree:order:poll", True),
        ("order:new", "order:new", True),
        ("order:new", "order:updated", False),
        ("order:*", "order:new", True),
        ("order:*", "order:payment:captured", False),
        ("order:#", "order:payment:captured", True),
        ("order:#", "order", True),
        ("*:new", "product:new", True),
        ("*:new", "purchase_order:received", False),
        ("#:poll", "spree:order:poll", True),
        ("*", "order:new", False),
    ],
)
def test_topic_semantics(pattern: str, message: str, matches: bool) -> None:
    assert topic_matches(tuple(pattern.split(":")), tuple(message.split(":"))) is matches


def test_match_by_type_and_store() -> None:
    subscriptions = Subscriptions.parse(
        {
            "subscribers": {
                "store": {"messages": ["#"]},
                "erp": {"messages": ["order:*", "product:new"], "stores": [STORE]},
            }
        }
    )
    assert subscriptions.names == ("store", "erp")
    assert takers(subscriptions, "order:new", STORE) == ["store", "erp"]
    assert takers(subscriptions, "order:new", OTHER_STORE) == ["store"]
    assert takers(subscriptions, "user:new", STORE) == ["store"]


def takers(subscriptions: Subscriptions, message: str, store_id: str, payload: object = None) -> list[str]:
    return [subscriber.name for subscriber, _ in subscriptions.route(message, store_id, payload or {})[1]]


SHIPPING = {
    "messages": ["shipment:ready"],
    "filters": [
        {"path": "shipment.shipped_at", "operator": "present"},
        {"path": "shipment.stock_location", "operator": "eq", "value": "default"},
    ],
    "identifiers": {"number": "shipment.number"},
}


def test_each_subscriber_has_an_outcome_in_file_order() -> None:
    subscriptions = Subscriptions.parse({"subscribers": {
        "erp": {"messages": ["order:*"]},
        "shipping": SHIPPING,
        "mailer": {"messages": ["#"], "stores": [OTHER_STORE]},
        "store": {"messages": ["#"]},
    }})  # fmt: skip
    ready = {"shipment": {"number": "H1", "shipped_at": None, "stock_location": "default"}}
    outcomes, taking = subscriptions.route("shipment:ready", STORE, ready)
    assert outcomes == [
        ["erp", "type"],
        ["shipping", "filter", "shipment.shipped_at present"],
        ["mailer", "store"],
        ["store", "delivered"],
    ]
    assert [s.name for s, _ in taking] == ["store"] and taking[0][1] is outcomes[3]
    ready["shipment"]["shipped_at"] = "2024-01-01T00:00:00Z"
    assert takers(subscriptions, "shipment:ready", STORE, ready) == ["shipping", "store"]


def test_match_any_takes_a_message_that_passes_one_filter() -> None:
    spec = {**SHIPPING, "match": "any"}
    subscriptions = Subscriptions.parse({"subscribers": {"shipping": spec}})
    one = {"shipment": {"shipped_at": None, "stock_location": "default"}}
    none = {"shipment": {"shipped_at": None, "stock_location": "ny"}}
    assert takers(subscriptions, "shipment:ready", STORE, one) == ["shipping"]
    outcomes, _ = subscriptions.route("shipment:ready", STORE, none)
    assert outcomes == [[
        "shipping", "filter",
        'none of: shipment.shipped_at present; shipment.stock_location eq "default"',
    ]]  # fmt: skip


def test_an_identity_is_the_values_at_its_paths() -> None:
    spec = {"messages": ["#"], "identifiers": {"number": "shipment.number", "at": "shipment.stock_location"}}
    (shipping,) = Subscriptions.parse({"subscribers": {"shipping": spec}}).subscribers
    one = shipping.identity({"shipment": {"number": "H1", "stock_location": "default"}})
    same = shipping.identity({"shipment": {"number": "H1", "stock_location": "default", "cost": 5}})
    other = shipping.identity({"shipment": {"number": "H2", "stock_location": "default"}})
    assert one.digest == same.digest != other.digest and len(one.digest or b"") == 32
    assert one.shown == 'number="H1", at="default"'
    missing = shipping.identity({"shipment": {"number": "H1", "stock_location": None}})
    assert missing.digest is None
    assert missing.shown == "no value for identifier at at shipment.stock_location; delivered unchecked"
    assert shipping.identifier_days == 30


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({}, "expected a mapping under 'subscribers'"),
        ({"subscribers": {"Bad Name": {"messages": ["#"]}}}, "subscriber 'Bad Name': names are"),
        ({"subscribers": {"erp": {}}}, "subscriber 'erp': 'messages' must be a non-empty list"),
        (
            {"subscribers": {"erp": {"messages": ["order:n*"]}}},
            "subscriber 'erp': messages[0]: bad message pattern 'order:n*'",
        ),
        ({"subscribers": {"erp": {"messages": ["#"], "stores": ["x"]}}}, "'stores' must be a list of 24-hex"),
        (
            {"subscribers": {"erp": {"messages": ["#"], "stores": ["zz79008084a81693d5000001"]}}},
            "'stores' must be a list of 24-hex",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "filter": []}}},
            "subscriber 'erp': unknown keys ['filter']",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "filters": [{"path": "a", "operator": "is"}]}}},
            "subscriber 'erp': filters[0].operator: 'is' is not one of",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "filters": {"path": "a"}}}},
            "subscriber 'erp': filters: must be a list",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "match": "most"}}},
            "match: 'most' is neither all nor any",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "identifiers": ["order.number"]}}},
            "subscriber 'erp': identifiers: must map each name to a dotted path",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "identifiers": {"n": "order.*.number"}}}},
            "identifiers.n: 'order.*.number' has a wildcard",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "identifiers": {"n": "order..number"}}}},
            "identifiers.n: 'order..number' is not a dotted path",
        ),
        (
            {"subscribers": {"erp": {"messages": ["#"], "identifier_days": "30"}}},
            "identifier_days: '30' is not",
        ),
        ({"subscribers": {"erp": {"messages": ["#"], "identifier_days": 0}}}, "identifier_days: 0 is not"),
        ({"subscribers": {"erp": "order:*"}}, "subscriber 'erp': expected a mapping with 'messages'"),
    ],
)
def test_malformed_subscriptions_are_refused(document: object, error: str) -> None:
    with pytest.raises(SubscriptionsError, match=error.replace("[", r"\[").replace("*", r"\*")):
        Subscriptions.parse(document)


def test_every_problem_is_named_at_once() -> None:
    document = {"subscribers": {
        "erp": {"messages": ["order:n*"], "filters": [{"path": "a", "operator": "gt", "value": "x"}]},
        "mailer": {"messages": ["#"], "stores": ["nope"], "identifier_days": -1},
        "store": {"messages": ["#"]},
    }}  # fmt: skip
    with pytest.raises(SubscriptionsError) as raised:
        Subscriptions.parse(document)
    assert raised.value.problems == [
        "subscriber 'erp': messages[0]: bad message pattern 'order:n*'",
        "subscriber 'erp': filters[0].value: gt compares with a number, got \"x\"",
        "subscriber 'mailer': 'stores' must be a list of 24-hex store ids",
        "subscriber 'mailer': identifier_days: -1 is not a whole number of days from 1 to 3650",
    ]


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "subs.yml"
    path.write_text("subscribers: [")
    with pytest.raises(SubscriptionsError, match=f"{path}: not valid YAML"):
        Subscriptions.load(path)
    with pytest.raises(SubscriptionsError, match="cannot read"):
        Subscriptions.load(tmp_path / "missing.yml")


def test_shipped_subscriptions_file_loads() -> None:
    assert Subscriptions.load(Path("config/subscriptions.yml")).names == ("store", "erp", "mailer")
