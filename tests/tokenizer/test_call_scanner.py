"""The `<tool_call>` grammar, separators, early verdicts and the incremental view."""

from __future__ import annotations

import pytest

from tokenizer import OutputParser, parse_output
from tokenizer.call_scanner import CallScanner, CallStatus

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}},
        },
    }
]


def _scan(text: str, final: bool = True) -> CallScanner:
    scanner = CallScanner(text.index("<tool_call>"))
    scanner.advance(text, final)
    return scanner


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x</arg_value>\n</tool_call>",
        "<tool_call>f<arg_key>a</arg_key><arg_value>x</arg_value></tool_call>",
        "<tool_call>f <arg_key>a</arg_key> <arg_value>x</arg_value> </tool_call>",
        "<tool_call>f\\n<arg_key>a</arg_key>\\n<arg_value>x</arg_value>\\n</tool_call>",
        "<tool_call> f \\n\n <arg_key> a </arg_key>\r\n\t<arg_value>x</arg_value>\\n \\n</tool_call>",
    ],
)
def test_separator_layouts(text: str) -> None:
    scanner = _scan(text)
    assert scanner.status is CallStatus.COMPLETE and scanner.end == len(text)
    assert (scanner.name, scanner.pairs) == ("f", [("a", "x")])


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>f g\n</tool_call>",  # whitespace in the name
        "<tool_call>\n</tool_call>",  # empty name
        "<tool_call>f<x>\n</tool_call>",  # markup in the name
        "<tool_call>f\n<arg_key></arg_key>\n<arg_value>x</arg_value>\n</tool_call>",  # empty key
        "<tool_call>f\n<arg_key>a<arg_value>b</arg_key>\n<arg_value>x</arg_value>\n</tool_call>",  # tag in key
        "<tool_call>f\n<arg_key>a</arg_key>\ntext<arg_value>x</arg_value>\n</tool_call>",  # text between tags
        "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x</arg_value>\nstray</tool_call>",  # no structural close
        "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x",  # truncated
    ],
)
def test_malformed_calls_keep_their_text(text: str) -> None:
    scanner = _scan(text)
    assert scanner.status is CallStatus.MALFORMED
    result = parse_output("Before. " + text + " After.", TOOLS)
    assert result.tool_calls == () and result.content == "Before. " + text + " After."


def test_malformed_extent_ends_at_the_first_close_and_parsing_continues() -> None:
    bad = "<tool_call>bad name\n</tool_call>"
    good = "<tool_call>f\n<arg_key>n</arg_key>\n<arg_value>7</arg_value>\n</tool_call>"
    result = parse_output(bad + "\nmiddle\n" + good + "\nend", TOOLS)
    assert result.content == bad + "\nmiddle\n\nend"
    assert [call.arguments for call in result.tool_calls] == ['{"n": 7}']


def test_an_invalid_name_is_known_before_the_call_closes() -> None:
    parser = OutputParser(TOOLS)
    text = "Use the <tool_call> tag to call a function, like this long sentence"
    streamed = "".join(delta.get("content", "") for char in text for delta in parser.feed(char))
    # Released before any `</tool_call>`, since no later text can make "tag to..." a valid name.
    assert streamed == text[: len(streamed)] and len(streamed) > len("Use the <tool_call> tag to")


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("<tool_call>name\\", CallStatus.PENDING),  # may become an escaped-newline separator
        ("<tool_call>name \\", CallStatus.PENDING),
        ("<tool_call>name x", CallStatus.MALFORMED),
        ("<tool_call>na<", CallStatus.PENDING),
        ("<tool_call>na<b", CallStatus.MALFORMED),
        ("<tool_call>f<arg_key>a</arg_key>\n<arg_v", CallStatus.PENDING),
        ("<tool_call>f<arg_key>a</arg_key>\nx", CallStatus.MALFORMED),
        ("<tool_call>f<arg_key>a</arg_key><arg_value>x</arg_value>\n</tool_c", CallStatus.PENDING),
        ("<tool_call>f<arg_key>a</arg_key><arg_value>x</arg_value>\\", CallStatus.PENDING),
        ("<tool_call>f<arg_key>a<tool_call>", CallStatus.MALFORMED),
    ],
)
def test_verdicts_on_partial_text(text: str, status: CallStatus) -> None:
    assert _scan(text, final=False).status is status


def test_settled_value_holds_a_possible_close() -> None:
    text = "<tool_call>f<arg_key>a</arg_key><arg_value>one </arg_value> two </arg_val"
    scanner = _scan(text, final=False)
    assert scanner.in_value
    assert text[scanner.value_start : scanner.settled_value_end(text)] == "one </arg_value> two "
    text += "ue>\n"
    scanner.advance(text, final=False)
    assert text[scanner.value_start : scanner.settled_value_end(text)] == "one </arg_value> two "
    text += "<arg_key>n</arg_key><arg_value>1</arg_value></tool_call>"
    assert scanner.advance(text, final=False) is CallStatus.COMPLETE
    assert scanner.pairs == [("a", "one </arg_value> two "), ("n", "1")]


def test_duplicate_keys_last_wins() -> None:
    text = (
        "<tool_call>f<arg_key>n</arg_key><arg_value>1</arg_value><arg_key>a</arg_key><arg_value>x</arg_value>"
        "<arg_key>n</arg_key><arg_value>2</arg_value></tool_call>"
    )
    assert parse_output(text, TOOLS).tool_calls[0].arguments == '{"n": 2, "a": "x"}'


def test_long_value_streams_in_linear_time() -> None:
    import time

    value = "word </arg_value> " * 20000  # 360k characters, with literal closing tags all along
    text = f"<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>{value}</arg_value>\n</tool_call>"
    start = time.perf_counter()
    parser = OutputParser(TOOLS, incremental=True)
    for position in range(0, len(text), 4):
        parser.feed(text[position : position + 4])
    parser.finish()
    assert parser.result().tool_calls[0].arguments_dict() == {"a": value}
    # Quadratic rescanning would take minutes here; linear work is well under a few seconds even on slow CI.
    assert time.perf_counter() - start < 20
