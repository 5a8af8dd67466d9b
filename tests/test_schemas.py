"""The schema catalogue: every shipped schema's examples, the error format, bad schema files.

The shipped types must carry examples, documented samples with their sources among them; a
schema a user adds to the directory (the README's loyalty:points:added) needs none."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrator.schemas import SchemaCatalogue, SchemaFileError
from tests.conftest import STORE

CATALOGUE = SchemaCatalogue.load(Path("schemas"))
SHIPPED = {
    "product:new", "product:updated", "order:new", "order:updated", "order:canceled",
    "order:payment:captured", "shipment:ready", "shipment:confirm", "stock:change", "stock:actual",
    "user:new", "user:updated", "payment:new", "payment:capture", "notification:info",
    "notification:warn", "notification:error", "purchase_order:new", "purchase_order:received",
    "purchase_order:confirm", "cart:new", "taxon:new", "email:send", "hub:poll",
}  # fmt: skip
VALID = [
    (s.message_type, source, example)
    for s in CATALOGUE
    for example, source in zip(
        s.document.get("examples", []),
        s.document.get("x-sources") or ["added to the directory"] * len(s.document.get("examples", [])),
        strict=True,
    )
]
INVALID = [
    (s.message_type, i, e) for s in CATALOGUE for i, e in enumerate(s.document.get("x-invalid-examples", []))
]
WARNED = [
    (s.message_type, i, e) for s in CATALOGUE for i, e in enumerate(s.document.get("x-warned-examples", []))
]


def message(message_type: str, payload: object) -> dict:
    return {"message": message_type, "store_id": STORE, "payload": payload}


def test_every_shipped_schema_is_documented_with_examples_and_their_sources() -> None:
    assert {s.message_type for s in CATALOGUE} >= SHIPPED
    for schema in (s for s in CATALOGUE if s.message_type in SHIPPED):
        document = schema.document
        assert document.get("title") and document.get("description"), schema.message_type
        assert len(document["x-sources"]) == len(document["examples"]) >= 1, schema.message_type
        assert len(document["x-invalid-examples"]) >= 2, schema.message_type
    documented = [source for _, source, _ in VALID if source.startswith("spree/spree@")]
    # the 120 samples of catalogued types found in the Spree guides: all but three fragments whose
    # elisions dropped the order itself, and a body Exact Target gets after a preprocessor rewrote it
    assert len(documented) == 120


@pytest.mark.parametrize(("message_type", "source", "payload"), VALID, ids=[f"{t} {s}" for t, s, _ in VALID])
def test_valid_examples_pass(message_type: str, source: str, payload: dict) -> None:
    assert CATALOGUE.check(message(message_type, payload)).errors == []


@pytest.mark.parametrize(
    ("message_type", "index", "example"), INVALID, ids=[f"{t}-{i}" for t, i, _ in INVALID]
)
def test_invalid_examples_fail_with_the_documented_errors(
    message_type: str, index: int, example: dict
) -> None:
    errors = CATALOGUE.check(message(message_type, example["payload"])).errors
    assert [{"path": e["path"], "rule": e["rule"]} for e in errors] == example["errors"]
    assert all(e["message"] for e in errors)


@pytest.mark.parametrize(("message_type", "index", "example"), WARNED, ids=[f"{t}-{i}" for t, i, _ in WARNED])
def test_warned_examples_pass_with_the_documented_warnings(
    message_type: str, index: int, example: dict
) -> None:
    errors, warnings = CATALOGUE.check(message(message_type, example["payload"]))
    assert errors == []
    assert [{"path": w["path"], "rule": w["rule"]} for w in warnings] == example["warnings"]
    assert all(w["message"] for w in warnings)


def test_warning_sentences() -> None:
    payload = {"order": {"email": None, "placed_on": "01/01/2013", "line_items": [{"quantity": 1}]}}
    assert CATALOGUE.check(message("order:cancel", payload)) == (
        [],
        [
            {"path": "/payload/order/email", "rule": "type", "message": "must be an email address, got null"},
            {"path": "/payload/order/line_items/0/sku", "rule": "required", "message": "is recommended"},
            {"path": "/payload/order/number", "rule": "required", "message": "is recommended"},
            {
                "path": "/payload/order/placed_on",
                "rule": "pattern",
                "message": 'must be an ISO 8601 date-time, got "01/01/2013"',
            },
            {"path": "/payload/order/status", "rule": "required", "message": "is recommended"},
        ],
    )


def test_errors_come_with_the_warnings_of_the_same_payload() -> None:
    payload = {
        "order": {"number": "R1", "placed_on": "soon", "line_items": [{"sku": "A", "quantity": "two"}]}
    }
    errors, warnings = CATALOGUE.check(message("order:new", payload))
    assert [(e["path"], e["rule"]) for e in errors] == [("/payload/order/line_items/0/quantity", "type")]
    assert [(w["path"], w["rule"]) for w in warnings] == [
        ("/payload/order/email", "required"),
        ("/payload/order/placed_on", "pattern"),
    ]


def test_error_sentences() -> None:
    payload = {"order": {"number": "R1", "email": "x", "line_items": [{"sku": "A", "quantity": "two"}]}}
    assert CATALOGUE.check(message("order:new", payload)).errors == [
        {"path": "/payload/order/email", "rule": "pattern", "message": 'must be an email address, got "x"'},
        {
            "path": "/payload/order/line_items/0/quantity",
            "rule": "type",
            "message": 'must be an integer, got "two"',
        },
    ]


def test_errors_are_bounded() -> None:
    items = [{"quantity": "x"} for _ in range(100)]
    errors, warnings = CATALOGUE.check(
        message("order:new", {"order": {"number": "R", "email": "a@b.c", "line_items": items}})
    )
    assert len(errors) == 50
    assert 0 < len(warnings) <= 50


def test_no_schema_passes_unless_strict() -> None:
    doc = message("loyalty:points", {"anything": 1})
    assert CATALOGUE.check(doc) == ([], [])
    strict = SchemaCatalogue.load(Path("schemas"), strict=True)
    assert strict.check(doc).errors == [
        {"path": "/message", "rule": "schema", "message": "no schema for message type"}
    ]


def test_nested_type_path(tmp_path: Path) -> None:
    (tmp_path / "spree" / "order").mkdir(parents=True)
    (tmp_path / "spree" / "order" / "poll.json").write_text('{"type": "object", "required": ["target"]}')
    catalogue = SchemaCatalogue.load(tmp_path)
    assert "spree:order:poll" in catalogue
    assert catalogue.check(message("spree:order:poll", {})).errors[0]["path"] == "/payload/target"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "a schema must be a JSON object"),
        ('{"type": "objekt"}', "not a valid JSON Schema"),
        ('{"required": "sku"}', "not a valid JSON Schema"),
    ],
)
def test_bad_schema_file_is_named(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "order").mkdir()
    bad = tmp_path / "order" / "new.json"
    bad.write_text(content)
    with pytest.raises(SchemaFileError, match=f"{bad}: {problem}"):
        SchemaCatalogue.load(tmp_path)


def test_every_rule_reads_as_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "loyalty").mkdir()
    (tmp_path / "loyalty" / "points.json").write_text(
        """{
          "type": "object",
          "required": ["points", "tier"],
          "additionalProperties": false,
          "$defs": {"code": {"title": "a voucher code", "type": "string", "pattern": "^V[0-9]+$"}},
          "properties": {
            "points": {"type": "integer", "minimum": 1, "maximum": 100},
            "tier": {"enum": ["gold", "silver"]},
            "codes": {"type": "array", "items": {"$ref": "#/$defs/code"}, "maxItems": 2},
            "note": {"type": "string", "minLength": 1, "maxLength": 5},
            "kind": {"const": "bonus"},
            "extra": {"anyOf": [{"type": "null"}, {"type": "integer"}]}
          }
        }"""
    )
    catalogue = SchemaCatalogue.load(tmp_path)
    payload = {
        "points": 0,
        "tier": "bronze",
        "codes": ["V1", "X2", 3],
        "note": "",
        "kind": "malus",
        "extra": {"b": 1, "a": 2},
        "surprise": True,
    }
    assert catalogue.check(message("loyalty:points", payload)).errors == [
        {
            "path": "/payload",
            "rule": "additionalProperties",
            "message": "has properties the schema does not allow",
        },
        {"path": "/payload/codes", "rule": "maxItems", "message": "must have at most 2 items, got 3"},
        {"path": "/payload/codes/1", "rule": "pattern", "message": 'must be a voucher code, got "X2"'},
        {"path": "/payload/codes/2", "rule": "type", "message": "must be a voucher code, got 3"},
        {
            "path": "/payload/extra",
            "rule": "anyOf",
            "message": 'matches none of the allowed forms, got {"b":1,"a":2}',
        },
        {"path": "/payload/kind", "rule": "const", "message": 'must be "bonus", got "malus"'},
        {"path": "/payload/note", "rule": "minLength", "message": "must not be empty"},
        {"path": "/payload/points", "rule": "minimum", "message": "must be >= 1, got 0"},
        {
            "path": "/payload/tier",
            "rule": "enum",
            "message": 'must be one of ["gold","silver"], got "bronze"',
        },
    ]
    assert catalogue.check(message("loyalty:points", {"points": 101})).errors == [
        {"path": "/payload/points", "rule": "maximum", "message": "must be <= 100, got 101"},
        {"path": "/payload/tier", "rule": "required", "message": "is required"},
    ]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ('{"not": {"x-severity": "warning", "type": "null"}}', "x-severity belongs on members of allOf"),
        ('{"oneOf": [{"type": "string"}, {"x-severity": "warning", "pattern": "^a"}]}', "x-severity belongs"),
        (
            '{"allOf": [{"x-severity": "warn", "required": ["a"]}]}',
            "x-severity must be 'warning', got 'warn'",
        ),
    ],
)
def test_a_warning_where_dropping_it_would_not_loosen_is_refused(
    tmp_path: Path, schema: str, problem: str
) -> None:
    (tmp_path / "loyalty").mkdir()
    (tmp_path / "loyalty" / "points.json").write_text(schema)
    with pytest.raises(SchemaFileError, match=f"not a valid JSON Schema: {problem}"):
        SchemaCatalogue.load(tmp_path)


def test_warnings_nested_in_a_marked_subschema_read_as_recommendations(tmp_path: Path) -> None:
    (tmp_path / "loyalty").mkdir()
    (tmp_path / "loyalty" / "points.json").write_text(
        '{"type": "object", "properties": {"o": {"type": "object"}},'
        ' "allOf": [{"x-severity": "warning", "properties": {"o": {"required": ["k"]}}}]}'
    )
    catalogue = SchemaCatalogue.load(tmp_path)
    assert catalogue.check(message("loyalty:points", {"o": {}})) == (
        [],
        [{"path": "/payload/o/k", "rule": "required", "message": "is recommended"}],
    )
    assert catalogue.check(message("loyalty:points", {"o": 1})).errors == [
        {"path": "/payload/o", "rule": "type", "message": "must be an object, got 1"}
    ]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            '{"order:update": "order:updated", "order:upd": "order:update"}',
            "order:upd is an alias of order:update, itself an alias",
        ),
        ('{"order:update": "order:lost"}', "order:update is an alias of 'order:lost', which has no schema"),
        ('{"order:new": "order:updated"}', "order:new has a schema of its own"),
        ('{"Order Update": "order:updated"}', "'Order Update' is not a message type"),
        ('["order:update"]', "must be an object of alias: message type"),
    ],
)  # fmt: skip
def test_a_bad_alias_table_is_named(tmp_path: Path, table: str, problem: str) -> None:
    (tmp_path / "order").mkdir()
    for name in ("new", "updated"):
        (tmp_path / "order" / f"{name}.json").write_text('{"type": "object"}')
    (tmp_path / "aliases.json").write_text(table)
    with pytest.raises(SchemaFileError, match=f"aliases.json: {problem}"):
        SchemaCatalogue.load(tmp_path)


def test_a_payload_that_is_not_an_object_is_told_so() -> None:
    assert CATALOGUE.check_payload("order:new", []).errors == [
        {"path": "/payload", "rule": "type", "message": "must be an object, got []"}
    ]
