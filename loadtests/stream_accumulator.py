"""Reads one OpenAI streaming response (SSE lines) into timings, text and the server's usage.

Timing definitions (those of vLLM's serving benchmark, made explicit):
- an "output chunk" is a data event whose choice carries generated text: completions `text`, chat
  `delta.content`, `delta.reasoning_content` / `delta.reasoning`, or tool-call name/argument fragments. The
  chat role-only first delta (`content: ""`) and the finish chunk (`delta: {}`) are not output chunks;
- TTFT = first output chunk - request start; ITL = the gaps between successive output chunks (one chunk may carry
  several tokens, e.g. with MTP speculative decoding, so ITL is per chunk while TPOT is per token);
- latency (E2EL) = the last data event (usage chunk included, `[DONE]` excluded) - request start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Error kinds a stream can end with (the benchmark counts failed requests by kind).
STREAM_ERROR = "stream_error"  # an `{"error": ...}` event after the 200
INVALID_CHUNK = "invalid_chunk"  # a data line that is not JSON, or data after [DONE]
INCOMPLETE_STREAM = "incomplete_stream"  # the connection closed before `data: [DONE]`
NO_OUTPUT = "no_output"  # the stream finished without a single output chunk
MISSING_USAGE = "missing_usage"  # no usage.completion_tokens although include_usage was requested


class StreamError(Exception):
    """A stream that cannot count as a successful request; `kind` is one of the constants above."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class StreamAccumulator:
    # perf_counter() when the request was sent; every timing below is relative to it.
    start_time: float
    # Seconds to the first output chunk; None until one arrives.
    ttft: float | None = None
    # Gaps between successive output chunks, seconds.
    itl: list[float] = field(default_factory=list)
    # Timestamps of the last output chunk and of the last data event of any kind.
    last_output_time: float = 0.0
    last_event_time: float = 0.0
    # Generated answer text (completions text or chat content) and chat reasoning text, concatenated.
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    # The last non-null `usage` object seen (the include_usage chunk, or cumulative continuous usage).
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    done: bool = False

    def feed_line(self, line: str, timestamp: float) -> None:
        """One line of the response body; raises StreamError on an error event or a malformed chunk."""
        line = line.strip()
        if not line.startswith("data:"):
            return  # blank separators, `: ping` keep-alive comments, `event:`/`id:`/`retry:` fields
        data = line[len("data:") :].strip()
        if self.done:
            raise StreamError(INVALID_CHUNK, f"data after [DONE]: {data[:200]!r}")
        if data == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise StreamError(INVALID_CHUNK, f"not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise StreamError(INVALID_CHUNK, f"not a JSON object: {data[:200]!r}")
        if chunk.get("error"):
            raise StreamError(STREAM_ERROR, _error_message(chunk))
        self.last_event_time = timestamp
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._feed_choice(choice, timestamp)

    def _feed_choice(self, choice: dict[str, Any], timestamp: float) -> None:
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        text, reasoning = _output_of(choice)
        if not (text or reasoning):
            return
        if self.ttft is None:
            self.ttft = timestamp - self.start_time
        else:
            self.itl.append(timestamp - self.last_output_time)
        self.last_output_time = timestamp
        self.text.append(text)
        self.reasoning.append(reasoning)

    def finish(self) -> None:
        """Call at end of body: raises StreamError unless the stream was complete, produced output and usage."""
        if not self.done:
            raise StreamError(INCOMPLETE_STREAM, "the stream closed before data: [DONE]")
        if self.ttft is None:
            raise StreamError(NO_OUTPUT, "the stream carried no generated text")
        if self.completion_tokens is None:
            raise StreamError(MISSING_USAGE, "no usage.completion_tokens (stream_options.include_usage ignored?)")

    @property
    def completion_tokens(self) -> int | None:
        value = (self.usage or {}).get("completion_tokens")
        return value if isinstance(value, int) else None

    @property
    def prompt_tokens(self) -> int | None:
        value = (self.usage or {}).get("prompt_tokens")
        return value if isinstance(value, int) else None


def _output_of(choice: dict[str, Any]) -> tuple[str, str]:
    """(answer text, reasoning text) carried by one streamed choice of either API."""
    if isinstance(choice.get("text"), str):
        return choice["text"], ""
    delta = choice.get("delta") or {}
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        text += (function.get("name") or "") + (function.get("arguments") or "")
    return text, reasoning


def _error_message(body: Any) -> str:
    """The message of an OpenAI error envelope (or FastAPI's `detail`), else the raw body, shortened."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if body.get("detail"):
            return str(body["detail"])[:500]
    return str(body)[:500]


def error_message_of_body(raw: bytes) -> str:
    """The error message of a non-200 response body."""
    try:
        return _error_message(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw.decode("utf-8", errors="replace")[:500]
