"""Metric names a PromQL expression reads, and Grafana variables replaced by concrete values.

Not a PromQL parser: enough for dashboard queries (selectors, functions, aggregations with by/without, vector
matching). `promtool check rules` checks the full syntax where promtool is installed.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                       "unless", "offset", "inf", "nan", "atan2"})
_GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]")


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (functions, keywords and label names excluded)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers (strings are gone, so no brace hides inside one)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # range and subquery windows
    text = _OFFSET.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def substitute_variables(expr: str, values: dict[str, str]) -> str:
    """Replaces $name, ${name} and [[name]]; raises KeyError naming a variable without a value."""
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _GRAFANA_VARIABLE.sub(value, expr)
