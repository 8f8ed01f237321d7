"""Chat template rendering: byte-for-byte parity with transformers, and the sandboxed environment's features."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tokenizer import ChatTemplate, ChatTemplateError, Tokenizer

transformers = pytest.importorskip("transformers")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather <now> & 'later' — für Städte",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "filters": {"type": "object"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def _call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    """An OpenAI wire-format call: arguments as a JSON string."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _hf_form(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What transformers needs for the same conversation: arguments decoded (its templates iterate them)."""
    converted = copy.deepcopy(messages)
    for message in converted:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return converted


CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]] = {
    "single_user": ([{"role": "user", "content": "Hello!"}], None, {}),
    "system_and_tools": (
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Weather in Paris?"}],
        [WEATHER, SEARCH, CLOCK],
        {},
    ),
    "parallel_calls_and_results": (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "reasoning_content": "Two cities, two calls.",
                "tool_calls": [
                    _call("get_weather", {"city": "Paris", "days": 2}),
                    _call("get_weather", {"city": "Rome"}, "call_2"),
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 20}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
        ],
        [WEATHER],
        {},
    ),
    "typed_and_zero_arg_calls": (
        [
            {"role": "user", "content": "Do things"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _call("search", {"query": "  spaced\nvalue ", "filters": {"b": [1, True, None], "a": "é<>&"}}),
                    _call("get_time", {}, "call_2"),
                ],
            },
            {"role": "tool", "content": "results"},
            {"role": "tool", "content": "12:00"},
            {"role": "assistant", "content": "Done."},
        ],
        [SEARCH, CLOCK],
        {},
    ),
    "multi_turn_reasoning_history": (
        [
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer", "reasoning_content": "old thoughts"},
            {"role": "user", "content": "Second question"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "  new thoughts \n",
                "tool_calls": [_call("get_weather", {"city": "Oslo"})],
            },
            {"role": "tool", "content": "cold"},
            {"role": "assistant", "content": "It is cold.", "reasoning_content": "summarise"},
        ],
        [WEATHER],
        {},
    ),
    "think_tags_inside_content": (
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "<think>\ninline reasoning\n</think>\n\nvisible answer"},
            {"role": "user", "content": "again"},
        ],
        None,
        {},
    ),
    "thinking_disabled": (
        [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three /nothink"},
        ],
        None,
        {"enable_thinking": False},
    ),
    "thinking_enabled_explicitly": ([{"role": "user", "content": "hi"}], None, {"enable_thinking": True}),
    "list_content": (
        [
            {"role": "system", "content": [{"type": "text", "text": "Sys "}, {"type": "text", "text": "prompt"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look: "},
                    {"type": "image_url", "image_url": {"url": "http://x"}},
                    {"type": "text", "text": "what is it?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
            {"role": "user", "content": "thanks"},
        ],
        None,
        {},
    ),
    "no_generation_prompt": (
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "reasoning_content": "greet"}],
        None,
        {"add_generation_prompt": False},
    ),
    "unicode_and_markup_text": (
        [{"role": "user", "content": "北京 😀 <tool_call> </arg_value> {{ not a template }} {% raw %}"}],
        [WEATHER],
        {"enable_thinking": False},
    ),
}


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(str(model_dir))


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_parity_with_transformers(name: str, glm_tokenizer: Tokenizer, hf_tokenizer: Any) -> None:
    messages, tools, kwargs = CONVERSATIONS[name]
    kwargs = dict(kwargs)
    add_generation_prompt = kwargs.pop("add_generation_prompt", True)
    original = copy.deepcopy(messages)
    ours = glm_tokenizer.apply_chat_template(messages, tools, add_generation_prompt, **kwargs)
    theirs = hf_tokenizer.apply_chat_template(
        _hf_form(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
    )
    assert ours == theirs
    assert messages == original  # the caller's messages are not modified
    assert ours.startswith("[gMASK]<sop>")


def test_openai_only_forms_render_like_their_hf_equivalents(glm_tokenizer: Tokenizer, hf_tokenizer: Any) -> None:
    ours = glm_tokenizer.apply_chat_template(
        [
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "reasoning": "thinking about it",
                "tool_calls": [_call("get_time", {})],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "12:"}, {"type": "text", "text": "00"}],
            },
        ],
        [CLOCK],
    )
    theirs = hf_tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "reasoning_content": "thinking about it",
                "tool_calls": [{"type": "function", "function": {"name": "get_time", "arguments": {}}}],
            },
            {"role": "tool", "content": "12:00"},
        ],
        tools=[CLOCK],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert ours == theirs
    assert "<think>thinking about it</think>" in ours


