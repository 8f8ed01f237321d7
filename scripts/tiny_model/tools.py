"""The tools of the corpus: OpenAI tool objects, a deterministic fake executor, and how answers quote the results.

Every tool exercises a part of the GLM-4.5 argument format: `get_weather` an enum and an integer, `calculator` a raw
expression string, `convert_units` a JSON number, `web_search` an integer and a boolean, `write_file` code with
quotes, backslashes and newlines, `send_email` an array of strings and a boolean. Descriptions are short on purpose:
the tools block is part of every tool prompt and dominates the training cost.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": _tool(
        "get_weather",
        "Current weather for a city.",
        {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        ["city"],
    ),
    "calculator": _tool("calculator", "Evaluate a math expression.", {"expression": {"type": "string"}}, ["expression"]),
    "convert_units": _tool(
        "convert_units",
        "Convert a value between units.",
        {"value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
        ["value", "from_unit", "to_unit"],
    ),
    "web_search": _tool(
        "web_search",
        "Search the web.",
        {"query": {"type": "string"}, "max_results": {"type": "integer"}, "safe_search": {"type": "boolean"}},
        ["query"],
    ),
    "write_file": _tool(
        "write_file",
        "Write text to a file.",
        {"path": {"type": "string"}, "content": {"type": "string"}, "overwrite": {"type": "boolean"}},
        ["path", "content"],
    ),
    "send_email": _tool(
        "send_email",
        "Send an email.",
        {
            "to": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"},
            "body": {"type": "string"},
            "urgent": {"type": "boolean"},
        },
        ["to", "subject", "body"],
    ),
}

TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)

_SAFE_MATH = {"sqrt": math.sqrt, "round": round, "abs": abs}


def evaluate_expression(expression: str) -> int | float:
    """Only for the corpus' own fixed expressions (lexicon.EXPRESSIONS); never for user input."""
    value = eval(expression, {"__builtins__": {}}, _SAFE_MATH)  # noqa: S307 - constants of this package only
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return round(value, 4) if isinstance(value, float) else value


_LINEAR = {  # unit -> (family, factor to the family's base unit)
    "km": ("len", 1000.0), "mi": ("len", 1609.344), "m": ("len", 1.0), "ft": ("len", 0.3048),
    "kg": ("mass", 1000.0), "lb": ("mass", 453.59237), "g": ("mass", 1.0), "oz": ("mass", 28.349523),
    "l": ("vol", 1000.0), "gal": ("vol", 3785.41), "ml": ("vol", 1.0), "cup": ("vol", 240.0),
}


def convert(value: float, from_unit: str, to_unit: str) -> float:
    if from_unit in ("C", "F", "K"):
        celsius = {"C": value, "F": (value - 32) * 5 / 9, "K": value - 273.15}[from_unit]
        out = {"C": celsius, "F": celsius * 9 / 5 + 32, "K": celsius + 273.15}[to_unit]
    else:
        out = value * _LINEAR[from_unit][1] / _LINEAR[to_unit][1]
    return round(out, 2)


def response_json(payload: dict[str, Any]) -> str:
    """Tool results are sent back as compact-ish JSON text, as most clients do."""
    return json.dumps(payload, ensure_ascii=False)
