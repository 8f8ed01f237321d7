"""The reference corpus, whole and streamed, and the streaming contract of OutputParser."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from parser_harness import (
    Accumulator,
    accumulate,
    case_thinking,
    case_view,
    counter_ids,
    expected_from,
    load_tool_cases,
    random_pieces,
    stream,
)

from tokenizer import OutputParser, Tokenizer, parse_output
from tokenizer.output_parser import new_tool_call_id

CASES = load_tool_cases()
CASE_IDS = [case["id"] for case in CASES]
# Calls that prove malformed only after their name was read: incremental mode has already sent a header.
INCREMENTAL_DIVERGES = {"truncated_call_no_close_tag", "missing_arg_value_element", "missing_open_arg_value"}


def _tools(case: dict[str, Any]) -> list[dict[str, Any]] | None:
    return case["tools"] or None


def _token_pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    """The text as the server's detokenizer hands it over, one token per step (pieces may be empty)."""
    detokenizer = tokenizer.detokenizer(skip_special_tokens=False)
    pieces = [detokenizer.push([token_id]).text for token_id in tokenizer.encode(text)]
    pieces.append(detokenizer.finish().text)
    assert "".join(pieces) == text
    return pieces


def _group(pieces: list[str], size: int) -> list[str]:
    return ["".join(pieces[start : start + size]) for start in range(0, len(pieces), size)]


def _splits(case: dict[str, Any], tokenizer: Tokenizer) -> list[list[str]]:
    text = case["model_output"]
    rng = random.Random(case["id"])
    token_pieces = _token_pieces(tokenizer, text)
    return [
        list(text),  # one character at a time
        *(random_pieces(text, rng) for _ in range(12)),
        token_pieces,  # one token per step
        *(_group(token_pieces, size) for size in (2, 3, 5)),  # several tokens per step (MTP, stream interval)
    ]


def test_cases_sent_with_thinking_off_are_parsed_with_it_off() -> None:
    assert [case["id"] for case in CASES if not case_thinking(case)] == ["plain_text_nonthinking_mode"]
    case = next(case for case in CASES if case["id"] == "plain_text_nonthinking_mode")
    assert case_view(parse_output(case["model_output"], thinking=False)) == case["expected"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_whole_text_matches_reference(case: dict[str, Any]) -> None:
    result = parse_output(case["model_output"], _tools(case), thinking=case_thinking(case))
    assert case_view(result) == case["expected"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_exact_stream_equals_whole_for_every_split(case: dict[str, Any], glm_tokenizer: Tokenizer) -> None:
    thinking = case_thinking(case)
    expected = expected_from(parse_output(case["model_output"], _tools(case), thinking=thinking,
                                          id_factory=counter_ids()))
    for pieces in _splits(case, glm_tokenizer):
        parser = OutputParser(_tools(case), thinking=thinking, id_factory=counter_ids())
        assert stream(pieces, parser) == expected, pieces


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_incremental_stream(case: dict[str, Any], glm_tokenizer: Tokenizer) -> None:
    thinking = case_thinking(case)
    expected = expected_from(parse_output(case["model_output"], _tools(case), thinking=thinking,
                                          id_factory=counter_ids()))
    for pieces in _splits(case, glm_tokenizer):
        parser = OutputParser(_tools(case), thinking=thinking, incremental=True, id_factory=counter_ids())
        got = stream(pieces, parser)
        if got == expected:
            assert not parser.diverged
            continue
        # Only a call that proved malformed after its header went out may differ, and the parser says so.
        assert case["id"] in INCREMENTAL_DIVERGES, pieces
        assert parser.diverged
        # The client holds a partial call: its arguments must still be valid JSON, and no text is lost.
        assert {key: got[key] for key in ("reasoning_content", "content")} == {
            key: expected[key] for key in ("reasoning_content", "content")
        }
        for call in got["tool_calls"].values():
            assert isinstance(json.loads(call["arguments"]), dict)


@pytest.mark.parametrize("case_id", sorted(INCREMENTAL_DIVERGES))
def test_incremental_divergence_happens_when_the_header_went_out(case_id: str) -> None:
    case = next(case for case in CASES if case["id"] == case_id)
    parser = OutputParser(case["tools"], incremental=True)
    got = stream(list(case["model_output"]), parser)
    assert parser.diverged and parser.sent_tool_calls
    assert got["content"] == case["expected"]["content"]


LONG_VALUE_CALL = (
    "\n<think>Write it.</think>\nSaving.\n<tool_call>write_file\n<arg_key>path</arg_key>\n"
    "<arg_value>a.md</arg_value>\n<arg_key>content</arg_key>\n<arg_value>line one\nline </arg_value> two\n"
    "</arg_value>\n</tool_call>"
)
WRITE_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "write_file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"}},
        },
    },
}


