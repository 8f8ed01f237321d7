"""Scoring one generated assistant turn against what its conversation expects.

The output is parsed by the project's own `tokenizer.output_parser.parse_output`, exactly as the server would parse
it (text after `<|assistant|>`, special tokens kept, stop token removed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scripts.tiny_model.conversations import Conversation
from tokenizer.output_parser import ParsedOutput, parse_output

_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def schema_errors(arguments: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """What makes `arguments` fail the tool's JSON schema (object of typed properties, required, enum, items)."""
    errors = []
    properties = parameters.get("properties", {})
    for key in parameters.get("required", []):
        if key not in arguments:
            errors.append(f"missing required {key!r}")
    for key, value in arguments.items():
        schema = properties.get(key)
        if schema is None:
            errors.append(f"unknown argument {key!r}")
            continue
        errors += _value_errors(key, value, schema)
    return errors


def _value_errors(key: str, value: Any, schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    allowed = _JSON_TYPES.get(kind, (object,))
    if isinstance(value, bool) and kind in ("integer", "number"):
        return [f"{key}: boolean where {kind} expected"]
    if not isinstance(value, allowed):
        return [f"{key}: {type(value).__name__} where {kind} expected"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{key}: {value!r} not in enum {schema['enum']}"]
    if kind == "array" and "items" in schema:
        return [e for i, item in enumerate(value) for e in _value_errors(f"{key}[{i}]", item, schema["items"])]
    return []


@dataclass(frozen=True)
class TurnScore:
    kind: str  # the conversation's kind
    thinking: bool  # the template switch of the request
    thinking_ok: bool  # reasoning present with thinking on, absent with thinking off
    calls_expected: int  # calls the turn should make (0: answer without calling)
    calls_ok: bool  # right number of calls, right names in order, every call valid for its schema
    calls_exact: bool  # calls_ok and every argument equal to the expected value
    answer_ok: bool | None  # arithmetic: the content's last number is the result; echo: the content is the text
    # verbatim; None for other kinds
    problems: tuple[str, ...]  # why a check failed, for the report


def score_turn(conv: Conversation, output: str) -> TurnScore:
    parsed = parse_output(output, conv.tools or None, thinking=conv.enable_thinking)
    problems: list[str] = []
    if conv.enable_thinking:
        thinking_ok = bool(parsed.reasoning_content)
    else:
        thinking_ok = parsed.reasoning_content is None and "<think>" not in output
    if not thinking_ok:
        problems.append("thinking " + ("missing" if conv.enable_thinking else "present with thinking off"))
    calls_ok, calls_exact = _check_calls(conv, parsed, problems)
    answer_ok = None
    if conv.kind == "arithmetic":
        numbers = re.findall(r"-?\d+", parsed.content or "")
        answer_ok = bool(numbers) and int(numbers[-1]) == conv.expected["result"]
        if not answer_ok:
            problems.append(f"answer {parsed.content!r}, expected {conv.expected['result']}")
    if conv.kind == "echo":
        answer_ok = parsed.content == conv.expected["reply"].strip()
        if not answer_ok:
            problems.append(f"echo {parsed.content!r}, expected {conv.expected['reply']!r}")
    return TurnScore(conv.kind, conv.enable_thinking, thinking_ok, len(conv.expected["calls"]), calls_ok,
                     calls_exact, answer_ok, tuple(problems))


def _check_calls(conv: Conversation, parsed: ParsedOutput, problems: list[str]) -> tuple[bool, bool]:
    expected = conv.expected["calls"]
    got = parsed.tool_calls
    if len(got) != len(expected):
        problems.append(f"{len(got)} calls, expected {len(expected)}")
        return False, False
    schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in conv.tools}
    ok = exact = True
    for call, want in zip(got, expected):
        if call.name != want["name"]:
            problems.append(f"called {call.name!r}, expected {want['name']!r}")
            ok = exact = False
            continue
        arguments = call.arguments_dict()
        errors = schema_errors(arguments, schemas.get(call.name, {}))
        if errors:
            problems.append(f"{call.name}: " + "; ".join(errors))
            ok = False
        if arguments != want["arguments"]:
            problems.append(f"{call.name}: arguments {arguments} != {want['arguments']}")
            exact = False
    return ok, ok and exact
