"""Token ids -> text, incrementally, for streaming.

Contract:
- text is released only as complete UTF-8: a character whose bytes span several tokens (CJK, emoji under a
  byte-level BPE) comes out whole, once its last byte arrives;
- `skip_special_tokens` removes special tokens (role markers...) from the text; `hidden_token_ids` are never
  rendered at all (`Tokenizer.detokenizer` hides the stop ids this way, and the special tokens it skips, so that
  it can keep chosen ones);
- stop strings are found across token boundaries; text after a stop string is never released, and the stop
  string itself only with `include_stop_str_in_output`. Once one matched, `stopped` is true and the engine
  should finish the request.

Decoding re-decodes a short window (the tokens since the previous release, plus the previous release as
left context for tokenizers whose decoding depends on it) and releases the difference, so each step costs a few
tokens, not the whole output. A window ending in U+FFFD is an incomplete character and waits for the next token;
`finish` releases whatever is left (a really broken sequence then shows as U+FFFD).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tokenizer.stop_strings import StopStringMatcher

_REPLACEMENT = "\ufffd"


class DecodesIds(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


@dataclass(frozen=True, slots=True)
class DetokenizerOutput:
    text: str
    """Newly released text (may be empty)."""
    stop_string: str | None
    """The stop string that ended the text in this step, else None."""


class IncrementalDetokenizer:
    def __init__(
        self,
        tokenizer: DecodesIds,
        *,
        skip_special_tokens: bool = True,
        stop_strings: Sequence[str] = (),
        include_stop_str_in_output: bool = False,
        hidden_token_ids: Collection[int] = (),
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._hidden = frozenset(hidden_token_ids)
        self._stops = StopStringMatcher(stop_strings, include_stop_str_in_output)
        self._ids: list[int] = []
        self._prefix = 0  # window start: left context, already released
        self._read = 0  # tokens before this index are released
        self._released: list[str] = []

    @property
    def text(self) -> str:
        """All text released so far."""
        return "".join(self._released)

    @property
    def stopped(self) -> bool:
        return self._stops.matched is not None

    def push(self, token_ids: Iterable[int]) -> DetokenizerOutput:
        """Add newly generated ids (one, or several per step with speculative decoding)."""
        if self.stopped:
            return DetokenizerOutput("", None)
        self._ids.extend(token_id for token_id in token_ids if token_id not in self._hidden)
        if len(self._ids) == self._read:
            return DetokenizerOutput("", None)
        decode = self._tokenizer.decode
        window = decode(self._ids[self._prefix :], skip_special_tokens=self._skip_special_tokens)
        if window.endswith(_REPLACEMENT):
            return DetokenizerOutput("", None)
        context = decode(self._ids[self._prefix : self._read], skip_special_tokens=self._skip_special_tokens)
        self._prefix, self._read = self._read, len(self._ids)
        return self._release(window[len(context) :])

    def push_until_stop(self, token_ids: Sequence[int]) -> tuple[int, DetokenizerOutput]:
        """Push a step's ids, one at a time when there are stop strings; returns (how many of them belong to the
        output, their text). NOTE: a multi-token (speculative) step may complete a stop string before its last
        token; the tokens after that one were never generated as far as the output is concerned, so callers drop
        them from token ids, logprobs and usage counts."""
        if not self._stops.has_stop_strings:
            return len(token_ids), self.push(token_ids)
        texts = []
        for num_kept, token_id in enumerate(token_ids, start=1):
            step = self.push((token_id,))
            texts.append(step.text)
            if step.stop_string is not None:
                return num_kept, DetokenizerOutput("".join(texts), step.stop_string)
        return len(token_ids), DetokenizerOutput("".join(texts), None)

    def finish(self) -> DetokenizerOutput:
        """End of generation: release what an incomplete character or a possible stop string held back."""
        if self.stopped:
            return DetokenizerOutput("", None)
        tail = ""
        if len(self._ids) > self._read:
            decode = self._tokenizer.decode
            window = decode(self._ids[self._prefix :], skip_special_tokens=self._skip_special_tokens)
            context = decode(self._ids[self._prefix : self._read], skip_special_tokens=self._skip_special_tokens)
            self._prefix = self._read = len(self._ids)
            tail = window[len(context) :]
        output = self._release(tail)
        if output.stop_string is not None:
            return output
        flushed = self._stops.flush()
        self._released.append(flushed)
        return DetokenizerOutput(output.text + flushed, None)

    def _release(self, text: str) -> DetokenizerOutput:
        released = self._stops.push(text)
        self._released.append(released)
        return DetokenizerOutput(released, self._stops.matched)
