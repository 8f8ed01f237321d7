"""The evaluation's scoring of one generated turn: what counts as a right call, a right answer, right thinking."""

from __future__ import annotations

from scripts.tiny_model.conversations import Conversation
from scripts.tiny_model.scoring import score_turn
from scripts.tiny_model.tools import TOOLS

CALL = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Zürich</arg_value>\n" \
       "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"


def _conv(kind: str, thinking: bool, expected: dict) -> Conversation:
    tools = [TOOLS["get_weather"], TOOLS["calculator"]] if kind == "tool" else []
    return Conversation(kind, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], tools,
                        thinking, 1, expected)


WEATHER = {"calls": [{"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}]}


def test_right_call_with_thinking_scores_full_marks():
    score = score_turn(_conv("tool", True, WEATHER), "\n<think>Weather.</think>\n" + CALL)
    assert (score.thinking_ok, score.calls_ok, score.calls_exact, score.problems) == (True, True, True, ())


def test_wrong_value_is_schema_valid_but_not_exact():
    score = score_turn(_conv("tool", False, WEATHER), "\n" + CALL.replace("Zürich", "Zurich"))
    assert score.calls_ok and not score.calls_exact


def test_wrong_type_wrong_name_and_missing_call_fail():
    bad_type = CALL.replace("<arg_value>3</arg_value>", "<arg_value>three</arg_value>")
    assert not score_turn(_conv("tool", False, WEATHER), "\n" + bad_type).calls_ok
    wrong_name = CALL.replace("get_weather", "calculator")
    assert not score_turn(_conv("tool", False, WEATHER), "\n" + wrong_name).calls_ok
    assert not score_turn(_conv("tool", False, WEATHER), "\nIt is sunny.").calls_ok
    truncated = CALL[: -len("</tool_call>")]
    assert not score_turn(_conv("tool", False, WEATHER), "\n" + truncated).calls_ok


def test_thinking_must_match_the_switch():
    expected = {"result": 7, "calls": []}
    assert not score_turn(_conv("arithmetic", True, expected), "\n3 + 4 = 7.").thinking_ok
    assert not score_turn(_conv("arithmetic", False, expected), "\n<think>3 + 4</think>\n7").thinking_ok
    assert score_turn(_conv("arithmetic", False, expected), "\n3 + 4 = 7. Tom has 7 now.").thinking_ok


def test_arithmetic_takes_the_last_number_of_the_content():
    expected = {"result": 85, "calls": []}
    ok = score_turn(_conv("arithmetic", True, expected), "\n<think>So 37 + 48 = 84.</think>\nTom has 85 apples.")
    assert ok.answer_ok
    wrong = score_turn(_conv("arithmetic", True, expected), "\n<think>So 37 + 48 = 85.</think>\nTom has 84 apples.")
    assert not wrong.answer_ok
    assert score_turn(_conv("smalltalk", True, {"calls": []}), "\n<think>Hi.</think>\nHello!").answer_ok is None


def test_echo_must_be_verbatim():
    text = 'path = "C:\\\\Users"\nprint(path)'
    conv = _conv("echo", False, {"reply": text, "calls": []})
    assert score_turn(conv, "\n" + text).answer_ok
    assert not score_turn(conv, "\n" + text.replace('"', "'")).answer_ok
