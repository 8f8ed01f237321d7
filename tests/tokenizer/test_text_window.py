"""TextWindow: absolute positions over a growing text whose searched part is kept short."""

from __future__ import annotations

import random

import pytest
from parser_harness import case_thinking, counter_ids, expected_from, load_tool_cases, stream

from tokenizer import OutputParser, parse_output, text_window
from tokenizer.text_window import TextWindow


@pytest.fixture
def tiny_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_window, "_TRIM_MIN_CHARS", 1)


def test_positions_slices_and_archive(tiny_window: None) -> None:
    window = TextWindow()
    text = ""
    for piece in ["hello ", "wor", "ld <tag> ", "and more text"]:
        window.append(piece)
        text += piece
    window.release(scan_from=18, keep_from=6)
    assert len(window) == len(text)
    assert window[6:12] == text[6:12]  # from the archive
    assert window[6:] == text[6:]  # across the archive boundary
    assert window[20] == text[20]
    assert window.find("more", 18) == text.find("more", 18)
    assert window.rfind("e", 18, len(text)) == text.rfind("e", 18, len(text))
    assert window.startswith("and", text.index("and"))
    assert window.endswith("text")
    with pytest.raises(AssertionError):
        window.find("hello", 0)
    with pytest.raises(AssertionError):
        _ = window[0:3]  # before the kept text
    window.release(scan_from=20, keep_from=None)  # nothing kept: the archive goes
    with pytest.raises(AssertionError):
        _ = window[6:12]


def test_without_trimming_nothing_moves() -> None:
    window = TextWindow()
    window.append("short text")
    window.release(scan_from=8, keep_from=None)
    assert window[0:5] == "short" and window.find("short", 0) == 0


@pytest.mark.parametrize("incremental", [False, True])
def test_corpus_streams_exactly_with_a_tiny_window(tiny_window: None, incremental: bool) -> None:
    rng = random.Random(7)
    for case in load_tool_cases():
        tools = case["tools"] or None
        text = case["model_output"]
        thinking = case_thinking(case)
        expected = expected_from(parse_output(text, tools, thinking=thinking, id_factory=counter_ids()))
        for pieces in (list(text), [text[i : i + 3] for i in range(0, len(text), 3)]):
            parser = OutputParser(tools, thinking=thinking, incremental=incremental, id_factory=counter_ids())
            got = stream(pieces, parser)
            assert got == expected or parser.diverged, case["id"]
        cuts = sorted(rng.sample(range(1, len(text)), min(10, len(text) - 1)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert stream(pieces, OutputParser(tools, thinking=thinking, id_factory=counter_ids())) == expected
