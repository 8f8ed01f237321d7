"""OpenAI messages -> template messages."""

from __future__ import annotations

from typing import Any

import pytest

from tokenizer import InvalidMessageError, normalize_messages


def _assistant_with_arguments(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}],
    }


def test_arguments_json_string_is_decoded_in_order() -> None:
    (message,) = normalize_messages([_assistant_with_arguments('{"b": 1, "a": [true, null]}')])
    arguments = message["tool_calls"][0]["function"]["arguments"]
    assert arguments == {"b": 1, "a": [True, None]} and list(arguments) == ["b", "a"]
    assert "content" not in message  # None values are dropped, as transformers does


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"), ("3", "JSON object"), (42, "JSON string")],
)
def test_bad_arguments_name_the_message_and_field(arguments: Any, reason: str) -> None:
    messages = [{"role": "user", "content": "hi"}, _assistant_with_arguments(arguments)]
    with pytest.raises(InvalidMessageError, match=reason) as error:
        normalize_messages(messages)
    assert isinstance(error.value, ValueError)
    assert error.value.message_index == 1
    assert error.value.field == "tool_calls[0].function.arguments"
    assert error.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize("arguments", ["", "  ", None, {"already": "decoded"}])
def test_empty_or_decoded_arguments(arguments: Any) -> None:
    (message,) = normalize_messages([_assistant_with_arguments(arguments)])
    assert message["tool_calls"][0]["function"]["arguments"] == (arguments if isinstance(arguments, dict) else {})


def test_flat_tool_call_form() -> None:
    (message,) = normalize_messages([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": '{"x": 1}'}]}])
    assert message["tool_calls"][0]["arguments"] == {"x": 1}
    with pytest.raises(InvalidMessageError, match=r"messages\[0\]\.tool_calls\[0\]\.arguments"):
        normalize_messages([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": "{"}]}])


def test_roles_content_parts_and_reasoning_aliases() -> None:
    messages = normalize_messages(
        [
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "x"}}, "plain", {"type": "text", "text": "!"}],
            },
            {"role": "assistant", "content": "x", "reasoning": "r1"},
            {"role": "assistant", "content": "x", "thinking": "r2", "reasoning": "ignored"},
            {"role": "assistant", "content": "x", "reasoning_content": "r3", "reasoning": "ignored"},
            {
                "role": "tool",
                "tool_call_id": "c",
                "content": [{"type": "text", "text": "12"}, {"type": "text", "text": ":00"}],
            },
        ]
    )
    assert messages[0] == {"role": "system", "content": "ab"}
    assert messages[1]["content"] == "plain!"
    assert [m["reasoning_content"] for m in messages[2:5]] == ["r1", "r2", "r3"]
    assert messages[5] == {"role": "tool", "tool_call_id": "c", "content": "12:00"}


def test_invalid_messages() -> None:
    with pytest.raises(InvalidMessageError, match=r"messages\[0\]\.role"):
        normalize_messages([{"role": "function", "content": "x"}])
    with pytest.raises(InvalidMessageError, match=r"messages\[1\]"):
        normalize_messages([{"role": "user", "content": "x"}, "not a message"])
    with pytest.raises(InvalidMessageError, match="tool_calls"):
        normalize_messages([{"role": "assistant", "tool_calls": "nope"}])


def test_pydantic_like_messages_are_dumped() -> None:
    class Message:
        def model_dump(self) -> dict[str, Any]:
            return {"role": "user", "content": "from a model", "name": None}

    assert normalize_messages([Message()]) == [{"role": "user", "content": "from a model"}]
