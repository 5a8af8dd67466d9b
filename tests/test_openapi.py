"""The OpenAPI document stays true: it names every route the gateway serves, carries the
catalogue's payload schemas, and schemathesis, run against a live gateway with authentication on,
finds no 5xx, no answer outside the document, no valid request refused and no invalid one taken."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
from jsonschema import Draft202012Validator

from integrator import ledger, stores
from integrator.schemas import SchemaCatalogue
from integrator.settings import Settings
from services.gateway.app import create_app
from services.gateway.broker import BrokerLink
from services.gateway.openapi import TEMPLATE, document
from tests.conftest import STORE
from tests.support.processes import ROOT, Stack

CATALOGUE = SchemaCatalogue.load(ROOT / "schemas")


def test_every_route_is_described_and_every_description_is_served() -> None:
    settings = Settings(auth=False)
    app = create_app(settings, BrokerLink(settings), SchemaCatalogue({}))
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD"
    }
    described = {(path, method) for path, operations in TEMPLATE["paths"].items() for method in operations}
    assert served == described


async def test_openapi_json_carries_the_catalogue(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.start("gateway")
    async with http.get(stack.url + "/openapi.json") as response:
        assert (response.status, await response.json()) == (200, document(CATALOGUE))
    spec = document(CATALOGUE)
    branches = spec["components"]["schemas"]["Submission"]["oneOf"]
    assert len(branches) == len(CATALOGUE.message_types) + 1  # one per type or alias, one for the rest
    for component in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(component)  # each one, lifted $defs and all
    assert spec["components"]["schemas"]["Message.order.update"]["properties"] == {
        "message": {"const": "order:update"},
        "payload": {"$ref": "#/components/schemas/order.updated.payload"},
    }


def references(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def resolve(spec: dict, ref: str) -> object:
    node: object = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    return node


def test_every_reference_resolves_and_only_schemas_are_rewritten(tmp_path: Path) -> None:
    (tmp_path / "loyalty").mkdir()
    (tmp_path / "loyalty" / "points.json").write_text(
        """{"type": "object", "required": ["format"],
            "properties": {"format": {"$ref": "#/$defs/outer/$defs/inner"},
                           "examples": {"const": {"a": 1}}, "$ref": {"type": "integer"},
                           "self": {"$ref": "#"}, "sibling": {"$ref": "#/properties/examples"}},
            "$defs": {"outer": {"$defs": {"inner": {"type": "string", "format": "email"}}}},
            "examples": [{"format": "x"}], "x-sources": ["here"]}"""
    )  # fmt: skip
    spec = document(SchemaCatalogue.load(tmp_path))
    payload = spec["components"]["schemas"]["loyalty.points.payload"]
    assert set(payload["properties"]) == {"format", "examples", "$ref", "self", "sibling"}
    assert payload["properties"]["examples"] == {"const": {"a": 1}}, "a value is not a schema"
    assert "examples" not in payload and "x-sources" not in payload
    assert spec["components"]["schemas"]["loyalty.points-outer-inner"] == {"type": "string"}
    for generated in (spec, document(CATALOGUE)):
        for ref in references(generated):
            assert resolve(generated, ref) is not None, ref


async def test_schemathesis_finds_nothing_outside_the_spec(
    stack: Stack, tmp_path: Path, ledger_db: asyncpg.Pool
) -> None:
    _, token = await stores.create(ledger_db, STORE)
    stack.env |= {"INTEGRATOR_AUTH": "true"}
    # the token's store in the path, so that pushes get past authorization to the catalogue
    # a cursor is opaque (any other string is a 400), and a key used again with another body is a
    # 422 (IETF draft-ietf-httpapi-idempotency-key-header), which generated pushes do all the time
    cursor = ledger.encode_cursor(datetime.now(UTC), "6b1125f1e8d13bdc8d2abbc0")
    pushes = "\n".join(
        f'[[operations]]\ninclude-name = "POST {path}"\n'
        "checks.positive_data_acceptance.expected-statuses = [202, 401, 403, 404, 409, 422, 429]"
        for path in ("/messages", "/api/stores/{store_id}/messages")
    )
    config = f'[parameters]\n"path.store_id" = "{STORE}"\n"query.cursor" = "{cursor}"\n\n{pushes}\n'
    (tmp_path / "schemathesis.toml").write_text(config)
    await stack.start("gateway")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            str(Path(sys.executable).parent / "schemathesis"),  # installed beside this Python
            "run", f"{stack.url}/openapi.json",
            "--max-examples", "25",
            "--header", f"Authorization: Bearer {token}",
            "--checks", "all",
            "--seed", "1",
        ],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-20000:]
    assert token not in stack.service("gateway").log_text()