def test_layout_of_the_reference_document(glm_tokenizer: Tokenizer) -> None:
    messages, tools, _ = CONVERSATIONS["parallel_calls_and_results"]
    prompt = glm_tokenizer.apply_chat_template(messages, tools)
    assert prompt.endswith(
        "<|assistant|>\n<think>Two cities, two calls.</think>\nChecking both.\n<tool_call>get_weather\n"
        "<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n"
        "</tool_call>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
        '<|observation|>\n<tool_response>\n{"temp": 20}\n</tool_response>\n<tool_response>\nsunny\n'
        "</tool_response><|assistant|>"
    )
    # tojson as HF: key order kept, no HTML escaping, ensure_ascii off.
    assert json.dumps(WEATHER, ensure_ascii=False) in prompt


# A template using the HF extras, compared with transformers' own renderer.
FEATURE_TEMPLATE = """{%- set ns = namespace(count=0) -%}
{%- for m in messages -%}
{%- if m.name == 'skip' %}{% continue %}{% endif -%}
{%- if m.name == 'stop' %}{% break %}{% endif -%}
{%- set ns.count = ns.count + 1 -%}
[{{ m.role }}]
{{ m.content | tojson }}|{{ m.content | tojson(ensure_ascii=True) }}|{{ m | tojson(indent=2) }}
{% endfor -%}
{{ ns.count }} {{ dict(a=1) | tojson }} {{ eos_token }} {{ documents is none }}"""


def test_template_features_match_transformers() -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    messages = [
        {"role": "user", "content": "é <b>&'x'</b>", "z": 1, "a": 2},
        {"role": "user", "name": "skip", "content": "hidden"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "name": "stop", "content": "end"},
        {"role": "user", "content": "never"},
    ]
    ours = ChatTemplate(FEATURE_TEMPLATE, {"eos_token": "<|endoftext|>"}).render(messages, add_generation_prompt=False)
    (theirs,), _ = render_jinja_template(
        conversations=[messages], chat_template=FEATURE_TEMPLATE, eos_token="<|endoftext|>"
    )
    assert ours == theirs
    assert "\"é <b>&'x'</b>\"" in ours and "\\u00e9" in ours


def test_raise_exception_and_render_errors_are_chat_template_errors() -> None:
    template = ChatTemplate("{% if messages | length > 1 %}{{ raise_exception('only one message') }}{% endif %}")
    assert template.render([{"role": "user", "content": "x"}]) == ""
    with pytest.raises(ChatTemplateError, match="only one message"):
        template.render([{"role": "user", "content": "x"}, {"role": "user", "content": "y"}])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% for %}")


def test_sandbox_refuses_mutation_and_private_namespace_attributes() -> None:
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.append(1) }}").render([])
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% set ns = namespace(_secret=1) %}").render([])
    assert ChatTemplate("{{ ''.__class__ }}").render([]) == ""


@pytest.mark.parametrize("expression", ["'a' * 10**9", "10**9 * 'ab'", "[1] * 2**30", "2 ** 100000"])
def test_sandbox_bounds_values_built_in_one_step(expression: str) -> None:
    with pytest.raises(ChatTemplateError, match="template limit"):
        ChatTemplate("{{ " + expression + " }}").render([])


def test_sandbox_keeps_ordinary_arithmetic_and_repetition() -> None:
    assert ChatTemplate("{{ '-' * 3 }}{{ 2 ** 10 }}{{ 6 * 7 }}{{ [0] * 2 }}").render([]) == "---102442[0, 0]"


def test_strftime_now_and_template_kwargs() -> None:
    rendered = ChatTemplate("{{ strftime_now('%Y') }} {{ custom }}").render([], custom="passed")
    year, custom = rendered.split()
    assert year.isdigit() and len(year) == 4 and custom == "passed"


def test_template_source_precedence(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "from config"}))
    assert ChatTemplate.from_model_dir(tmp_path).render([]) == "from config"
    (tmp_path / "chat_template.jinja").write_text("from file")
    assert ChatTemplate.from_model_dir(tmp_path).render([]) == "from file"
    (tmp_path / "chat_template.jinja").unlink()
    named = [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default one"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": named}))
    assert ChatTemplate.from_model_dir(tmp_path).render([]) == "default one"
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError):
        ChatTemplate.from_model_dir(tmp_path)
