"""GLM-4.5 output markup: the tags and the two text helpers every scanner uses.

Separators (rule 5.2.2) between a call's name and its tags and between tags are any whitespace or the literal two
characters backslash + `n` (escaped newlines), so the template layout, the compact GLM-4.7 layout and
space-separated layouts all parse.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizer.text_window import Text

THINK_START = "<think>"
THINK_END = "</think>"
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
ARG_KEY_START = "<arg_key>"
ARG_KEY_END = "</arg_key>"
ARG_VALUE_START = "<arg_value>"
ARG_VALUE_END = "</arg_value>"

# Markup that may never appear inside an argument key (a key holding it is malformed, rule 5.2.6).
CALL_TAGS: tuple[str, ...] = (TOOL_CALL_START, TOOL_CALL_END, ARG_KEY_START, ARG_VALUE_START, ARG_VALUE_END)

ESCAPED_NEWLINE = "\\n"


def skip_separators(text: Text, pos: int) -> int:
    """Index of the first character at or after `pos` that does not belong to a run of separators."""
    end = len(text)
    while pos < end:
        if text[pos].isspace():
            pos += 1
        elif text.startswith(ESCAPED_NEWLINE, pos):
            pos += 2
        else:
            break
    return pos


def strip_trailing_separators(text: str) -> str:
    while True:
        stripped = text.rstrip()
        stripped = stripped.removesuffix(ESCAPED_NEWLINE)
        if stripped == text:
            return text
        text = stripped


def partial_tag_length(text: Text, tags: Iterable[str], start: int = 0) -> int:
    """Length of the longest suffix of `text[start:]` that is a proper, non-empty prefix of one of `tags`.

    That suffix may still become a tag when more text arrives, so streaming holds it back.
    """
    tags = tuple(tags)
    if not tags:
        return 0
    longest_tag = max(map(len, tags))
    tail = text[max(start, len(text) - longest_tag + 1) : len(text)]
    first_chars = {tag[0] for tag in tags if tag}
    for offset, char in enumerate(tail):  # earliest start first: the longest suffix wins
        if char in first_chars:
            suffix = tail[offset:]
            if any(len(tag) > len(suffix) and tag.startswith(suffix) for tag in tags):
                return len(suffix)
    return 0


def could_become(rest: str, tags: Iterable[str]) -> bool:
    """True when `rest` (text at the end of the stream) may still grow into a separator run then one of `tags`."""
    if rest == "\\":
        return True
    return any(tag.startswith(rest) for tag in tags)
