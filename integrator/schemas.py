"""The schema catalogue: one JSON Schema file per message type, compiled once at start-up.

Type `a:b` lives in `<dir>/a/b.json`, `spree:order:poll` in `<dir>/spree/order/poll.json`.
`jsonschema` checks each schema file at start-up; a compiled Rust validator (jsonschema-rs)
checks messages and names every error of one that fails. Describing failures that way takes a
twelfth to a thirtieth of the time that walking the message again with `jsonschema` took
(0.05 rather than 1.7 ms for the benchmark's invalid order), so invalid messages cost the
validator about what valid ones do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import orjson

from integrator.envelope import envelope_errors
from integrator.errors import MAX_ERRORS, FieldError, field_error, json_pointer, json_type

DRAFT = jsonschema.Draft202012Validator


class SchemaFileError(Exception):
    """A schema file that cannot be used; the service refuses to start with it."""


@dataclass(frozen=True, slots=True)
class Schema:
    message_type: str
    document: dict[str, Any]
    validator: jsonschema_rs.Validator

    @property
    def title(self) -> str:
        return str(self.document.get("title", self.message_type))

    @property
    def description(self) -> str:
        return str(self.document.get("description", ""))


class SchemaCatalogue:
    def __init__(self, schemas: dict[str, Schema], strict: bool = False) -> None:
        self._schemas = schemas
        self.strict = strict

    @classmethod
    def load(cls, directory: Path, strict: bool = False) -> SchemaCatalogue:
        """Load and compile every `*.json` under `directory`; a bad file raises SchemaFileError."""
        if not directory.is_dir():
            raise SchemaFileError(f"{directory}: schema directory does not exist")
        schemas = {}
        for path in sorted(directory.rglob("*.json")):
            message_type = ":".join(path.relative_to(directory).with_suffix("").parts)
            schemas[message_type] = _compile(path, message_type)
        return cls(schemas, strict)

    def __contains__(self, message_type: str) -> bool:
        return message_type in self._schemas

    def __getitem__(self, message_type: str) -> Schema:
        return self._schemas[message_type]

    def __iter__(self) -> Iterator[Schema]:
        return iter(self._schemas.values())

    @property
    def message_types(self) -> frozenset[str]:
        return frozenset(self._schemas)

    def errors(self, doc: Any, *, stored: bool = False) -> list[FieldError]:
        """Every reason `doc` is not a valid message: its envelope, then its payload's schema."""
        if not isinstance(doc, dict):
            return [field_error("", "type", f"must be a JSON object, got {json_type(doc)}")]
        errors = envelope_errors(doc, stored=stored)
        if errors:
            return errors
        schema = self._schemas.get(doc["message"])
        if schema is None:
            if self.strict:
                return [field_error("/message", "schema", "no schema for message type")]
            return []
        payload = doc["payload"]
        if schema.validator.is_valid(payload):
            return []
        return _describe(schema, payload) or [field_error("/payload", "schema", "does not match the schema")]


def _compile(path: Path, message_type: str) -> Schema:
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SchemaFileError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SchemaFileError(f"{path}: a schema must be a JSON object")
    try:
        DRAFT.check_schema(document)
        validator = jsonschema_rs.validator_for(document, validate_formats=False)
    except (jsonschema.SchemaError, ValueError) as exc:
        message = exc.message if isinstance(exc, jsonschema.SchemaError) else str(exc)
        raise SchemaFileError(f"{path}: not a valid JSON Schema: {message}") from None
    return Schema(message_type, document, validator)


def _describe(schema: Schema, payload: Any) -> list[FieldError]:
    errors: dict[tuple[str, str], FieldError] = {}
    for error in islice(schema.validator.iter_errors(payload), MAX_ERRORS):
        for found in _field_errors(schema.document, payload, error):
            errors.setdefault((found["path"], found["rule"]), found)
    return sorted(errors.values(), key=lambda e: (e["path"], e["rule"]))[:MAX_ERRORS]


def _field_errors(
    document: dict[str, Any], payload: Any, error: jsonschema_rs.ValidationError
) -> list[FieldError]:
    path = "/payload" + json_pointer(error.instance_path)
    *location, rule = map(str, error.schema_path)  # where the failing keyword sits, past any $ref
    subschema = _at(document, location)
    subschema = subschema if isinstance(subschema, dict) else {}
    expected = subschema.get(rule)
    # The value as sent: error.instance is a copy whose objects have their keys sorted.
    value = _at(payload, error.instance_path)
    if rule == "required":
        return [
            field_error(f"{path}/{name}", "required", "is required")
            for name in expected or ()
            if isinstance(value, dict) and name not in value
        ]
    title = subschema.get("title")
    if title and rule in ("type", "pattern"):
        # a subschema titled "an email address" reads better than its regex
        return [field_error(path, rule, f"must be {title}, got {_show(value)}")]
    return [field_error(path, rule, _sentence(rule, expected, value, error.message))]


def _at(node: Any, location: Iterable[str | int]) -> Any:
    """What `location` names inside `node`, or None: describing an error must never fail."""
    for part in location:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return node


def _sentence(rule: str, expected: Any, value: Any, fallback: str) -> str:
    got = _show(value)
    match rule:
        case "type":
            names = expected if isinstance(expected, list) else [expected]
            return f"must be {' or '.join(_a(n) for n in names)}, got {got}"
        case "pattern":
            return f"must match {expected}, got {got}"
        case "enum":
            return f"must be one of {_show(expected)}, got {got}"
        case "const":
            return f"must be {_show(expected)}, got {got}"
        case "minimum" | "exclusiveMinimum" | "maximum" | "exclusiveMaximum":
            op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
            return f"must be {op[rule]} {expected}, got {got}"
        case "minLength":
            return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
        case "maxLength":
            return f"must be at most {expected} characters long"
        case "minItems":
            return f"must have at least {expected} items, got {len(value)}"
        case "maxItems":
            return f"must have at most {expected} items, got {len(value)}"
        case "anyOf" | "oneOf":
            return f"matches none of the allowed forms, got {got}"
        case "additionalProperties" | "unevaluatedProperties":
            return "has properties the schema does not allow"
    return fallback


def _a(type_name: str) -> str:
    if type_name == "null":
        return "null"
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _show(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
