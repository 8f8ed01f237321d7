"""`tool_choice: "required"` and named-function choice: make the model start a call by prefilling its reply.

JSON-guided decoding clashes with GLM's XML call format (vllm-project/vllm#39870, sgl-project/sglang#13514), so
forcing is done with a prompt suffix, best effort, as the API contract allows:

- thinking off (prompt ends `<|assistant|>\\n<think></think>`): suffix `\\n<tool_call>` ("required") or
  `\\n<tool_call>NAME\\n` (named); the model goes on with the name, or with `<arg_key>`/`</tool_call>`.
- thinking on (prompt ends `<|assistant|>`): the suffix first closes an empty think block,
  `\\n<think></think>\\n<tool_call>...`. Choice: a forced call skips thinking for that turn. A fixed prefix cannot
  let the model think first and force the call only after `</think>`; that needs constrained decoding in the
  engine, and stopping at `</think>` to re-prompt would cost a second prefill. `reasoning_tokens` is then 0.

The suffix is also the parser's `prefill` (`OutputParser(tools, prefill=suffix)`), so the generated text, which
starts inside the call, parses as the call the prompt began; the prefill itself emits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizer.argument_types import tool_function
from tokenizer.markup import THINK_END, THINK_START, TOOL_CALL_START


class InvalidToolChoiceError(ValueError):
    """tool_choice names no tool of the request, or cannot be forced; the server answers HTTP 400."""


@dataclass(frozen=True)
class ForcedCall:
    function_name: str | None
    """None for "required" (the model picks the function)."""

    def prompt_suffix(self, prompt: str) -> str:
        """Text to append to `prompt` (rendered with the generation prompt) and to pass as the parser's prefill."""
        call = TOOL_CALL_START + (f"{self.function_name}\n" if self.function_name is not None else "")
        if prompt.endswith(THINK_START + THINK_END):  # thinking off: the think block is already closed
            return "\n" + call
        return f"\n{THINK_START}{THINK_END}\n{call}"


def forced_call_for(tool_choice: Any, tools: Sequence[Any] | None) -> ForcedCall | None:
    """The ForcedCall for a request's tool_choice, or None for "auto", "none" or no choice."""
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    names = _tool_names(tools)
    if not names:
        raise InvalidToolChoiceError("tool_choice requires tools")
    if tool_choice == "required":
        return ForcedCall(None)
    name = _chosen_name(tool_choice)
    if name is None:
        raise InvalidToolChoiceError(f"unsupported tool_choice {tool_choice!r}")
    if name not in names:
        raise InvalidToolChoiceError(f"tool_choice names {name!r}, which is not among the request's tools")
    if not name or any(char.isspace() or char in "<>" for char in name):
        raise InvalidToolChoiceError(f"function name {name!r} cannot be written as a GLM tool call")
    return ForcedCall(name)


def _chosen_name(tool_choice: Any) -> str | None:
    # {"type": "function", "function": {"name": ...}} (Chat Completions) or {"type": "function", "name": ...}
    if not isinstance(tool_choice, Mapping) or tool_choice.get("type") != "function":
        return None
    function = tool_choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
    return name if isinstance(name, str) else None


def _tool_names(tools: Sequence[Any] | None) -> set[str]:
    names = set()
    for tool in tools or ():
        function = tool_function(tool)
        if function is not None and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names
