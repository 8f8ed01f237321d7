"""GLM-4.5 output parser: reasoning, content and tool calls, whole (`parse_output`) or streamed (`OutputParser`).

Input: the generated text after `<|assistant|>`, stop token removed, with the tag tokens kept (GLM-4.5 does not mark
them special, so either `skip_special_tokens` keeps them).
Both faces run the same `OutputScanner`, so for every split of the text the streamed deltas, accumulated as the
`openai` client does, equal `parse_output` of the whole text (see `output_scanner` for the two documented
exceptions around stray think tags). Field rules (reference sections 5 and 6):

- `reasoning_content` / `content`: stripped, None when empty. Streaming drops leading whitespace and holds
  trailing whitespace until more text of the same field follows, which gives the same strings.
- tool calls: extracted only when `tools` is non-empty (pass `tools=None` for `tool_choice: "none"`). Exact mode
  (default) emits a call as one fragment when its `</tool_call>` arrives: index, id, type, name and the whole
  arguments string, `json.dumps(args, ensure_ascii=False)`. Incremental mode (`incremental=True`) sends the header
  once the name is known, then arguments as they complete, streaming string-only values inside their quotes (see
  `incremental_arguments`); it equals exact mode for well-formed calls.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizer.argument_types import ToolSchemas
from tokenizer.call_scanner import CallScanner, CallStatus
from tokenizer.incremental_arguments import IncrementalArguments
from tokenizer.output_scanner import CallClosedEvent, OutputScanner, ScanEvent, TextEvent, TextKind

Delta = dict[str, Any]
"""Shaped like an OpenAI chat chunk's `delta`: one of `reasoning_content`, `content`, `tool_calls`."""

logger = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters + string.digits


def new_tool_call_id() -> str:
    """`call_` + 24 random alphanumerics."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class ParsedToolCall:
    id: str
    name: str
    arguments: str
    """A JSON object, `json.dumps(..., ensure_ascii=False)` in the order the model wrote the keys."""

    def arguments_dict(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.arguments)
        return decoded


@dataclass(frozen=True)
class ParsedOutput:
    reasoning_content: str | None
    content: str | None
    tool_calls: tuple[ParsedToolCall, ...]

    @property
    def has_tool_calls(self) -> bool:
        """finish_reason is `tool_calls` exactly when this is true (reference 5.4)."""
        return bool(self.tool_calls)


class _TrimmedField:
    """Streams a field so that its concatenated output is `(all raw text).strip()`."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._held = ""  # trailing whitespace, sent only if more text follows

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def push(self, raw: str) -> str:
        if not self._parts:
            raw = raw.lstrip()
        pending = self._held + raw
        out = pending.rstrip()
        self._held = pending[len(out) :]
        if out:
            self._parts.append(out)
        return out


class _DeltaList:
    """Builds the deltas of one step, merging neighbours of the same field or the same call."""

    def __init__(self) -> None:
        self.items: list[Delta] = []

    def add_text(self, field: str, text: str) -> None:
        if not text:
            return
        last = self.items[-1] if self.items else None
        if last is not None and field in last:
            last[field] += text
        else:
            self.items.append({field: text})

    def add_call_fragment(self, fragment: dict[str, Any]) -> None:
        last = self.items[-1] if self.items else None
        if last is not None and "tool_calls" in last and last["tool_calls"][0]["index"] == fragment["index"]:
            last["tool_calls"][0]["function"]["arguments"] += fragment["function"]["arguments"]
        else:
            self.items.append({"tool_calls": [fragment]})


