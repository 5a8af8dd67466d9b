"""The schema catalogue: one JSON Schema file per message type, compiled once at start-up.

Type `a:b` lives in `<dir>/a/b.json`, `spree:order:poll` in `<dir>/spree/order/poll.json`;
`<dir>/aliases.json` maps other names senders use (`order:update`) to the type they mean.
A subschema marked `"x-severity": "warning"` only warns: what it finds is reported, but the
message is accepted. A schema with warnings is therefore compiled twice, whole and without
them; a valid message passes the whole one at the first check, as before there were warnings.
The mark is allowed only where dropping the subschema loosens the schema (a member of `allOf`,
the schema of a property or of items), never under `not`, `anyOf`, `oneOf` or `if`.
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
from typing import Any, NamedTuple

import jsonschema
import jsonschema_rs
import orjson

from integrator.envelope import MAX_TYPE_LENGTH, MESSAGE_TYPE, envelope_errors
from integrator.errors import MAX_ERRORS, FieldError, field_error, json_pointer, json_type

DRAFT = jsonschema.Draft202012Validator
SEVERITY = "x-severity"
WARNING = "warning"
ALIASES_FILE = "aliases.json"


class SchemaFileError(Exception):
    """A schema file that cannot be used; the service refuses to start with it."""


class Verdict(NamedTuple):
    """What is wrong with a message: errors refuse it, warnings go along with it."""

    errors: list[FieldError]
    warnings: list[FieldError]


@dataclass(frozen=True, slots=True)
class Schema:
    message_type: str
    document: dict[str, Any]
    validator: jsonschema_rs.Validator  # errors and warnings
    refusals: dict[str, Any]  # the document without its warning subschemas; itself if it has none
    refusal_validator: jsonschema_rs.Validator  # `validator` if it has none

    @property
    def title(self) -> str:
        return str(self.document.get("title", self.message_type))

    @property
    def description(self) -> str:
        return str(self.document.get("description", ""))


class SchemaCatalogue:
    def __init__(
        self, schemas: dict[str, Schema], strict: bool = False, aliases: dict[str, str] | None = None
    ) -> None:
        self._schemas = schemas
        self.aliases = aliases or {}
        self._by_type = {**schemas, **{alias: schemas[meant] for alias, meant in self.aliases.items()}}
        self.strict = strict

    @classmethod
    def load(cls, directory: Path, strict: bool = False) -> SchemaCatalogue:
        """Load and compile every `*.json` under `directory`; a bad file raises SchemaFileError."""
        if not directory.is_dir():
            raise SchemaFileError(f"{directory}: schema directory does not exist")
        schemas = {}
        for path in sorted(directory.rglob("*.json")):
            if path == directory / ALIASES_FILE:
                continue
            message_type = ":".join(path.relative_to(directory).with_suffix("").parts)
            schemas[message_type] = _compile(path, message_type)
        return cls(schemas, strict, _aliases(directory / ALIASES_FILE, schemas))

    def __contains__(self, message_type: str) -> bool:
        """A type with a schema, or an alias of one."""
        return message_type in self._by_type

    def __getitem__(self, message_type: str) -> Schema:
        return self._by_type[message_type]

    def __iter__(self) -> Iterator[Schema]:
        return iter(self._schemas.values())

    @property
    def message_types(self) -> frozenset[str]:
        """Every type the catalogue checks, aliases included."""
        return frozenset(self._by_type)

    def check(self, doc: Any, *, stored: bool = False) -> Verdict:
        """Everything wrong with `doc` as a message: its envelope, then its payload's schema.

        `stored`: `doc` was read off a queue, so it must also carry its `message_id`.
        """
        if not isinstance(doc, dict):
            return Verdict([field_error("", "type", f"must be a JSON object, got {json_type(doc)}")], [])
        errors = envelope_errors(doc, stored=stored)
        if errors:
            return Verdict(errors, [])
        return self.check_payload(doc["message"], doc["payload"])

    def check_payload(self, message_type: str, payload: Any) -> Verdict:
        """What the schema of `message_type` (or of the type it is an alias of) finds in `payload`."""
        schema = self._by_type.get(message_type)
        if schema is None:
            if self.strict:
                return Verdict([field_error("/message", "schema", "no schema for message type")], [])
            return Verdict([], [])
        if schema.validator.is_valid(payload):
            return Verdict([], [])
        found = _describe(schema.document, schema.validator, payload)
        if schema.refusals is schema.document:
            return Verdict(found or [field_error("/payload", "schema", "does not match the schema")], [])
        if schema.refusal_validator.is_valid(payload):
            return Verdict([], found)
        errors = _describe(schema.refusals, schema.refusal_validator, payload) or [
            field_error("/payload", "schema", "does not match the schema")
        ]
        refused = {(e["path"], e["rule"]) for e in errors}
        return Verdict(errors, [w for w in found if (w["path"], w["rule"]) not in refused])


def _json_file(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SchemaFileError(f"{path}: not valid JSON: {exc}") from None


def _compile(path: Path, message_type: str) -> Schema:
    document = _json_file(path)
    if not isinstance(document, dict):
        raise SchemaFileError(f"{path}: a schema must be a JSON object")
    try:
        DRAFT.check_schema(document)
        refusals = without_warnings(document)
        validator = jsonschema_rs.validator_for(document, validate_formats=False)
        refusal_validator = validator
        if refusals is not document:
            refusal_validator = jsonschema_rs.validator_for(refusals, validate_formats=False)
    except (jsonschema.SchemaError, ValueError) as exc:
        message = exc.message if isinstance(exc, jsonschema.SchemaError) else str(exc)
        raise SchemaFileError(f"{path}: not a valid JSON Schema: {message}") from None
    return Schema(message_type, document, validator, refusals, refusal_validator)


LOOSENING = frozenset(
    {"allOf", "properties", "patternProperties", "additionalProperties", "items", "prefixItems"}
)
"""Keywords whose subschemas only add constraints: dropping one of them accepts more, never less."""
INVERTING = frozenset({"not", "anyOf", "oneOf", "if", "then", "else", "contains", "propertyNames"})
"""Keywords under which dropping a subschema could refuse what it accepted."""
MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
"""Keywords whose value maps names to subschemas."""
SUBSCHEMAS = LOOSENING | INVERTING | MAPS | {"unevaluatedItems", "unevaluatedProperties"}


def without_warnings(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with every subschema marked as a warning made empty, which accepts anything,
    or `document` itself if it has none. The other subschemas keep their places, so an error's
    location still points into `document`. A mark where it would not loosen raises ValueError."""
    found = False

    def strip(node: Any, keyword: str, inverted: bool) -> Any:
        nonlocal found
        if isinstance(node, list):
            return [strip(item, keyword, inverted) for item in node]
        if not isinstance(node, dict):
            return node
        if SEVERITY in node:
            if node[SEVERITY] != WARNING:
                raise ValueError(f"{SEVERITY} must be {WARNING!r}, got {node[SEVERITY]!r}")
            if inverted or keyword not in LOOSENING:
                raise ValueError(f"{SEVERITY} belongs on members of allOf and on property or item schemas")
            found = True
            return {}
        stripped = {}
        for key, value in node.items():
            if key in MAPS and isinstance(value, dict):
                stripped[key] = {name: strip(sub, key, inverted) for name, sub in value.items()}
            elif key in SUBSCHEMAS:
                stripped[key] = strip(value, key, inverted or key in INVERTING)
            else:
                stripped[key] = value  # not a subschema: enum, const, examples, annotations
        return stripped

    stripped = strip(document, "allOf", False)
    return stripped if found else document


