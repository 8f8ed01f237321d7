"""Splits generated GLM-4.5 text into reasoning, content and tool calls as it grows (reference rules 5.1, 5.2).

The single implementation behind both `parse_output` (all text, then `finish`) and the streaming `OutputParser`.
It emits events in text order and only emits what no later text can change, so the concatenated events are the
same however the text is split into `feed` calls. Two documented exceptions, where the stream has already shown
text that a later tag would reclassify (reference section 6): a stray `</think>` with no opening tag after visible
content (the tag is dropped, the text stays content), and a second `<think>` after visible reasoning (kept as
reasoning text; whole-text parsing keeps only what follows the last `<think>`).

Phases (thinking on): START (leading whitespace, maybe `<think>`) -> REASONING (to the first `</think>`) -> BODY.
With thinking off the scanner starts in BODY and nothing is reasoning. In BODY, text is content except
`<tool_call>` blocks, which a `CallScanner` resolves into a call or, when malformed, raw content.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tokenizer.call_scanner import CallScanner, CallStatus
from tokenizer.markup import THINK_END, THINK_START, TOOL_CALL_START, partial_tag_length
from tokenizer.text_window import TextWindow


class TextKind(enum.Enum):
    REASONING = "reasoning_content"
    CONTENT = "content"


@dataclass(frozen=True, slots=True)
class TextEvent:
    kind: TextKind
    text: str
    """Raw, unstripped text; the consumer strips the field as a whole."""


@dataclass(frozen=True, slots=True)
class CallClosedEvent:
    """A call's scanner left PENDING: COMPLETE (a call), or MALFORMED (its raw text follows as content events)."""

    call: CallScanner


ScanEvent = TextEvent | CallClosedEvent


class _Phase(enum.Enum):
    START = "start"
    REASONING = "reasoning"
    BODY = "body"


