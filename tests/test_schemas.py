"""The schema catalogue: every shipped schema's examples, the error format, bad schema files."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrator.schemas import SchemaCatalogue, SchemaFileError
from tests.conftest import STORE

CATALOGUE = SchemaCatalogue.load(Path("schemas"))
VALID = [(s.message_type, i, e) for s in CATALOGUE for i, e in enumerate(s.document["examples"])]
INVALID = [(s.message_type, i, e) for s in CATALOGUE for i, e in enumerate(s.document["x-invalid-examples"])]


def message(message_type: str, payload: object) -> dict:
    return {"message": message_type, "store_id": STORE, "payload": payload}


def test_every_schema_is_documented_with_examples() -> None:
    for schema in CATALOGUE:
        assert schema.document.get("title"), schema.message_type
        assert schema.document.get("description"), schema.message_type
        assert len(schema.document["examples"]) >= 1, schema.message_type
        assert len(schema.document["x-invalid-examples"]) >= 2, schema.message_type


@pytest.mark.parametrize(("message_type", "index", "payload"), VALID, ids=[f"{t}-{i}" for t, i, _ in VALID])
def test_valid_examples_pass(message_type: str, index: int, payload: dict) -> None:
    assert CATALOGUE.errors(message(message_type, payload)) == []


@pytest.mark.parametrize(
    ("message_type", "index", "example"), INVALID, ids=[f"{t}-{i}" for t, i, _ in INVALID]
)
def test_invalid_examples_fail_with_the_documented_errors(
    message_type: str, index: int, example: dict
) -> None:
    errors = CATALOGUE.errors(message(message_type, example["payload"]))
    assert [{"path": e["path"], "rule": e["rule"]} for e in errors] == example["errors"]
    assert all(e["message"] for e in errors)


def test_error_sentences() -> None:
    payload = {"order": {"number": "R1", "email": "x", "line_items": [{"sku": "A", "quantity": "two"}]}}
    assert CATALOGUE.errors(message("order:new", payload)) == [
        {"path": "/payload/order/email", "rule": "pattern", "message": 'must be an email address, got "x"'},
        {
            "path": "/payload/order/line_items/0/quantity",
            "rule": "type",
            "message": 'must be an integer, got "two"',
        },
    ]


def test_errors_are_bounded() -> None:
    items = [{"quantity": "x"} for _ in range(100)]
    errors = CATALOGUE.errors(
        message("order:new", {"order": {"number": "R", "email": "a@b.c", "line_items": items}})
    )
    assert len(errors) == 50


def test_no_schema_passes_unless_strict() -> None:
    doc = message("loyalty:points", {"anything": 1})
    assert CATALOGUE.errors(doc) == []
    strict = SchemaCatalogue.load(Path("schemas"), strict=True)
    assert strict.errors(doc) == [
        {"path": "/message", "rule": "schema", "message": "no schema for message type"}
    ]


def test_nested_type_path(tmp_path: Path) -> None:
    (tmp_path / "spree" / "order").mkdir(parents=True)
    (tmp_path / "spree" / "order" / "poll.json").write_text('{"type": "object", "required": ["target"]}')
    catalogue = SchemaCatalogue.load(tmp_path)
    assert "spree:order:poll" in catalogue
    assert catalogue.errors(message("spree:order:poll", {}))[0]["path"] == "/payload/target"


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
    assert catalogue.errors(message("loyalty:points", payload)) == [
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
    assert catalogue.errors(message("loyalty:points", {"points": 101})) == [
        {"path": "/payload/points", "rule": "maximum", "message": "must be <= 100, got 101"},
        {"path": "/payload/tier", "rule": "required", "message": "is required"},
    ]
