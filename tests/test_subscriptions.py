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
    assert subscriptions.match("order:new", STORE) == ["store", "erp"]
    assert subscriptions.match("order:new", OTHER_STORE) == ["store"]
    assert subscriptions.match("user:new", STORE) == ["store"]


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({}, "expected a mapping under 'subscribers'"),
        ({"subscribers": {"Bad Name": {"messages": ["#"]}}}, "subscriber 'Bad Name': names are"),
        ({"subscribers": {"erp": {}}}, "subscriber 'erp': 'messages' must be a non-empty list"),
        (
            {"subscribers": {"erp": {"messages": ["order:n*"]}}},
            "subscriber 'erp': bad message pattern 'order:n*'",
        ),
        ({"subscribers": {"erp": {"messages": ["#"], "stores": ["x"]}}}, "'stores' must be a list of 24-hex"),
        (
            {"subscribers": {"erp": {"messages": ["#"], "stores": ["zz79008084a81693d5000001"]}}},
            "'stores' must be a list of 24-hex",
        ),
        ({"subscribers": {"erp": {"messages": ["#"], "filters": []}}}, "unknown keys ['filters']"),
    ],
)
def test_malformed_subscriptions_are_refused(document: object, error: str) -> None:
    with pytest.raises(SubscriptionsError, match=error.replace("[", r"\[").replace("*", r"\*")):
        Subscriptions.parse(document)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "subs.yml"
    path.write_text("subscribers: [")
    with pytest.raises(SubscriptionsError, match=f"{path}: not valid YAML"):
        Subscriptions.load(path)
    with pytest.raises(SubscriptionsError, match="cannot read"):
        Subscriptions.load(tmp_path / "missing.yml")


def test_shipped_subscriptions_file_loads() -> None:
    assert Subscriptions.load(Path("config/subscriptions.yml")).names == ("store", "erp", "mailer")
