"""The gateway's OpenAPI document: the contract written in openapi.yaml, with the payload schema
of every catalogued type generated into it, so that the document says exactly what a push accepts.

Each type's schema goes in without its warnings (they never refuse) and without `format` (the
validator does not check formats), and its `$defs` become components of their own. Numbers are
bounded to the 64 bits of integer a body may carry, free-form values included (`JsonValue`). A
push's body is then one of the catalogued types, told apart by `message`, or, unless the
catalogue is strict, any other type with any object.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import orjson
import yaml

from integrator.schemas import SchemaCatalogue

TEMPLATE: dict[str, Any] = yaml.safe_load(
    resources.files("services.gateway").joinpath("openapi.yaml").read_text()
)
INT64_RANGE = (-(2**63), 2**64 - 1)  # what body.py lets through: the range orjson reads exactly
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
DROPPED = frozenset({"$schema", "$id", "$defs", "examples", "x-invalid-examples", "format"})
SUBMISSIONS = ("Submission", "StoreSubmission")


def openapi_json(catalogue: SchemaCatalogue) -> bytes:
    """The document as served at /openapi.json."""
    return orjson.dumps(document(catalogue))


def document(catalogue: SchemaCatalogue) -> dict[str, Any]:
    spec = copy.deepcopy(TEMPLATE)
    components = spec["components"]["schemas"]
    low, high = INT64_RANGE
    components["JsonValue"] = {
        "description": "Any JSON value whose numbers fit in 64 bits",
        "type": ["object", "array", "string", "number", "boolean", "null"],
        "minimum": low, "maximum": high, "items": JSON_VALUE, "additionalProperties": JSON_VALUE,
    }  # fmt: skip
    mapping = {}
    for schema in catalogue:
        name = component_name(schema.message_type)
        refusals = schema.refusals
        for def_name, subschema in refusals.get("$defs", {}).items():
            components[f"{name}.{def_name}"] = _relocated(subschema, name)
        components[f"{name}.payload"] = _relocated(refusals, name)
    for message_type in sorted(catalogue.message_types):
        payload = component_name(catalogue[message_type].message_type) + ".payload"
        branch = "Message." + component_name(message_type)
        components[branch] = {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"const": message_type},
                "payload": {"$ref": f"#/components/schemas/{payload}"},
            },
        }
        mapping[message_type] = f"#/components/schemas/{branch}"
    branches = [{"$ref": ref} for ref in mapping.values()]
    if not catalogue.strict:
        components["OtherMessage"] = {
            "type": "object",
            "description": "A type the catalogue has no schema for: any payload object is accepted.",
            "properties": {
                "message": {"not": {"enum": sorted(mapping)}},
                "payload": {"type": "object", "additionalProperties": JSON_VALUE},
            },
        }
        branches.append({"$ref": "#/components/schemas/OtherMessage"})
    for submission in SUBMISSIONS:
        components[submission] |= {
            "oneOf": branches, "discriminator": {"propertyName": "message", "mapping": mapping}
        }  # fmt: skip
    return spec


def component_name(message_type: str) -> str:
    """`purchase_order:new` as a component name, which may not hold a colon."""
    return message_type.replace(":", ".")


def _relocated(node: Any, name: str) -> Any:
    """A copy of a subschema of type `name`'s schema that works from inside the components."""
    if isinstance(node, list):
        return [_relocated(item, name) for item in node]
    if not isinstance(node, dict):
        return node
    moved = {key: _relocated(value, name) for key, value in node.items() if key not in DROPPED}
    ref = moved.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        target = ref.removeprefix("#").removeprefix("/$defs/")
        moved["$ref"] = f"#/components/schemas/{name}." + (target or "payload")
    return _bounded(moved)


ANY_OF_THESE = ("$ref", "const", "enum", "allOf", "anyOf", "oneOf", "not")


def _bounded(node: dict[str, Any]) -> dict[str, Any]:
    """`node` refusing, as the gateway does, integers past 64 bits wherever it allows a number."""
    if "type" not in node:
        return node if any(key in node for key in ANY_OF_THESE) else node | JSON_VALUE
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    if "integer" in kinds or "number" in kinds:
        low, high = INT64_RANGE
        node["minimum"] = max(node.get("minimum", low), low)
        node["maximum"] = min(node.get("maximum", high), high)
    if "object" in kinds:
        node.setdefault("additionalProperties", JSON_VALUE)
    if "array" in kinds:
        node.setdefault("items", JSON_VALUE)
    return node
