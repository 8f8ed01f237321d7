"""Stop strings across piece boundaries."""

from __future__ import annotations

from tokenizer import StopStringMatcher


def _run(matcher: StopStringMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.push(piece) for piece in pieces)
    return out + matcher.flush()


def test_stop_string_split_across_pieces() -> None:
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("abc ST") == "abc "
    assert matcher.push("O") == ""
    assert matcher.push("P and more") == ""
    assert matcher.matched == "STOP"
    assert matcher.push("later") == "" and matcher.flush() == ""


def test_include_stop_string() -> None:
    assert _run(StopStringMatcher(["</end>"], include_stop_str_in_output=True), ["x</e", "nd>y"]) == "x</end>"


def test_held_text_is_released_when_it_cannot_start_a_stop() -> None:
    matcher = StopStringMatcher(["abc"])
    assert matcher.push("xab") == "x"
    assert matcher.push("d") == "abd"
    assert matcher.push("a") == ""
    assert matcher.flush() == "a" and matcher.matched is None


def test_earliest_then_longest_match_wins_within_one_step() -> None:
    matcher = StopStringMatcher(["world", "lo w", "lo"], include_stop_str_in_output=True)
    assert _run(matcher, ["hello world"]) == "hello w"
    assert matcher.matched == "lo w"
    # Streamed, the first stop string to complete ends the text: "lo" is complete before " w" arrives.
    matcher = StopStringMatcher(["world", "lo w", "lo"], include_stop_str_in_output=True)
    assert _run(matcher, list("hello world")) == "hello"
    assert matcher.matched == "lo"
    excluded = [StopStringMatcher(["world", "lo w", "lo"]) for _ in range(2)]
    assert _run(excluded[0], ["hello world"]) == _run(excluded[1], list("hello world")) == "hel"


def test_no_stop_strings_passes_everything() -> None:
    matcher = StopStringMatcher([""])
    assert matcher.push("a") == "a" and matcher.flush() == ""
