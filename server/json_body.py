"""Request bodies as JSON: `parse_json_body(raw)` decodes, or raises a 400 `APIError` naming what is wrong.

Beyond malformed JSON and invalid UTF-8 it refuses two things `json.loads` accepts but later stages cannot take:
- nesting deeper than MAX_JSON_DEPTH (a 1000-deep body makes `json.loads` itself, or the template's `tojson`,
  raise RecursionError: a 500);
- lone UTF-16 surrogates written as `\\ud800`-style escapes (not Unicode text: the tokenizer would silently
  replace them, so the model would see another prompt than the one sent).
"""

from __future__ import annotations

import json
import re
from typing import Any

from server.errors import bad_request

MAX_JSON_DEPTH = 128  # arrays/objects inside each other; real tool schemas nest a few dozen levels at most
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \ud800-\udfff: a pair or a lone half


def parse_json_body(raw: bytes) -> Any:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"Invalid JSON body: {exc}") from None
    except RecursionError:
        raise bad_request(f"Invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    check_json_value(value, check_strings=_SURROGATE_ESCAPE.search(raw) is not None)
    return value


def check_json_value(value: Any, check_strings: bool) -> None:
    """Depth (iteratively: no recursion on hostile input) and, when `check_strings`, lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
            if check_strings:
                stack.extend((key, depth) for key in item)
        elif isinstance(item, list):
            children = item
        else:
            if check_strings and isinstance(item, str) and not _is_unicode(item):
                raise bad_request("Invalid JSON body: a string holds a lone UTF-16 surrogate (not valid Unicode)")
            continue
        if depth > MAX_JSON_DEPTH:
            raise bad_request(f"Invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
