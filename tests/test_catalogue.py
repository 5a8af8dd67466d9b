"""The schema catalogue as users meet it: served by the gateway with its aliases, checked at the
door (422 with every error, 202 with warnings), a dry run that agrees with the asynchronous
validator, warnings carried to every copy, custom schema directories, bad schema files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractChannel

from integrator.schemas import SchemaCatalogue
from tests.conftest import NEW_PRODUCT, STORE
from tests.support.broker import assert_barrier_first, body, depth, take
from tests.support.processes import ROOT, Stack

CATALOGUE = SchemaCatalogue.load(ROOT / "schemas")
# a schema a user adds (the README's loyalty:points:added) may come without examples
EXAMPLES = [
    ({"message": s.message_type, "store_id": STORE, "payload": example}, valid)
    for s in CATALOGUE
    for valid, examples in (
        (
            True,
            s.document.get("examples", []) + [e["payload"] for e in s.document.get("x-warned-examples", [])],
        ),
        (False, [e["payload"] for e in s.document.get("x-invalid-examples", [])]),
    )
    for example in examples
]


def sent_as(source: str, message_type: str) -> str:
    """The type a documented sample was sent as, where the guides used an alias."""
    alias = source.partition(", sent as ")[2].partition(",")[0]
    return alias if alias in CATALOGUE else message_type


DOCUMENTED = [
    ({"message": sent_as(source, s.message_type), "store_id": STORE, "payload": example}, source)
    for s in CATALOGUE
    for example, source in zip(s.document.get("examples", []), s.document.get("x-sources", []), strict=False)
    if source.startswith("spree/spree@")
]


def test_catalogue_covers_the_standard_types() -> None:
    assert {s.message_type for s in CATALOGUE} >= {
        "product:new", "product:updated", "order:new", "order:updated", "order:canceled",
        "shipment:ready", "shipment:confirm", "stock:change", "stock:actual", "user:new", "user:updated",
        "payment:new", "payment:capture", "notification:info", "notification:warn", "notification:error",
        "purchase_order:new", "purchase_order:received", "purchase_order:confirm",
    }  # fmt: skip


async def test_gateway_serves_the_catalogue(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")
    async with http.get(stack.url + "/schemas") as response:
        listed = await response.json()
    assert response.status == 200
    assert [entry["message"] for entry in listed] == sorted(CATALOGUE.message_types)
    assert {
        "message": "order:new",
        "title": "New order",
        "description": CATALOGUE["order:new"].description,
    } in listed
    assert {
        "message": "order:update",
        "alias_of": "order:updated",
        "title": "Updated order",
        "description": CATALOGUE["order:updated"].description,
    } in listed
    assert [e["message"] for e in listed if e.get("alias_of") == "hub:poll"] == [
        "amazon:order:poll", "dotcom:shipment_results:poll", "fosdick:shipment_results:poll",
        "quiet_logistics:messages:poll", "shipwire:shipment_results:poll",
    ]  # fmt: skip

    async with http.get(stack.url + "/schemas/order:new") as response:
        assert response.status == 200
        assert await response.json() == json.loads((ROOT / "schemas/order/new.json").read_text())
    async with http.get(stack.url + "/schemas/shipment:confirmation") as response:
        assert await response.json() == json.loads((ROOT / "schemas/shipment/confirm.json").read_text())
    async with http.get(stack.url + "/schemas/order:lost") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "no schema for message type order:lost"


async def test_every_documented_sample_is_accepted_at_the_door(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator")
    warned: dict[str, list] = {}
    for doc, source in DOCUMENTED:
        async with http.post(stack.url + "/messages/validate", json=doc) as response:
            dry_run = (response.status, await response.json())
        assert dry_run[0] == 200, (source, dry_run)
        async with http.post(stack.url + "/messages", json=doc) as response:
            answer = await response.json()
        assert response.status == 202, (source, answer)
        assert answer.get("warnings") == dry_run[1].get("warnings"), source
        assert answer["message"] == doc["message"], "the message keeps the type its sender gave it"
        warned[answer["message_id"]] = dry_run[1].get("warnings", [])
    for message in await take(channel, f"{stack.prefix}.validated", len(DOCUMENTED)):
        assert [dict(w) for w in message.headers.get("warnings", [])] == warned.pop(
            body(message)["message_id"]
        )
    assert warned == {}


REFUSED = {
    "error": "invalid message",
    "errors": [
        {"path": "/payload/order/email", "rule": "pattern", "message": 'must be an email address, got "x"'},
        {
            "path": "/payload/order/line_items/0/quantity",
            "rule": "type",
            "message": 'must be an integer, got "two"',
        },
    ],
}


async def accepted_push(http: aiohttp.ClientSession, stack: Stack) -> str:
    """A valid push after those under test: the barrier for what reaches incoming."""
    async with http.post(stack.url + "/messages", json=NEW_PRODUCT) as response:
        assert response.status == 202
        return (await response.json())["message_id"]


async def test_payload_errors_are_refused_at_the_door_with_every_error(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway")
    doc = {
        "message": "order:new",
        "store_id": STORE,
        "payload": {"order": {"number": "R1", "email": "x", "line_items": [{"sku": "A", "quantity": "two"}]}},
    }
    for path in ("/messages", f"/api/stores/{STORE}/messages"):
        async with http.post(stack.url + path, json=doc) as response:
            assert (response.status, await response.json()) == (422, REFUSED)
    await assert_barrier_first(channel, f"{stack.prefix}.incoming", await accepted_push(http, stack))


async def test_every_invalid_example_is_refused_at_the_door_where_documented(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway")
    invalid = [(s.message_type, e) for s in CATALOGUE for e in s.document.get("x-invalid-examples", [])]
    for message_type, example in invalid:
        doc = {"message": message_type, "store_id": STORE, "payload": example["payload"]}
        async with http.post(stack.url + "/messages", json=doc) as response:
            answer = await response.json()
        assert response.status == 422, (message_type, answer)
        assert [{"path": e["path"], "rule": e["rule"]} for e in answer["errors"]] == example["errors"]
    assert len(invalid) >= 50
    await assert_barrier_first(channel, f"{stack.prefix}.incoming", await accepted_push(http, stack))


async def test_dry_run_agrees_with_the_validator_on_every_example(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    """With the gateway's check off, every example reaches the validator, still the authority."""
    stack.env["INTEGRATOR_GATEWAY_VALIDATES"] = "false"
    await stack.start("gateway", "validator")
    dry_runs: dict[str, tuple[int, dict]] = {}
    for doc, valid in EXAMPLES:
        async with http.post(stack.url + "/messages/validate", json=doc) as response:
            dry_run = (response.status, await response.json())
        assert dry_run[0] == (200 if valid else 422), (doc, dry_run)
        async with http.post(stack.url + "/messages", json=doc) as response:
            assert response.status == 202
            answer = await response.json()
            assert "warnings" not in answer, "the gateway did not look"
            dry_runs[answer["message_id"]] = dry_run

    valid_count = sum(valid for _, valid in EXAMPLES)
    for message in await take(channel, f"{stack.prefix}.validated", valid_count):
        status, answer = dry_runs.pop(body(message)["message_id"])
        assert status == 200
        assert [dict(w) for w in message.headers.get("warnings", [])] == answer.get("warnings", [])
    for message in await take(channel, f"{stack.prefix}.rejected", len(EXAMPLES) - valid_count):
        status, answer = dry_runs.pop(body(message)["message_id"])
        assert (status, answer["error"]) == (422, "invalid message")
        assert [dict(e) for e in message.headers["errors"]] == answer["errors"]
    assert dry_runs == {}, "every message was either validated or rejected"


