"""OpenAI chat messages -> the plain dicts a Hugging Face chat template expects.

What the wire format sends and the GLM-4.5 template cannot take as is:
- content as a list of parts: reduced to the concatenation of its text parts (other parts are dropped; the model
  is text-only). Tool results are flattened too, so one `tool` message renders one `<tool_response>` block
  (results are matched to calls by order only, so a result must never split into several blocks);
- role `developer`: treated as `system`;
- assistant `tool_calls[].function.arguments` as a JSON string: decoded to a mapping, because the template iterates
  its items (sgl-project/sglang#9489). Invalid JSON, or JSON that is not an object, raises `InvalidMessageError`;
- replayed reasoning under `reasoning` or `thinking`: handed to the template as `reasoning_content`;
- keys whose value is None (`content: null` next to `tool_calls`): dropped, as transformers does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Same precedence as transformers: the first present name wins.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class InvalidMessageError(ValueError):
    """A message the template cannot render; the server answers HTTP 400 with `param` as the offending field."""

    def __init__(self, message_index: int, field: str, reason: str) -> None:
        self.message_index = message_index
        self.field = field
        self.param = f"messages[{message_index}]" + (f".{field}" if field else "")
        super().__init__(f"{self.param}: {reason}")


def normalize_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Return new plain-dict messages ready for `ChatTemplate.render`; the caller's objects are not modified."""
    return [_normalize_message(index, message) for index, message in enumerate(messages)]


def flatten_content(content: Any) -> Any:
    """A list of content parts becomes the concatenation of its text parts; anything else is returned unchanged."""
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return content


def _normalize_message(index: int, message: Any) -> dict[str, Any]:
    if callable(getattr(message, "model_dump", None)):  # pydantic models, e.g. the openai client's own types
        message = message.model_dump()
    if not isinstance(message, Mapping):
        raise InvalidMessageError(index, "", f"must be an object, got {type(message).__name__}")
    out = {key: value for key, value in message.items() if value is not None}
    role = out.get("role")
    if role not in ROLES:
        raise InvalidMessageError(index, "role", f"unsupported role {role!r}")
    if role == "developer":
        out["role"] = "system"
    if "content" in out:
        out["content"] = flatten_content(out["content"])
    if role == "assistant":
        for name in _REASONING_FIELDS:
            if isinstance(out.get(name), str):
                out["reasoning_content"] = out[name]
                break
        if "tool_calls" in out:
            out["tool_calls"] = _normalize_tool_calls(index, out["tool_calls"])
    return out


def _normalize_tool_calls(index: int, tool_calls: Any) -> list[Any]:
    if not isinstance(tool_calls, (list, tuple)):
        raise InvalidMessageError(index, "tool_calls", "must be a list")
    normalized = []
    for call_index, call in enumerate(tool_calls):
        if callable(getattr(call, "model_dump", None)):
            call = call.model_dump()
        if not isinstance(call, Mapping):
            raise InvalidMessageError(index, f"tool_calls[{call_index}]", "must be an object")
        call = dict(call)
        if isinstance(call.get("function"), Mapping):
            field = f"tool_calls[{call_index}].function.arguments"
            function = dict(call["function"])
            function["arguments"] = _decode_arguments(index, field, function.get("arguments"))
            call["function"] = function
        else:  # flat `{name, arguments}` form, which the template also accepts
            field = f"tool_calls[{call_index}].arguments"
            call["arguments"] = _decode_arguments(index, field, call.get("arguments"))
        normalized.append(call)
    return normalized


def _decode_arguments(index: int, field: str, arguments: Any) -> Mapping[str, Any]:
    if isinstance(arguments, Mapping):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        # Some clients send "" (or nothing) for a call without arguments.
        return {}
    if not isinstance(arguments, str):
        raise InvalidMessageError(index, field, f"must be a JSON string, got {type(arguments).__name__}")
    try:
        decoded = json.loads(arguments)
    except (ValueError, RecursionError) as error:
        raise InvalidMessageError(index, field, f"is not valid JSON ({error})") from None
    if not isinstance(decoded, dict):
        raise InvalidMessageError(index, field, f"must encode a JSON object, got {type(decoded).__name__}")
    return decoded
