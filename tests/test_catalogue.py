"""The schema catalogue as users meet it: served by the gateway, a dry run that agrees with the
asynchronous validator, custom schema directories, and bad schema files refused at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractChannel

from integrator.schemas import SchemaCatalogue
from tests.conftest import STORE
from tests.support.broker import assert_stays_empty, body, take
from tests.support.processes import ROOT, Stack

CATALOGUE = SchemaCatalogue.load(ROOT / "schemas")
EXAMPLES = [
    ({"message": s.message_type, "store_id": STORE, "payload": example}, valid)
    for s in CATALOGUE
    for valid, examples in (
        (True, s.document["examples"]),
        (False, [e["payload"] for e in s.document["x-invalid-examples"]]),
    )
    for example in examples
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
    assert [entry["message"] for entry in listed] == sorted(s.message_type for s in CATALOGUE)
    assert {
        "message": "order:new",
        "title": "New order",
        "description": CATALOGUE["order:new"].description,
    } in listed

    async with http.get(stack.url + "/schemas/order:new") as response:
        assert response.status == 200
        assert await response.json() == json.loads((ROOT / "schemas/order/new.json").read_text())
    async with http.get(stack.url + "/schemas/order:lost") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "no schema for message type order:lost"


async def test_dry_run_agrees_with_the_validator_on_every_example(
    stack: Stack, http: aiohttp.ClientSession, channel: AbstractChannel
) -> None:
    await stack.start("gateway", "validator")
    dry_runs: dict[str, tuple[int, dict]] = {}
    for doc, valid in EXAMPLES:
        async with http.post(stack.url + "/messages/validate", json=doc) as response:
            dry_run = (response.status, await response.json())
        assert dry_run[0] == (200 if valid else 422), (doc, dry_run)
        async with http.post(stack.url + "/messages", json=doc) as response:
            assert response.status == 202
            dry_runs[(await response.json())["message_id"]] = dry_run

    valid_count = sum(valid for _, valid in EXAMPLES)
    for message in await take(channel, f"{stack.prefix}.validated", valid_count):
        assert dry_runs.pop(body(message)["message_id"]) == (200, {"valid": True})
    for message in await take(channel, f"{stack.prefix}.rejected", len(EXAMPLES) - valid_count):
        status, answer = dry_runs.pop(body(message)["message_id"])
        assert (status, answer["error"]) == (422, "invalid message")
        assert [dict(e) for e in message.headers["errors"]] == answer["errors"]
    assert dry_runs == {}, "every message was either validated or rejected"


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
    await assert_stays_empty(channel, f"{stack.prefix}.incoming", 0.2)


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
    good = {
        "message": "loyalty:points:added",
        "store_id": STORE,
        "payload": {"customer_id": "c1", "points": 5},
    }
    bad = {**good, "payload": {"customer_id": "c1", "points": 0}}
    for doc in (good, bad):
        async with http.post(stack.url + "/messages", json=doc) as response:
            assert response.status == 202
    [accepted] = await take(channel, f"{stack.prefix}.accepted.store", 1)
    assert body(accepted)["payload"] == good["payload"]
    [rejected] = await take(channel, f"{stack.prefix}.rejected", 1)
    assert [dict(e) for e in rejected.headers["errors"]] == [
        {"path": "/payload/points", "rule": "minimum", "message": "must be >= 1, got 0"}
    ]


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