def _aliases(path: Path, schemas: dict[str, Schema]) -> dict[str, str]:
    """The alias table `{alias: type}`, if the directory has one; each alias must name a schema."""
    if not path.exists():
        return {}
    table = _json_file(path)
    if not isinstance(table, dict):
        raise SchemaFileError(f"{path}: must be an object of alias: message type")
    for alias, meant in table.items():
        if len(alias) > MAX_TYPE_LENGTH or not MESSAGE_TYPE.fullmatch(alias):
            raise SchemaFileError(f"{path}: {alias!r} is not a message type in colon notation")
        if alias in schemas:
            raise SchemaFileError(f"{path}: {alias} has a schema of its own")
        if meant in table:
            raise SchemaFileError(f"{path}: {alias} is an alias of {meant}, itself an alias: name the type")
        if not isinstance(meant, str) or meant not in schemas:
            raise SchemaFileError(f"{path}: {alias} is an alias of {meant!r}, which has no schema")
    return table


def _describe(document: dict[str, Any], validator: jsonschema_rs.Validator, payload: Any) -> list[FieldError]:
    errors: dict[tuple[str, str], FieldError] = {}
    for error in islice(validator.iter_errors(payload), MAX_ERRORS):
        for found in _field_errors(document, payload, error):
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
        recommended = any(
            isinstance(node, dict) and node.get(SEVERITY) == WARNING
            for node in (_at(document, location[:depth]) for depth in range(len(location) + 1))
        )
        needed = "is recommended" if recommended else "is required"
        return [
            field_error(f"{path}/{name}", "required", needed)
            for name in expected or ()
            if isinstance(value, dict) and name not in value
        ]
    title = subschema.get("title") if location else None  # the root's title names the type
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
    """`value` as JSON, cut to `limit`; a large container is cut first, so that describing an
    error never costs as much as the value is large."""
    if isinstance(value, list) and len(value) > limit:
        value = value[:limit]
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(islice(value.items(), limit))
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