class OutputParser:
    """Streaming face: `feed(delta_text)` and `finish()` return the deltas to send, in order.

    `prefill` is text the prompt already holds as the start of the reply (forced calls, see `forced_calls`): it
    is read first so the generated text parses in context, and nothing it contains is emitted.
    `parallel_tool_calls=False` keeps only the first call. `id_factory` makes tool-call ids (tests inject one).
    """

    def __init__(
        self,
        tools: Sequence[Any] | None = None,
        *,
        thinking: bool = True,
        incremental: bool = False,
        parallel_tool_calls: bool = True,
        prefill: str = "",
        id_factory: Callable[[], str] = new_tool_call_id,
    ) -> None:
        self._schemas = ToolSchemas(tools)
        self._scanner = OutputScanner(thinking=thinking, extract_calls=not self._schemas.is_empty)
        self._incremental = incremental
        self._parallel_tool_calls = parallel_tool_calls
        self._id_factory = id_factory
        self._reasoning = _TrimmedField()
        self._content = _TrimmedField()
        self._calls: list[ParsedToolCall] = []
        self._streaming: IncrementalArguments | None = None
        self._num_started_calls = 0
        self.sent_tool_calls = False
        """True once any tool-call delta went out (the finish chunk then says `tool_calls`)."""
        self.diverged = False
        """Incremental mode only: a call already streamed proved malformed; the stream differs from the parse."""
        if prefill:
            self._scanner.feed(prefill)  # prompt text: its events are not part of the reply

    def feed(self, delta_text: str) -> list[Delta]:
        return self._handle(self._scanner.feed(delta_text))

    def finish(self) -> list[Delta]:
        return self._handle(self._scanner.finish())

    def result(self) -> ParsedOutput:
        """What was parsed so far; after `finish()`, the whole-text parse."""
        return ParsedOutput(
            reasoning_content=self._reasoning.text or None,
            content=self._content.text or None,
            tool_calls=tuple(self._calls),
        )

    def _handle(self, events: list[ScanEvent]) -> list[Delta]:
        deltas = _DeltaList()
        for event in events:
            if isinstance(event, TextEvent):
                field = self._reasoning if event.kind is TextKind.REASONING else self._content
                deltas.add_text(event.kind.value, field.push(event.text))
            elif isinstance(event, CallClosedEvent):
                self._close_call(event.call, deltas)
        if self._incremental:
            self._stream_pending_call(deltas)
        return deltas.items

    def _close_call(self, call: CallScanner, deltas: _DeltaList) -> None:
        streaming = self._streaming if self._streaming is not None and self._streaming.call is call else None
        self._streaming = None
        if call.status is CallStatus.MALFORMED:
            if streaming is not None:  # the client holds a partial call: close its JSON, then say so
                self._send(deltas, streaming.index, streaming.abandon())
                self._diverge(f"streamed call {call.name!r} proved malformed or was cut off; its text is content")
            return
        assert call.name is not None
        arguments = json.dumps(self._schemas.type_arguments(call.name, call.pairs), ensure_ascii=False)
        if streaming is not None:
            call_id = streaming.call_id
            tail = streaming.complete()
            self._send(deltas, streaming.index, tail)
            if streaming.sent != arguments:  # duplicate keys: already-sent text cannot be rewritten
                self._diverge(f"streamed call {call.name!r} repeated a key; the parse keeps the last value")
            self._calls.append(ParsedToolCall(call_id, call.name, arguments))
            return
        if not self._parallel_tool_calls and self._num_started_calls >= 1:
            return
        call_id = self._id_factory()
        index = self._num_started_calls
        self._num_started_calls += 1
        self._calls.append(ParsedToolCall(call_id, call.name, arguments))
        self._send(deltas, index, arguments, header=(call_id, call.name))

    def _diverge(self, reason: str) -> None:
        self.diverged = True
        logger.warning("incremental tool-call stream differs from the parse: %s", reason)

    def _stream_pending_call(self, deltas: _DeltaList) -> None:
        call = self._scanner.pending_call
        if call is None or call.name is None:
            return
        if self._streaming is None:
            if not self._parallel_tool_calls and self._num_started_calls >= 1:
                return
            index = self._num_started_calls
            self._num_started_calls += 1
            self._streaming = IncrementalArguments(call, index, self._id_factory(), self._schemas)
            self._send(deltas, index, "", header=(self._streaming.call_id, call.name))
        self._send(deltas, self._streaming.index, self._streaming.progress(self._scanner.text))

    def _send(self, deltas: _DeltaList, index: int, arguments: str, header: tuple[str, str] | None = None) -> None:
        if header is None and not arguments:
            return
        fragment: dict[str, Any] = {"index": index}
        if header is not None:
            call_id, name = header
            fragment.update({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        else:
            fragment["function"] = {"arguments": arguments}
        deltas.add_call_fragment(fragment)
        self.sent_tool_calls = True


def parse_output(
    text: str,
    tools: Sequence[Any] | None = None,
    *,
    thinking: bool = True,
    prefill: str = "",
    id_factory: Callable[[], str] = new_tool_call_id,
) -> ParsedOutput:
    """Whole-text face: the reasoning, content and tool calls of a finished generation."""
    parser = OutputParser(tools, thinking=thinking, prefill=prefill, id_factory=id_factory)
    parser.feed(text)
    parser.finish()
    return parser.result()