async def test_a_message_with_warnings_is_delivered_and_every_copy_carries_them(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator", "router")
    doc = {
        "message": "order:cancelled",  # an alias: checked as order:canceled, routed as sent
        "store_id": STORE,
        "payload": {"order": {"number": "R1", "email": "a@b.co", "status": "canceled",
                              "placed_on": "Tue, 12 Nov 2013 19:09:50 UTC +00:00", "line_items": []}},
    }  # fmt: skip
    expected = [
        {
            "path": "/payload/order/placed_on",
            "rule": "pattern",
            "message": 'must be an ISO 8601 date-time, got "Tue, 12 Nov 2013 19:09:50 UTC +00:00"',
        }
    ]
    async with http.post(stack.url + "/messages", json=doc) as response:
        answer = await response.json()
    assert (response.status, answer["warnings"]) == (202, expected)
    for subscriber in ("store", "erp"):
        [copy] = await take(channel, f"{stack.prefix}.accepted.{subscriber}", 1)
        assert (copy.type, body(copy)["parent_id"]) == ("order:cancelled", answer["message_id"])
        assert [dict(w) for w in copy.headers["warnings"]] == expected


async def test_dry_run_checks_the_envelope_and_publishes_nothing(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway")
    async with http.post(
        stack.url + "/messages/validate", json={"message": "order:new", "payload": {}}
    ) as response:
        assert response.status == 422
        assert (await response.json())["errors"] == [
            {"path": "/store_id", "rule": "required", "message": "is required"}
        ]
    await assert_barrier_first(channel, f"{stack.prefix}.incoming", await accepted_push(http, stack))


CUSTOM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Loyalty points added",
    "description": "Points credited to a customer.",
    "type": "object",
    "required": ["customer_id", "points"],
    "properties": {"customer_id": {"type": "string"}, "points": {"type": "integer", "minimum": 1}},
}


async def test_custom_schema_directory_end_to_end(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel, tmp_path: Path
) -> None:
    schemas = tmp_path / "my-schemas"
    (schemas / "loyalty" / "points").mkdir(parents=True)
    (schemas / "loyalty" / "points" / "added.json").write_text(json.dumps(CUSTOM_SCHEMA))
    stack.env["INTEGRATOR_SCHEMAS"] = str(schemas)
    await stack.start("gateway", "validator", "router")

    async with http.get(stack.url + "/schemas") as response:
        assert [s["message"] for s in await response.json()] == ["loyalty:points:added"]
    async with http.get(stack.url + "/openapi.json") as response:
        generated = (await response.json())["components"]["schemas"]
    assert generated["loyalty.points.added.payload"]["required"] == ["customer_id", "points"]
    assert generated["OtherMessage"]["properties"]["message"] == {"not": {"enum": ["loyalty:points:added"]}}
    good = {
        "message": "loyalty:points:added",
        "store_id": STORE,
        "payload": {"customer_id": "c1", "points": 5},
    }
    bad = {**good, "payload": {"customer_id": "c1", "points": 0}}
    async with http.post(stack.url + "/messages", json=bad) as response:
        assert (response.status, (await response.json())["errors"]) == (
            422,
            [{"path": "/payload/points", "rule": "minimum", "message": "must be >= 1, got 0"}],
        )
    async with http.post(stack.url + "/messages", json=good) as response:
        assert response.status == 202
    [accepted] = await take(channel, f"{stack.prefix}.accepted.store", 1)
    assert body(accepted)["payload"] == good["payload"]
    # the validator handled only `good` (the gateway refused `bad`), and had it rejected `good`
    # too, that would have been published before the copy that just arrived
    assert await depth(channel, f"{stack.prefix}.rejected") == 0


@pytest.mark.parametrize("service", ["gateway", "validator"])
def test_bad_schema_file_stops_the_service_naming_it(service: str, tmp_path: Path) -> None:
    (tmp_path / "order").mkdir()
    bad = tmp_path / "order" / "new.json"
    bad.write_text('{"type": "objekt"}')
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env={"INTEGRATOR_SCHEMAS": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"{service}: {bad}: not a valid JSON Schema: 'objekt' is not valid"
    )


async def test_the_validator_has_the_last_word_on_warnings(stack: Stack, channel: AbstractChannel) -> None:
    """Messages published straight to `incoming` get the validator's warnings, whatever they said."""
    await stack.start("validator")
    incoming = await channel.get_exchange(f"{stack.prefix}.incoming", ensure=False)
    stale = [{"path": "/payload/sku", "rule": "pattern", "message": "stale"}]
    clean = {
        "message": "stock:change",
        "message_id": "5279008084a81693d5000a01",
        "store_id": STORE,
        "payload": {"sku": "APC-00001", "quantity": 5},
    }
    warned = {
        "message": "order:new",
        "message_id": "5279008084a81693d5000a02",
        "store_id": STORE,
        "payload": {"order": {"number": "R1", "email": "a@b.co", "line_items": [], "placed_on": "today"}},
    }
    refused = {**clean, "message_id": "5279008084a81693d5000a03", "payload": {"sku": "A", "quantity": "x"}}
    for doc in (clean, warned, refused):
        message = aio_pika.Message(
            json.dumps(doc).encode(), message_id=doc["message_id"], headers={"warnings": stale}
        )
        await incoming.publish(message, routing_key=doc["message"])
    [rejected] = await take(channel, f"{stack.prefix}.rejected", 1)
    assert "warnings" not in rejected.headers and rejected.headers["errors"]
    by_id = {body(m)["message_id"]: m for m in await take(channel, f"{stack.prefix}.validated", 2)}
    assert "warnings" not in by_id[clean["message_id"]].headers
    [warning] = by_id[warned["message_id"]].headers["warnings"]
    assert (warning["path"], warning["message"]) == (
        "/payload/order/placed_on",
        'must be an ISO 8601 date-time, got "today"',
    )
