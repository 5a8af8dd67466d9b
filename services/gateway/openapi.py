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

from integrator.schemas import MAPS, SUBSCHEMAS, SchemaCatalogue
from services.gateway.body import INT64

TEMPLATE: dict[str, Any] = yaml.safe_load(
    resources.files("services.gateway").joinpath("openapi.yaml").read_text()
)
INT64_RANGE = INT64  # what body.py lets through
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
DROPPED = frozenset({"$schema", "$id", "$defs", "examples", "format"})  # and every x- annotation
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
        components |= _components(schema.refusals, component_name(schema.message_type))
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


def _components(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The components of one type's schema: `<name>.payload`, and `<name>-<def>` for each of its
    `$defs` (`<name>-<def>-<inner def>` for theirs)."""
    found = {f"{name}.payload": _relocated(schema, name)}

    def lift(defs: Any, path: list[str]) -> None:
        for def_name, subschema in defs.items() if isinstance(defs, dict) else ():
            found[_def_component(name, [*path, def_name])] = _relocated(subschema, name)
            if isinstance(subschema, dict):
                lift(subschema.get("$defs"), [*path, def_name])

    lift(schema.get("$defs"), [])
    return found


def _def_component(name: str, defs: list[str]) -> str:
    return "-".join([name, *defs])  # a message type has no "-", so no def name meets a type's


def _relocated(node: Any, name: str) -> Any:
    """A copy of a subschema of type `name`'s schema that works from inside the components: its
    references point at the lifted components, and it refuses integers past 64 bits."""
    if not isinstance(node, dict):
        return node  # true or false
    moved = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-"):
            continue
        if key in MAPS and isinstance(value, dict):
            moved[key] = {k: _relocated(v, name) for k, v in value.items()}
        elif key in SUBSCHEMAS and isinstance(value, list):
            moved[key] = [_relocated(v, name) for v in value]
        elif key in SUBSCHEMAS:
            moved[key] = _relocated(value, name)
        else:
            moved[key] = value
    if isinstance(ref := moved.get("$ref"), str) and ref.startswith("#"):
        moved["$ref"] = _reference(ref, name)
    return _bounded(moved)


def _reference(ref: str, name: str) -> str:
    """`#/$defs/a/$defs/b/...` of type `name`'s schema, as a pointer into the components."""
    parts = ref.removeprefix("#").split("/")[1:]
    defs = []
    while len(parts) >= 2 and parts[0] == "$defs":
        defs.append(parts[1])
        parts = parts[2:]
    base = _def_component(name, defs) if defs else f"{name}.payload"
    return f"#/components/schemas/{base}" + "".join("/" + part for part in parts)


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
