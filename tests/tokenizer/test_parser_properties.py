"""Property tests: template-rendered calls parse back to the same arguments, and streaming never depends on how
the text is split."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_harness import counter_ids, expected_from, split_at, stream

from tokenizer import OutputParser, Tokenizer, parse_output, text_window

# Bounded and derandomized so the suite stays fast and reproducible; TOKENIZER_PROPERTY_EXAMPLES=N explores
# further with fresh random examples.
_EXPLORE_EXAMPLES = int(os.environ.get("TOKENIZER_PROPERTY_EXAMPLES", "0"))
PROPERTY_SETTINGS = settings(
    max_examples=_EXPLORE_EXAMPLES or 80,
    deadline=None,
    derandomize=not _EXPLORE_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)

# A `</arg_value>` the parser would take as structural (rule 5.2.4): the one ambiguity of the format for values.
STRUCTURAL_CLOSE = re.compile(r"</arg_value>(?:\s|\\n)*(?:<arg_key>|</tool_call>)")
MARKUP_PIECES = ["<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<think>"]
MARKUP_PIECES += ["</think>", "<", "</", "\\n", "\n", " ", "\t", '"', "'", "\\", "{", "}", "null", "42", "é", "😀"]

EDGE_WHITESPACE = [" ", "\n", "  \n", "\t", "\r\n"]
raw_text = st.lists(
    st.one_of(st.text(max_size=6), st.sampled_from(MARKUP_PIECES), st.sampled_from(EDGE_WHITESPACE)), max_size=8
).map("".join)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    raw_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _is_json_text(text: str) -> bool:
    try:
        json.loads(text.strip())
    except ValueError:
        return False
    return True


def _is_json_int(text: str) -> bool:
    try:
        value = json.loads(text.strip())
    except ValueError:
        return False
    return isinstance(value, int) and not isinstance(value, bool)


# (schema, values that survive rendering: the filters drop exactly the texts the format cannot tell apart)
PROPERTY_KINDS: list[tuple[dict[str, Any] | None, st.SearchStrategy[Any]]] = [
    ({"type": "string"}, raw_text),
    ({"type": "integer"}, st.integers(min_value=-(10**40), max_value=10**40)),
    ({"type": "number"}, st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False))),
    ({"type": "boolean"}, st.booleans()),
    ({"type": "null"}, st.none()),
    ({"type": "array"}, st.lists(json_values, max_size=4)),
    ({"type": "object"}, st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
    ({"type": ["string", "null"]}, st.one_of(st.none(), raw_text.filter(lambda s: s.strip() != "null"))),
    (
        {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        st.one_of(st.integers(), raw_text.filter(lambda s: not _is_json_int(s))),
    ),
    ({"enum": ["red", "1", "true"]}, st.sampled_from(["red", "1", "true"])),
    ({"type": "integer", "enum": [1, 2, 3]}, st.sampled_from([1, 2, 3])),
    (
        None,
        st.one_of(
            json_values.filter(lambda v: not isinstance(v, str)), raw_text.filter(lambda s: not _is_json_text(s))
        ),
    ),
]


def _rendered(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


names = st.text(alphabet=st.sampled_from("abcxyz_09.-é北"), min_size=1, max_size=12)
keys = st.text(alphabet=st.sampled_from("abkey_09 -é北:/"), min_size=1, max_size=10).filter(lambda k: k == k.strip())


@st.composite
def tool_and_call(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    name = draw(names)
    properties: dict[str, Any] = {}
    arguments: dict[str, Any] = {}
    for key in draw(st.lists(keys, max_size=5, unique=True)):
        schema, values = draw(st.sampled_from(PROPERTY_KINDS))
        value = draw(values.filter(lambda v: not STRUCTURAL_CLOSE.search(_rendered(v))))
        if schema is not None:
            properties[key] = schema
        arguments[key] = value
    tool = {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": properties}}}
    return tool, arguments


prose = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=30)


@PROPERTY_SETTINGS
@given(
    calls=st.lists(tool_and_call(), min_size=1, max_size=3, unique_by=lambda call: call[0]["function"]["name"]),
    content=prose,
    reasoning=prose,
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12),
)
def test_rendered_calls_parse_back(
    glm_tokenizer: Tokenizer,
    calls: list[tuple[dict[str, Any], dict[str, Any]]],
    content: str,
    reasoning: str,
    cuts: list[int],
) -> None:
    tools = [tool for tool, _ in calls]
    assistant = {
        "role": "assistant",
        "content": content,
        "reasoning_content": reasoning,
        "tool_calls": [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": tool["function"]["name"], "arguments": json.dumps(args)},
            }
            for i, (tool, args) in enumerate(calls)
        ],
    }
    prompt = glm_tokenizer.apply_chat_template(
        [{"role": "user", "content": "go"}, assistant], tools, add_generation_prompt=False
    )
    generated = prompt[prompt.rindex("<|assistant|>") + len("<|assistant|>") :]

    result = parse_output(generated, tools, id_factory=counter_ids())
    assert result.reasoning_content == (reasoning.strip() or None)
    assert result.content == (content.strip() or None)
    assert [(call.name, call.arguments) for call in result.tool_calls] == [
        (tool["function"]["name"], json.dumps(args, ensure_ascii=False)) for tool, args in calls
    ]

    expected = expected_from(result)
    pieces = split_at(generated, [cut for cut in cuts if cut < len(generated)])
    assert stream(pieces, OutputParser(tools, id_factory=counter_ids())) == expected
    assert stream(pieces, OutputParser(tools, incremental=True, id_factory=counter_ids())) == expected
    detokenizer = glm_tokenizer.detokenizer(skip_special_tokens=False)
    token_pieces = [detokenizer.push([token_id]).text for token_id in glm_tokenizer.encode(generated)]
    assert stream(token_pieces + [detokenizer.finish().text], OutputParser(tools, id_factory=counter_ids())) == expected


SOUP_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "tags": {"type": "array"}},
            },
        },
    }
]
SOUP_PIECES = MARKUP_PIECES + ["get_weather", "city", "days", "Paris", "tags", '["a"]', "<tool_c", "</arg_v", "<arg_"]
soup = st.lists(st.one_of(st.sampled_from(SOUP_PIECES), st.text(max_size=3)), max_size=40).map("".join)


def _check_split_invariance(text: str, cuts: list[int], thinking: bool) -> None:
    whole = parse_output(text, SOUP_TOOLS, thinking=thinking, id_factory=counter_ids())
    for call in whole.tool_calls:
        assert isinstance(call.arguments_dict(), dict)
    expected = expected_from(whole)
    pieces = split_at(text, [cut for cut in cuts if cut < len(text)])
    default_trim = text_window._TRIM_MIN_CHARS
    try:
        for trim in (default_trim, 1):  # 1: the scan window drops every character it can, every step
            text_window._TRIM_MIN_CHARS = trim
            _check_streams(text, pieces, thinking, expected)
    finally:
        text_window._TRIM_MIN_CHARS = default_trim


def _check_streams(text: str, pieces: list[str], thinking: bool, expected: dict[str, Any]) -> None:
    for chunks in (pieces, list(text)):
        assert stream(chunks, OutputParser(SOUP_TOOLS, thinking=thinking, id_factory=counter_ids())) == expected
        parser = OutputParser(SOUP_TOOLS, thinking=thinking, incremental=True, id_factory=counter_ids())
        got = stream(chunks, parser)
        assert (got["reasoning_content"], got["content"]) == (expected["reasoning_content"], expected["content"])
        for call in got["tool_calls"].values():
            assert isinstance(json.loads(call["arguments"]), dict)
        if not parser.diverged:
            assert got == expected


@PROPERTY_SETTINGS
@given(text=soup, cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=10))
def test_markup_soup_thinking_off(text: str, cuts: list[int]) -> None:
    _check_split_invariance(text, cuts, thinking=False)


@PROPERTY_SETTINGS
@given(
    reasoning=soup.filter(lambda s: "<think>" not in s),
    body=soup,
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=10),
)
def test_markup_soup_after_a_think_block(reasoning: str, body: str, cuts: list[int]) -> None:
    # The two documented stream divergences need a stray `</think>` or a second `<think>` inside visible
    # reasoning; this layout (the one GLM writes) has neither, so the stream must match exactly.
    _check_split_invariance("\n<think>" + reasoning + "</think>" + body, cuts, thinking=True)
