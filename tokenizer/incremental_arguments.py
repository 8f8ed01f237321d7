"""The arguments JSON of one call, streamed while the call is still being generated (reference section 6).

Text goes out in canonical `json.dumps(args, ensure_ascii=False)` form, so for a well-formed call the fragments
concatenate to exactly the exact-mode arguments string:
- `{` with the first pair, `, ` between pairs, `}` only when `</tool_call>` arrives;
- a string-only key streams its value JSON-escaped inside an open quote, as far as `CallScanner.settled_value`
  allows (a trailing `</arg_value>` is held until known to be structural); the quote closes with the pair;
- every other value (typed, untyped, unions) goes out whole, typed, once its pair is complete.

Hazards: text already sent cannot be withdrawn. A duplicate key (the parse keeps the last value, in the first
key's place) or a call that proves malformed or is cut off leaves the client with arguments that differ from the
parse; `abandon` then closes the JSON so it stays valid, and the parser flags the stream as diverged.
"""

from __future__ import annotations

import json

from tokenizer.argument_types import ToolSchemas, type_value
from tokenizer.call_scanner import CallScanner
from tokenizer.text_window import Text


def _escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


class IncrementalArguments:
    def __init__(self, call: CallScanner, index: int, call_id: str, schemas: ToolSchemas) -> None:
        assert call.name is not None
        self.call = call
        self.index = index
        self.call_id = call_id
        self._sent: list[str] = []
        self._name = call.name
        self._schemas = schemas
        self._num_sent_pairs = 0
        self._open_sent: int | None = None  # characters of the open string value already sent

    def progress(self, text: Text) -> str:
        """The next fragment (maybe empty) for the call as read so far from `text`."""
        pieces: list[str] = []
        self._flush_pairs(pieces)
        key = self.call.open_key
        if key is not None and self.call.in_value and self._schemas.is_string_only(self._name, key):
            if self._open_sent is None:
                self._append(pieces, self._separator() + json.dumps(key, ensure_ascii=False) + ': "')
                self._open_sent = 0
            start = self.call.value_start
            end = self.call.settled_value_end(text)
            self._append(pieces, _escape(text[start + self._open_sent : end]))
            self._open_sent = end - start
        return "".join(pieces)

    @property
    def sent(self) -> str:
        """Every arguments fragment sent so far, concatenated."""
        return "".join(self._sent)

    def complete(self) -> str:
        """The last fragment, once the call is COMPLETE."""
        pieces: list[str] = []
        self._flush_pairs(pieces)
        self._append(pieces, ("{" if not self._sent else "") + "}")
        return "".join(pieces)

    def abandon(self) -> str:
        """A fragment that leaves valid JSON behind when the call turned out malformed or was cut off."""
        pieces: list[str] = []
        if self._open_sent is not None:
            self._append(pieces, '"')
            self._open_sent = None
        self._append(pieces, ("{" if not self._sent else "") + "}")
        return "".join(pieces)

    def _flush_pairs(self, pieces: list[str]) -> None:
        pairs = self.call.pairs
        while self._num_sent_pairs < len(pairs):
            key, raw = pairs[self._num_sent_pairs]
            if self._open_sent is not None:  # this pair is the string value being streamed
                self._append(pieces, _escape(raw[self._open_sent :]) + '"')
                self._open_sent = None
            else:
                value = type_value(raw, self._schemas.types_of(self._name, key))
                encoded = json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
                self._append(pieces, self._separator() + encoded)
            self._num_sent_pairs += 1

    def _separator(self) -> str:
        return "{" if not self._sent else ", "

    def _append(self, pieces: list[str], piece: str) -> None:
        if piece:
            pieces.append(piece)
            self._sent.append(piece)
