"""The small pieces of the core: ids, envelope rules, settings."""

from __future__ import annotations

import pytest
from bson import ObjectId

from integrator.envelope import envelope_errors
from integrator.ids import child_message_id, is_object_id, new_message_id
from integrator.settings import Settings
from tests.conftest import STORE


def test_child_ids_are_deterministic_distinct_object_ids() -> None:
    parent = new_message_id()
    child = child_message_id(parent, "erp")
    assert child == child_message_id(parent, "erp")
    assert child != child_message_id(parent, "store")
    assert child != parent
    assert is_object_id(child)
    assert ObjectId(child).generation_time == ObjectId(parent).generation_time


@pytest.mark.parametrize("value", [None, 5, "", "zz" * 12, STORE + "0", STORE.upper()[:-1]])
def test_not_object_ids(value: object) -> None:
    assert not is_object_id(value)


@pytest.mark.parametrize(
    "message", ["order:new", "purchase_order:received", "spree:order:poll", "notification:warn", "a1:b2"]
)
def test_message_types_accepted(message: str) -> None:
    assert envelope_errors({"message": message, "store_id": STORE, "payload": {}}) == []


@pytest.mark.parametrize(
    "message", ["order", "Order:New", "order::new", ":new", "order:new:", "order new", "1x:y"]
)
def test_message_types_refused(message: str) -> None:
    assert [e["path"] for e in envelope_errors({"message": message, "store_id": STORE, "payload": {}})] == [
        "/message"
    ]


def test_stored_messages_need_their_id() -> None:
    doc = {"message": "order:new", "store_id": STORE, "payload": {}}
    assert envelope_errors(doc, stored=True) == [
        {"path": "/message_id", "rule": "required", "message": "is required"}
    ]
    assert envelope_errors({**doc, "message_id": new_message_id()}, stored=True) == []


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "AMQP_URL": "amqp://x/",
            "INTEGRATOR_PREFIX": "p",
            "INTEGRATOR_STRICT_SCHEMAS": "yes",
            "INTEGRATOR_GATEWAY_PORT": "9000",
            "INTEGRATOR_SCHEMAS": "/s",
            "INTEGRATOR_PUBLISH_TIMEOUT": "2.5",
        }
    )
    assert (settings.amqp_url, settings.prefix, settings.strict_schemas, settings.gateway_port) == (
        "amqp://x/",
        "p",
        True,
        9000,
    )
    assert str(settings.schemas_dir) == "/s"
    assert settings.publish_timeout == 2.5
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INTEGRATOR_GATEWAY_PORT", "eighty"),
        ("INTEGRATOR_STRICT_SCHEMAS", "maybe"),
        ("INTEGRATOR_PREFETCH", "-1"),
    ],
)
def test_malformed_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        Settings.from_env({name: value})
