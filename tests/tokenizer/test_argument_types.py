"""Typing raw argument text by JSON schema (reference rule 5.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokenizer.argument_types import ToolSchemas, schema_types, type_value

STRING = frozenset({"string"})


@pytest.mark.parametrize(
    ("schema", "types"),
    [
        ({"type": "string"}, {"string"}),
        ({"type": ["integer", "null"]}, {"integer", "null"}),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"integer", "string"}),
        ({"oneOf": [{"type": "boolean"}, {"enum": [None]}]}, {"boolean", "null"}),
        ({"enum": ["a", 1, 2.5, True]}, {"string", "integer", "number", "boolean"}),
        ({"const": "x"}, {"string"}),
        ({"type": "str"}, None),  # unknown type names constrain nothing
        ({"anyOf": [{"type": "integer"}, {}]}, None),  # an unconstrained branch admits anything
        ({"description": "no type"}, None),
        ("not a schema", None),
    ],
)
def test_schema_types(schema: Any, types: set[str] | None) -> None:
    assert schema_types(schema) == (frozenset(types) if types is not None else None)


@pytest.mark.parametrize(
    ("raw", "types", "expected"),
    [
        # string only: raw, byte for byte
        ("  padded\n", {"string"}, "  padded\n"),
        ('"quoted"', {"string"}, '"quoted"'),
        ("\\u00e9", {"string"}, "\\u00e9"),
        # nullable string
        (" null ", {"string", "null"}, None),
        ("None", {"string", "null"}, "None"),
        ("[1]", {"string", "null"}, "[1]"),
        # string plus other types
        (" 42 ", {"integer", "string"}, 42),
        ("4.5", {"integer", "string"}, "4.5"),
        ('"42"', {"integer", "string"}, '"42"'),
        # non-string types
        ("1e5", {"number"}, 100000.0),
        ("123456789012345678901234567890", {"integer"}, 123456789012345678901234567890),
        ('"5"', {"integer"}, 5),
        ('"5.5"', {"integer"}, '"5.5"'),
        ("True", {"boolean"}, True),
        ("['a', 'b']", {"array"}, ["a", "b"]),
        ("{'a': (1, 2)}", {"object"}, "{'a': (1, 2)}"),  # tuples are not JSON
        ("{1: 2}", {"object"}, "{1: 2}"),  # non-string keys are not JSON
        ("123_456", {"integer"}, 123456),  # Python literal fallback, only for non-string types
        ("42 km/h", {"number"}, "42 km/h"),
        ("NaN", {"number"}, "NaN"),
        ("1e999", {"number"}, "1e999"),
        ("3", {"number"}, 3),
        ("3.0", {"integer"}, "3.0"),
        ("true", {"integer"}, "true"),
        ("null", {"null"}, None),
        # untyped: JSON if it parses, no Python literals
        ("007", None, "007"),
        ("123_456", None, "123_456"),
        (" true ", None, True),
        ('{"x": [1, null]}', None, {"x": [1, None]}),
        ("Infinity", None, "Infinity"),
        ("'single'", None, "'single'"),
        ("9" * 5000, None, "9" * 5000),  # beyond Python's int digit limit: kept as text
    ],
)
def test_type_value(raw: str, types: set[str] | None, expected: Any) -> None:
    got = type_value(raw, frozenset(types) if types is not None else None)
    assert json.dumps(got) == json.dumps(expected)  # type-exact: 1 vs 1.0 vs True


def test_tool_schemas_lookup() -> None:
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {"type": "string"}}}}},
        {"type": "function", "name": "flat", "parameters": {"properties": {"n": {"type": "integer"}}}},  # Responses API
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {"type": "integer"}}}}},
        "garbage",
        {"type": "function", "function": {"name": "no_params"}},
    ]
    schemas = ToolSchemas(tools)
    assert schemas.types_of("f", "a") == STRING  # the first definition of a name wins
    assert schemas.is_string_only("f", "a")
    assert schemas.types_of("flat", "n") == frozenset({"integer"})
    assert schemas.types_of("no_params", "x") is None
    assert schemas.types_of("unknown", "x") is None
    assert schemas.type_arguments("f", [("a", "1"), ("b", "1"), ("a", "2")]) == {"a": "2", "b": 1}
    assert ToolSchemas(None).is_empty and ToolSchemas([]).is_empty and not schemas.is_empty
