"""One `<tool_call>` block, scanned incrementally (reference rules 5.2.1-5.2.6).

Grammar, with SEP = whitespace or a literal backslash-n:

    <tool_call> NAME (<arg_key> KEY </arg_key> SEP* <arg_value> VALUE </arg_value> SEP*)* </tool_call>

- NAME runs to the first `<arg_key>` or `</tool_call>`, minus trailing separators, stripped; valid when non-empty
  with no whitespace and no `<`/`>`.
- KEY is stripped; it must be non-empty and hold no call markup.
- A `</arg_value>` is structural only when SEP* then `<arg_key>` or `</tool_call>` follow it; any other
  `</arg_value>` is value text (the value is raw: it may hold every tag). The first structural one ends the value.
- Anything else is malformed. A malformed call's raw text runs through the first `</tool_call>` after its
  `<tool_call>` (or to the end of the output) and is content.

The scanner is resumable: `advance(text, final)` is called each time the text grew (it only ever grows) and
resumes where the last call stopped, so streaming a long value costs linear time. It reads nothing before
`scan_from()` again, except by slicing (names, keys, values), which a `TextWindow` serves from its archive.
Every decision it records is one that no later text can change; anything that more text could still change
leaves it PENDING. `final=True` means no more text will come, so whatever is still open is malformed.
"""

from __future__ import annotations

import enum

from tokenizer.markup import (
    ARG_KEY_END,
    ARG_KEY_START,
    ARG_VALUE_END,
    ARG_VALUE_START,
    CALL_TAGS,
    TOOL_CALL_END,
    TOOL_CALL_START,
    could_become,
    partial_tag_length,
    skip_separators,
    strip_trailing_separators,
)
from tokenizer.text_window import Text

_NAME_TERMINATORS = (ARG_KEY_START, TOOL_CALL_END)
_VALUE_FOLLOWERS = (ARG_KEY_START, TOOL_CALL_END)
# Longer than every tag: enough text to tell whether what follows a position can still become a tag.
_LOOKAHEAD = 16


class CallStatus(enum.Enum):
    PENDING = "pending"
    COMPLETE = "complete"
    MALFORMED = "malformed"


class _Stage(enum.Enum):
    NAME = "name"
    KEY = "key"
    AFTER_KEY = "after_key"
    VALUE = "value"
    DONE = "done"