def test_incremental_mode_streams_string_values_before_the_call_ends() -> None:
    parser = OutputParser([WRITE_FILE_TOOL], incremental=True, id_factory=counter_ids())
    accumulator = Accumulator()
    cut = LONG_VALUE_CALL.index(" two")
    accumulator.add(parser.feed(LONG_VALUE_CALL[:cut]))
    partial = accumulator.snapshot()
    assert partial["content"] == "Saving."
    assert partial["tool_calls"][0]["name"] == "write_file"
    # The literal `</arg_value>` is held until what follows shows it is not structural.
    assert partial["tool_calls"][0]["arguments"] == '{"path": "a.md", "content": "line one\\nline '
    accumulator.add(parser.feed(LONG_VALUE_CALL[cut:]))
    accumulator.add(parser.finish())
    arguments = accumulator.snapshot()["tool_calls"][0]["arguments"]
    assert json.loads(arguments) == {"path": "a.md", "content": "line one\nline </arg_value> two\n"}
    assert arguments == parser.result().tool_calls[0].arguments


def test_exact_mode_sends_a_call_whole_when_it_closes() -> None:
    parser = OutputParser([WRITE_FILE_TOOL], id_factory=counter_ids())
    head, tail = LONG_VALUE_CALL[:-3], LONG_VALUE_CALL[-3:]
    deltas = parser.feed(head)
    assert all("tool_calls" not in delta for delta in deltas)
    deltas = parser.feed(tail)
    assert deltas == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "write_file", "arguments": parser.result().tool_calls[0].arguments},
                }
            ]
        }
    ]
    assert parser.sent_tool_calls


def test_several_calls_in_one_delta_each_get_their_index() -> None:
    case = next(case for case in CASES if case["id"] == "kitchen_sink")
    parser = OutputParser(case["tools"], id_factory=counter_ids())
    got = accumulate(parser.feed(case["model_output"]) + parser.finish())
    assert [call["name"] for call in got["tool_calls"].values()] == ["write_file", "set_config", "get_weather"]
    assert [call["id"] for call in got["tool_calls"].values()] == ["call_1", "call_2", "call_3"]


def test_parallel_tool_calls_false_keeps_only_the_first_call() -> None:
    case = next(case for case in CASES if case["id"] == "parallel_calls_newline_separated")
    for incremental in (False, True):
        parser = OutputParser(case["tools"], parallel_tool_calls=False, incremental=incremental)
        got = stream(list(case["model_output"]), parser)
        assert [json.loads(call["arguments"]) for call in got["tool_calls"].values()] == [{"city": "Paris", "days": 2}]
        assert len(parser.result().tool_calls) == 1
        assert got["content"] is None


def test_thinking_off_puts_everything_in_content() -> None:
    text = "\n<think>not reasoning</think>\nanswer"
    result = parse_output(text, thinking=False)
    assert result.reasoning_content is None
    assert result.content == "<think>not reasoning</think>\nanswer"


def test_calls_inside_thinking_are_reasoning() -> None:
    text = "\n<think>maybe <tool_call>ls\n</tool_call></think>\nNo call needed."
    result = parse_output(text, [WRITE_FILE_TOOL])
    assert result.reasoning_content == "maybe <tool_call>ls\n</tool_call>"
    assert result.content == "No call needed."
    assert result.tool_calls == ()


