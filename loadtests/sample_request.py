"""One benchmark request as planned by a dataset, before it is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SampleRequest:
    # Text prompt: the whole prompt for `--backend openai`, the single user turn for `openai-chat` when
    # `messages` is None, and the last user turn of a conversation otherwise.
    prompt: str
    # Prompt tokens counted client-side with --tokenizer (raw text, no chat template); None without a tokenizer.
    # NOTE: the benchmark's input-token totals prefer the server's usage.prompt_tokens when the server sends it.
    prompt_len: int | None
    # Sent as max_tokens / max_completion_tokens (>= 1). The server may stop earlier at EOS unless --ignore-eos.
    expected_output_len: int
    # Full chat history (OpenAI message dicts) for conversation datasets with `openai-chat`; None = one user turn.
    messages: tuple[dict[str, Any], ...] | None = None
    # OpenAI `tools` definitions that go with `messages` (conversation datasets with tool calls); None = no tools.
    tools: tuple[dict[str, Any], ...] | None = None
    # Body fields of this request only (e.g. chat_template_kwargs from a conversation's thinking switch); they
    # override --extra-body, as vLLM's per-request overrides do.
    extra_body: dict[str, Any] | None = None