class CallScanner:
    """Scans the call whose `<tool_call>` starts at `start` in a growing text."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.status = CallStatus.PENDING
        self.name: str | None = None
        """Set once the name is terminated and valid."""
        self.pairs: list[tuple[str, str]] = []
        """Completed (key, raw value) pairs, in order."""
        self.open_key: str | None = None
        """The key whose value is being read (stage VALUE)."""
        self.end: int | None = None
        """COMPLETE: index after `</tool_call>`. MALFORMED: index after the raw span, None while it is still open."""
        self._stage = _Stage.NAME
        self._pos = start + len(TOOL_CALL_START)
        self._search_from = self._pos
        self._value_start = 0
        self._pending_close: int | None = None  # a `</arg_value>` whose role is not yet known
        # The first `</tool_call>` after the start ends the raw text of a malformed call; it is tracked as the
        # text grows, so that the text before it need not be searched again.
        self._first_close: int | None = None
        self._close_search_from = self._pos

    def scan_from(self, text: Text) -> int:
        """The earliest position the next `advance` reads (everything before may leave the scan window)."""
        positions = [self._search_from, len(text) - _LOOKAHEAD]
        if self._stage in (_Stage.NAME, _Stage.KEY, _Stage.AFTER_KEY):
            positions.append(self._pos)
        if self._pending_close is not None:
            positions.append(self._pending_close)
        if self._first_close is None:
            positions.append(self._close_search_from)
        return max(0, min(positions))

    def advance(self, text: Text, final: bool) -> CallStatus:
        if self._first_close is None:
            found = text.find(TOOL_CALL_END, self._close_search_from)
            if found >= 0:
                self._first_close = found
            else:
                self._close_search_from = max(self._close_search_from, len(text) - len(TOOL_CALL_END) + 1)
        while self.status is CallStatus.PENDING:
            stage = self._stage
            if stage is _Stage.NAME:
                progressed = self._scan_name(text, final)
            elif stage is _Stage.KEY:
                progressed = self._scan_key(text, final)
            elif stage is _Stage.AFTER_KEY:
                progressed = self._scan_after_key(text, final)
            else:
                progressed = self._scan_value(text, final)
            if not progressed:
                break
        if self.status is CallStatus.MALFORMED and self.end is None:
            self._find_malformed_end(text, final)
        return self.status

    @property
    def in_value(self) -> bool:
        """True between the open key's `<arg_value>` and its structural `</arg_value>`."""
        return self._stage is _Stage.VALUE

    @property
    def value_start(self) -> int:
        """Where the open value (stage VALUE) starts in the text."""
        return self._value_start

    def settled_value_end(self, text: Text) -> int:
        """End of the part of the open value that no later text can change (for incremental streaming)."""
        if self._stage is not _Stage.VALUE:
            return self._value_start
        if self._pending_close is not None:
            return self._pending_close
        return len(text) - partial_tag_length(text, (ARG_VALUE_END,), self._value_start)

    # Each _scan_* returns True when it moved to another stage or status, False when it needs more text.

    def _scan_name(self, text: Text, final: bool) -> bool:
        found, tag = _find_first(text, _NAME_TERMINATORS, self._search_from)
        if found < 0:
            if final:
                return self._malformed()
            region = text[self._pos : len(text) - partial_tag_length(text, _NAME_TERMINATORS, self._pos)]
            self._search_from = max(self._search_from, len(text) - len(TOOL_CALL_END) + 1)
            # More text only extends the region at its end, so an error before its trailing separators is final.
            # A last lone backslash may still become an escaped-newline separator.
            region = region.removesuffix("\\")
            if not _name_may_be_valid(strip_trailing_separators(region).lstrip()):
                return self._malformed()
            return False
        name = strip_trailing_separators(text[self._pos : found]).strip()
        if not name or not _name_may_be_valid(name):
            return self._malformed()
        self.name = name
        if tag == TOOL_CALL_END:
            return self._complete(found + len(TOOL_CALL_END))
        self._start_key(found + len(ARG_KEY_START))
        return True

    def _start_key(self, pos: int) -> None:
        self._stage = _Stage.KEY
        self._pos = self._search_from = pos

    def _scan_key(self, text: Text, final: bool) -> bool:
        found = text.find(ARG_KEY_END, self._search_from)
        if found < 0:
            if final or _holds_markup(text[self._pos :]):
                return self._malformed()
            self._search_from = max(self._search_from, len(text) - len(ARG_KEY_END) + 1)
            return False
        raw_key = text[self._pos : found]
        key = raw_key.strip()
        if not key or _holds_markup(raw_key):
            return self._malformed()
        self.open_key = key
        self._stage = _Stage.AFTER_KEY
        self._pos = found + len(ARG_KEY_END)
        return True

    def _scan_after_key(self, text: Text, final: bool) -> bool:
        pos = skip_separators(text, self._pos)
        if text.startswith(ARG_VALUE_START, pos):
            self._stage = _Stage.VALUE
            self._value_start = self._search_from = pos + len(ARG_VALUE_START)
            return True
        if not final and could_become(text[pos : pos + _LOOKAHEAD], (ARG_VALUE_START,)):
            return False
        return self._malformed()

    def _scan_value(self, text: Text, final: bool) -> bool:
        while True:
            close = text.find(ARG_VALUE_END, self._search_from)
            if close < 0:
                if final:
                    return self._malformed()
                self._search_from = max(self._search_from, len(text) - len(ARG_VALUE_END) + 1)
                self._pending_close = None
                return False
            follow = skip_separators(text, close + len(ARG_VALUE_END))
            rest_is = text.startswith
            if rest_is(ARG_KEY_START, follow) or rest_is(TOOL_CALL_END, follow):
                assert self.open_key is not None
                self.pairs.append((self.open_key, text[self._value_start : close]))
                self.open_key = None
                self._pending_close = None
                if rest_is(TOOL_CALL_END, follow):
                    return self._complete(follow + len(TOOL_CALL_END))
                self._start_key(follow + len(ARG_KEY_START))
                return True
            if not final and could_become(text[follow : follow + _LOOKAHEAD], _VALUE_FOLLOWERS):
                self._search_from = close
                self._pending_close = close
                return False
            self._search_from = close + 1  # literal `</arg_value>` inside the value

    def _complete(self, end: int) -> bool:
        self.status = CallStatus.COMPLETE
        self._stage = _Stage.DONE
        self.end = end
        return True

    def _malformed(self) -> bool:
        self.status = CallStatus.MALFORMED
        self._stage = _Stage.DONE
        return True

    def _find_malformed_end(self, text: Text, final: bool) -> None:
        if self._first_close is not None:
            self.end = self._first_close + len(TOOL_CALL_END)
        elif final:
            self.end = len(text)


def _find_first(text: Text, tags: tuple[str, ...], start: int) -> tuple[int, str]:
    best, best_tag = -1, ""
    for tag in tags:
        found = text.find(tag, start)
        if found >= 0 and (best < 0 or found < best):
            best, best_tag = found, tag
    return best, best_tag


def _name_may_be_valid(name: str) -> bool:
    return "<" not in name and ">" not in name and not any(char.isspace() for char in name)


def _holds_markup(text: str) -> bool:
    return any(tag in text for tag in CALL_TAGS)
