"""Typing raw `<arg_value>` text by the tool's JSON schema (reference rule 5.3).

The template writes a string value raw and every other value as JSON, so `"3"` and `3` render alike: the type
comes from `tools[name].function.parameters.properties[key]`.

- only `string` allowed: the raw text, byte for byte (no strip, no decoding, quotes kept);
- `string` + `null`: the bare text `null` (after strip) is null, anything else the raw text;
- `string` + other types: JSON of an allowed non-string type, else the raw text;
- only non-string types: JSON of an allowed type; a JSON string holding a number for integer/number; a Python
  literal of an allowed type (`True`, `['a', 'b']`); else the raw text, left for the client to reject;
- no schema for the key (or an unknown function): JSON if the stripped text parses, else the raw text, with no
  Python-literal fallback (`123_456` and `007` stay strings).

Every typed value is plain JSON data (str-keyed dicts, lists, finite numbers), so `json.dumps` of the arguments
is valid JSON that decodes back to the same object: NaN/Infinity and overflowing floats are never accepted.
"""

from __future__ import annotations

import ast
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
# ast.literal_eval is only tried on short texts: it is a full Python parser (deep nesting, huge literals).
_MAX_LITERAL_CHARS = 10_000

_NO_VALUE = object()
_STRING_ONLY = frozenset({"string"})


def tool_function(tool: Any) -> Mapping[str, Any] | None:
    """The function object of a request tool: nested in Chat Completions, the tool itself in the Responses API."""
    if not isinstance(tool, Mapping):
        return None
    function = tool.get("function")
    return function if isinstance(function, Mapping) else tool


def json_type_of(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def schema_types(schema: Any) -> frozenset[str] | None:
    """The JSON types a property schema allows, or None when it does not constrain the type."""
    if not isinstance(schema, Mapping):
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        declared = [declared]
    if isinstance(declared, list):
        types = frozenset(t for t in declared if isinstance(t, str) and t in JSON_TYPES)
        return types or None
    branches = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(branches, list) and branches:
        union: set[str] = set()
        for branch in branches:
            branch_types = schema_types(branch)
            if branch_types is None:  # an unconstrained branch admits anything
                return None
            union |= branch_types
        return frozenset(union)
    values = schema["enum"] if isinstance(schema.get("enum"), list) else None
    if values is None and "const" in schema:
        values = [schema["const"]]
    if values:
        types = frozenset(t for t in map(json_type_of, values) if t is not None)
        return types or None
    return None


def type_value(raw: str, types: frozenset[str] | None) -> Any:
    """The argument value for the raw text between `<arg_value>` and `</arg_value>`."""
    stripped = raw.strip()
    if types is None:
        decoded = _json_value(stripped)
        return raw if decoded is _NO_VALUE else decoded
    if "string" in types:
        if types == _STRING_ONLY:
            return raw
        decoded = _json_value(stripped)
        if decoded is not _NO_VALUE and not isinstance(decoded, str) and _is_allowed(decoded, types):
            return decoded
        return raw
    decoded = _json_value(stripped)
    if decoded is not _NO_VALUE and _is_allowed(decoded, types):
        return decoded
    if isinstance(decoded, str) and types & {"integer", "number"}:
        number = _json_value(decoded.strip())
        if isinstance(number, (int, float)) and not isinstance(number, bool) and _is_allowed(number, types):
            return number
    literal = _python_literal(stripped)
    if literal is not _NO_VALUE and _is_allowed(literal, types):
        return literal
    return raw


class ToolSchemas:
    """Property types of the request's tools, looked up by function name and argument key."""

    def __init__(self, tools: Sequence[Any] | None) -> None:
        self._properties: dict[str, Mapping[str, Any]] = {}
        for tool in tools or ():
            function = tool_function(tool)
            name = function.get("name") if function is not None else None
            if function is None or not isinstance(name, str) or name in self._properties:
                continue
            parameters = function.get("parameters")
            properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
            self._properties[name] = properties if isinstance(properties, Mapping) else {}
        self.is_empty = not tools

    def types_of(self, function_name: str, key: str) -> frozenset[str] | None:
        properties = self._properties.get(function_name)
        if properties is None or key not in properties:
            return None
        return schema_types(properties[key])

    def is_string_only(self, function_name: str, key: str) -> bool:
        return self.types_of(function_name, key) == _STRING_ONLY

    def type_arguments(self, function_name: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Typed arguments from raw (key, value) pairs in call order; a duplicate key keeps its last value."""
        return {key: type_value(raw, self.types_of(function_name, key)) for key, raw in pairs}


def _is_allowed(value: Any, types: frozenset[str]) -> bool:
    kind = json_type_of(value)
    return kind in types or (kind == "integer" and "number" in types)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("overflowing float")
    return value


def _json_value(text: str) -> Any:
    """json.loads without NaN/Infinity (not JSON, and json.dumps would write them back); _NO_VALUE on failure."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # also covers integers longer than Python's digit limit
        return _NO_VALUE


def _python_literal(text: str) -> Any:
    if not text or len(text) > _MAX_LITERAL_CHARS:
        return _NO_VALUE
    try:
        # NOTE: catch_warnings is process-global; literal_eval warns on invalid escapes such as '\d'.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE
    return value if _is_plain_json(value) else _NO_VALUE


def _is_plain_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_plain_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain_json(item) for key, item in value.items())
    return False  # tuples, sets, bytes, complex numbers