def test_doubled_think_tag_and_restart_before_visible_reasoning() -> None:
    text = "\n<think>\n<think>Real reasoning.</think>\nDone."
    expected = parse_output(text, id_factory=counter_ids())
    assert expected.reasoning_content == "Real reasoning."
    for size in (1, 2, 3):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert stream(pieces, OutputParser()) == expected_from(expected)


def test_second_think_tag_after_streamed_reasoning_is_a_known_stream_divergence() -> None:
    text = "\n<think>First.<think>Second.</think>\nAnswer."
    whole = parse_output(text)
    assert (whole.reasoning_content, whole.content) == ("Second.", "Answer.")  # what follows the last <think>
    assert stream([text], OutputParser()) == expected_from(whole)
    # Streamed, `First.` went out before the second tag arrived: it stays, and the tag is sent as reasoning text.
    for pieces in (list(text), ["\n<think>First.", "<think>Second.</think>\nAnswer."]):
        streamed = stream(pieces, OutputParser())
        assert (streamed["reasoning_content"], streamed["content"]) == ("First.<think>Second.", "Answer.")


def test_stray_close_tag_whole_text_and_known_stream_divergence() -> None:
    text = "Reasoning without an opening tag.</think>\nThe answer."
    whole = parse_output(text)
    assert (whole.reasoning_content, whole.content) == ("Reasoning without an opening tag.", "The answer.")
    assert stream([text], OutputParser()) == expected_from(whole)
    # Streamed, the first words already went out as content: the tag is dropped, the text stays content.
    streamed = stream(list(text), OutputParser())
    assert streamed["reasoning_content"] is None
    assert streamed["content"] == "Reasoning without an opening tag.\nThe answer."


def test_stray_close_tag_after_a_call_start_is_content() -> None:
    text = "<tool_call>x\n</tool_call> then </think> more"
    assert parse_output(text).reasoning_content is None


def test_prefill_of_a_forced_call_is_not_emitted() -> None:
    prefill = "\n<think></think>\n<tool_call>write_file\n"
    generated = "<arg_key>path</arg_key>\n<arg_value>x.txt</arg_value>\n</tool_call>"
    for incremental in (False, True):
        parser = OutputParser([WRITE_FILE_TOOL], prefill=prefill, incremental=incremental, id_factory=counter_ids())
        got = stream(list(generated), parser)
        assert got["content"] is None and got["reasoning_content"] is None
        assert got["tool_calls"] == {0: {"id": "call_1", "name": "write_file", "arguments": '{"path": "x.txt"}'}}
    result = parse_output(generated, [WRITE_FILE_TOOL], prefill=prefill)
    assert [call.arguments_dict() for call in result.tool_calls] == [{"path": "x.txt"}]


def test_result_and_ids() -> None:
    result = parse_output("<tool_call>f\n</tool_call>", [{"type": "function", "function": {"name": "f"}}])
    assert result.has_tool_calls
    call_id = result.tool_calls[0].id
    assert call_id.startswith("call_") and call_id[5:].isalnum() and len(call_id) == 29
    assert new_tool_call_id() != new_tool_call_id()


def test_feed_after_finish_is_an_error() -> None:
    parser = OutputParser()
    parser.finish()
    assert parser.finish() == []
    with pytest.raises(RuntimeError):
        parser.feed("x")


def test_incremental_duplicate_key_is_flagged_and_still_valid_json(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "<tool_call>write_file\n<arg_key>path</arg_key>\n<arg_value>a</arg_value>\n"
        "<arg_key>path</arg_key>\n<arg_value>b</arg_value>\n</tool_call>"
    )
    parser = OutputParser([WRITE_FILE_TOOL], incremental=True)
    got = stream(list(text), parser)
    assert parser.diverged and "repeated a key" in caplog.text
    assert parser.result().tool_calls[0].arguments == '{"path": "b"}'
    assert got["tool_calls"][0]["arguments"] == '{"path": "a", "path": "b"}'  # the first value went out already
    assert json.loads(got["tool_calls"][0]["arguments"]) == {"path": "b"}  # JSON objects: the last duplicate wins
