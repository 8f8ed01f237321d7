"""tool_choice "required" / named function: prompt suffix and parser prefill."""

from __future__ import annotations

import pytest

from tokenizer import ForcedCall, InvalidToolChoiceError, OutputParser, Tokenizer, forced_call_for, parse_output

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def test_choices() -> None:
    assert forced_call_for(None, TOOLS) is None
    assert forced_call_for("auto", TOOLS) is None
    assert forced_call_for("none", TOOLS) is None
    assert forced_call_for("required", TOOLS) == ForcedCall(None)
    assert forced_call_for(NAMED, TOOLS) == ForcedCall("get_weather")
    assert forced_call_for({"type": "function", "name": "get_time"}, TOOLS) == ForcedCall("get_time")


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "nope"}}, {"type": "other"}, "sometimes"]
)
def test_invalid_choices(choice: object) -> None:
    tools = [] if choice == "required" else TOOLS
    with pytest.raises(InvalidToolChoiceError):
        forced_call_for(choice, tools)


def test_a_name_the_call_format_cannot_carry_is_refused() -> None:
    tools = [{"type": "function", "function": {"name": "two words"}}]
    with pytest.raises(InvalidToolChoiceError, match="cannot be written"):
        forced_call_for({"type": "function", "function": {"name": "two words"}}, tools)


def test_suffixes_for_both_thinking_modes(glm_tokenizer: Tokenizer) -> None:
    messages = [{"role": "user", "content": "weather?"}]
    thinking_on = glm_tokenizer.apply_chat_template(messages, TOOLS)
    thinking_off = glm_tokenizer.apply_chat_template(messages, TOOLS, enable_thinking=False)
    named, required = ForcedCall("get_weather"), ForcedCall(None)
    assert named.prompt_suffix(thinking_on) == "\n<think></think>\n<tool_call>get_weather\n"
    assert named.prompt_suffix(thinking_off) == "\n<tool_call>get_weather\n"
    assert required.prompt_suffix(thinking_on) == "\n<think></think>\n<tool_call>"
    assert required.prompt_suffix(thinking_off) == "\n<tool_call>"
    # Both forced prompts end the same way as a rendered call in the template layout.
    assert (thinking_off + named.prompt_suffix(thinking_off)).endswith(
        "<|assistant|>\n<think></think>\n<tool_call>get_weather\n"
    )


@pytest.mark.parametrize("thinking", [True, False])
def test_generated_text_parses_with_the_prefill(thinking: bool) -> None:
    prompt = "<|assistant|>" if thinking else "<|assistant|>\n<think></think>"
    for forced, generated in [
        (ForcedCall("get_weather"), "<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"),
        (ForcedCall(None), "get_time\n</tool_call>"),
    ]:
        prefill = forced.prompt_suffix(prompt)
        result = parse_output(generated, TOOLS, thinking=thinking, prefill=prefill)
        assert result.content is None and result.reasoning_content is None
        assert len(result.tool_calls) == 1
        parser = OutputParser(TOOLS, thinking=thinking, prefill=prefill)
        deltas = [delta for char in generated for delta in parser.feed(char)] + parser.finish()
        assert [delta["tool_calls"][0]["function"]["name"] for delta in deltas] == [result.tool_calls[0].name]