class OutputScanner:
    def __init__(self, *, thinking: bool, extract_calls: bool) -> None:
        self._extract_calls = extract_calls
        self._text = TextWindow()
        self._pos = 0  # everything before it has been emitted (or deliberately dropped)
        self._phase = _Phase.START if thinking else _Phase.BODY
        self._think_end_from = 0
        self._stray_watch = False  # thinking on, no leading <think>: a `</think>` before any `<tool_call>` counts
        self._reasoning_visible = False
        self._content_visible = False
        self._call: CallScanner | None = None
        self._finished = False
        self._events: list[ScanEvent] = []

    @property
    def text(self) -> TextWindow:
        """The text read so far, by absolute position (`pending_call`'s positions point into it)."""
        return self._text

    @property
    def pending_call(self) -> CallScanner | None:
        """The call being read, while it is still PENDING (incremental streaming looks at its progress)."""
        call = self._call
        return call if call is not None and call.status is CallStatus.PENDING else None

    def feed(self, text: str) -> list[ScanEvent]:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._text.append(text)
        return self._scan(final=False)

    def finish(self) -> list[ScanEvent]:
        if self._finished:
            return []
        self._finished = True
        return self._scan(final=True)

    def _scan(self, final: bool) -> list[ScanEvent]:
        self._events = []
        if self._phase is _Phase.START:
            self._scan_start(final)
        if self._phase is _Phase.REASONING:
            self._scan_reasoning(final)
        if self._phase is _Phase.BODY:
            self._scan_body(final)
        self._release()
        return self._events

    def _release(self) -> None:
        """Let the window drop text that no later step reads."""
        scan_from = min(self._pos, self._think_end_from) if self._phase is _Phase.REASONING else self._pos
        keep_from = None
        call = self._call
        if call is not None and call.status is CallStatus.PENDING:
            # _pos sits at the call's start, which is only sliced (a malformed call's raw text), not searched.
            scan_from, keep_from = call.scan_from(self._text), self._pos
        elif call is not None:  # malformed, raw text streaming until its `</tool_call>`
            scan_from = min(scan_from, call.scan_from(self._text))
        self._text.release(scan_from, keep_from)

    def _emit(self, kind: TextKind, text: str) -> None:
        if not text:
            return
        self._events.append(TextEvent(kind, text))
        if not text.isspace():
            if kind is TextKind.REASONING:
                self._reasoning_visible = True
            else:
                self._content_visible = True

    def _scan_start(self, final: bool) -> None:
        text = self._text
        first = self._pos
        while first < len(text) and text[first].isspace():
            first += 1
        # Leading whitespace is dropped whichever way this goes (reasoning and content are both stripped).
        self._pos = first
        if first == len(text) and not final:
            return
        if text.startswith(THINK_START, first):
            self._phase = _Phase.REASONING
            self._pos = self._think_end_from = first + len(THINK_START)
            return
        if not final and THINK_START.startswith(text[first : first + len(THINK_START)]):
            return
        self._phase = _Phase.BODY
        self._stray_watch = True

    def _scan_reasoning(self, final: bool) -> None:
        text = self._text
        end = text.find(THINK_END, self._think_end_from)
        if end >= 0:
            limit = end
        elif final:
            limit = len(text)
        else:
            limit = len(text) - partial_tag_length(text, (THINK_END, THINK_START), self._pos)
            self._think_end_from = max(self._think_end_from, len(text) - len(THINK_END) + 1)
        # `<think>\n<think>...`: reasoning is what follows the last <think>. Once reasoning is visible the
        # stream cannot take it back, and a later <think> stays reasoning text.
        restart = text.rfind(THINK_START, self._pos, limit)
        if restart >= 0 and not self._reasoning_visible:
            self._pos = restart + len(THINK_START)
        self._emit(TextKind.REASONING, text[self._pos : limit])
        self._pos = limit
        if end >= 0:
            self._pos = end + len(THINK_END)
            self._phase = _Phase.BODY

    def _scan_body(self, final: bool) -> None:
        while True:
            if self._call is not None:
                if not self._scan_call(final):
                    return
                continue
            if not self._scan_plain(final):
                return

    def _scan_call(self, final: bool) -> bool:
        """Returns True when the call is done with and plain body scanning resumes."""
        call = self._call
        assert call is not None
        was_pending = call.status is CallStatus.PENDING
        status = call.advance(self._text, final)
        if status is CallStatus.PENDING:
            return False
        if was_pending:
            self._events.append(CallClosedEvent(call))
        if status is CallStatus.COMPLETE:
            assert call.end is not None
            self._pos = call.end
            self._call = None
            return True
        # Malformed: its raw text is content, through its `</tool_call>` once that is known.
        end = call.end if call.end is not None else len(self._text)
        self._emit(TextKind.CONTENT, self._text[self._pos : end])
        self._pos = end
        if call.end is None:
            return False
        self._call = None
        return True

    def _scan_plain(self, final: bool) -> bool:
        """Emits content up to the next call (True: a call starts) or as far as is safe (False)."""
        text, pos = self._text, self._pos
        call_start = text.find(TOOL_CALL_START, pos) if self._extract_calls or self._stray_watch else -1
        if self._stray_watch:
            think_end = text.find(THINK_END, pos)
            if think_end >= 0 and (call_start < 0 or think_end < call_start):
                # Rule 5.1.2: the text before a stray `</think>` is reasoning, unless the stream already showed
                # it as content; either way the tag itself is dropped.
                self._stray_watch = False
                kind = TextKind.CONTENT if self._content_visible else TextKind.REASONING
                self._emit(kind, text[pos:think_end])
                self._pos = think_end + len(THINK_END)
                return True
            if call_start >= 0:
                self._stray_watch = False
        if call_start >= 0 and self._extract_calls:
            self._emit(TextKind.CONTENT, text[pos:call_start])
            self._pos = call_start
            self._call = CallScanner(call_start)
            return True
        limit = len(text)
        if not final:
            held_tags = [TOOL_CALL_START] if self._extract_calls or self._stray_watch else []
            if self._stray_watch:
                held_tags.append(THINK_END)
            limit -= partial_tag_length(text, held_tags, pos)
        self._emit(TextKind.CONTENT, text[pos:limit])
        self._pos = limit
        return False
