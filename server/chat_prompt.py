"""Chat request -> prompt text and token ids, plus what the output parser must know (thinking, tools, prefill).

Thinking switch precedence (contract section 2): `chat_template_kwargs.enable_thinking` > `thinking.type` >
`reasoning_effort` ("none" is off) > the server's default template kwargs > the template's default (on).
`tool_choice` "required"/named is forced through the prompt (`tokenizer.forced_calls`): the suffix is appended
to the prompt and handed to the parser as its prefill. With `tool_choice: "none"` the tools stay in the prompt
(as vLLM) but no call is extracted. Rendering and encoding run in a worker thread (`build_chat_prompt` is sync).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.errors import APIError, bad_request
from server.protocol import ChatCompletionRequest
from tokenizer.chat_template import ChatTemplate, ChatTemplateError
from tokenizer.forced_calls import InvalidToolChoiceError, forced_call_for
from tokenizer.messages import InvalidMessageError
from tokenizer.tokenizer import Tokenizer

# What a (hostile or broken) template can raise besides jinja's TemplateError: a request error, never a 500.
TEMPLATE_FAILURES = (TypeError, ArithmeticError, RecursionError)


@dataclass(frozen=True)
class ChatPrompt:
    text: str  # the rendered prompt, forced-call suffix included
    token_ids: list[int]
    thinking: bool  # the template's enable_thinking as resolved
    parse_reasoning: bool  # split reasoning out of the output (thinking and separate_reasoning)
    tools: list[dict[str, Any]] | None  # tools the parser extracts calls for (None: no extraction)
    prefill: str  # forced-call text the reply continues (the parser reads it first)


def resolve_thinking(request: ChatCompletionRequest, server_defaults: Mapping[str, Any]) -> bool:
    kwargs = request.chat_template_kwargs or {}
    if "enable_thinking" in kwargs:
        value = kwargs["enable_thinking"]
        if not isinstance(value, bool):
            raise bad_request("chat_template_kwargs.enable_thinking must be a boolean",
                              "chat_template_kwargs.enable_thinking")
        return value
    if request.thinking is not None:
        return request.thinking.type == "enabled"
    if request.reasoning_effort is not None:
        return request.reasoning_effort.strip().lower() != "none"
    return bool(server_defaults.get("enable_thinking", True))


def validate_chat_request(request: ChatCompletionRequest, allow_custom_template: bool) -> None:
    """Cross-field rules that pydantic does not express; each raises a 400 naming the field."""
    if request.stream_options is not None and not request.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", "top_logprobs")
    if request.response_format is not None and request.response_format.type != "text":
        raise bad_request(f"response_format type {request.response_format.type!r} is not supported "
                          "(no guided decoding); use 'text'", "response_format")
    if request.chat_template is not None and not allow_custom_template:
        raise bad_request("custom chat templates are disabled on this server", "chat_template")
    if request.continue_final_message and request.add_generation_prompt:
        raise bad_request("continue_final_message and add_generation_prompt cannot both be true",
                          "continue_final_message")
    if request.continue_final_message and request.messages[-1].role != "assistant":
        raise bad_request("continue_final_message needs a final assistant message", "messages")
    for index, tool in enumerate(request.tools or ()):
        _validate_schema(tool.function.parameters, f"tools[{index}].function.parameters")


def _validate_schema(schema: Mapping[str, Any] | None, param: str) -> None:
    if schema is None:
        return
    if "type" in schema and schema["type"] != "object":
        raise bad_request(f"{param}: the parameters schema must have type 'object'", param)
    properties = schema.get("properties")
    if properties is not None and not (isinstance(properties, Mapping)
                                       and all(isinstance(p, Mapping) for p in properties.values())):
        raise bad_request(f"{param}.properties must map names to schema objects", f"{param}.properties")


def build_chat_prompt(request: ChatCompletionRequest, raw: Mapping[str, Any], tokenizer: Tokenizer,
                      server_defaults: Mapping[str, Any]) -> ChatPrompt:
    """`raw` is the decoded JSON body: messages and tools are rendered from it, so the client's key order (which
    the template's `tojson` keeps) survives; `request` is its validated form."""
    thinking = resolve_thinking(request, server_defaults)
    kwargs: dict[str, Any] = {**server_defaults, **(request.chat_template_kwargs or {}), "enable_thinking": thinking}
    if request.thinking is not None and request.thinking.clear_thinking is not None:
        kwargs.setdefault("clear_thinking", request.thinking.clear_thinking)
    messages = list(raw["messages"])
    tools = list(raw["tools"]) if request.tools else None
    choice_value = raw.get("tool_choice")
    try:
        forced = forced_call_for(choice_value, tools)
    except InvalidToolChoiceError as error:
        raise bad_request(str(error), "tool_choice") from None
    add_generation_prompt = request.add_generation_prompt and not request.continue_final_message
    try:
        template = (ChatTemplate(request.chat_template, tokenizer.template_tokens)
                    if request.chat_template is not None else None)
        if template is not None:
            text = template.render(messages, tools, add_generation_prompt, **kwargs)
        else:
            text = tokenizer.apply_chat_template(messages, tools, add_generation_prompt, **kwargs)
    except InvalidMessageError as error:
        raise bad_request(str(error), error.param) from None
    except ChatTemplateError as error:
        raise bad_request(str(error), "messages") from None
    except TEMPLATE_FAILURES as error:  # NOTE: raised past jinja's TemplateError (sandbox range cap, {% include %})
        raise bad_request(f"chat template error: {type(error).__name__}: {error}", "messages") from None
    if request.continue_final_message:
        text = _cut_after_final_message(text, messages[-1])
    prefill = forced.prompt_suffix(text) if forced is not None else ""
    text += prefill
    extract = tools if tools and choice_value != "none" else None
    return ChatPrompt(text, tokenizer.encode(text), thinking, thinking and request.separate_reasoning,
                      extract, prefill)


def _cut_after_final_message(text: str, message: Mapping[str, Any]) -> str:
    """continue_final_message: the prompt ends right after the final assistant message's content."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    content = (content or "").strip()
    position = text.rfind(content) if content else -1
    if position < 0:
        raise APIError(400, "continue_final_message: the final message does not appear in the rendered prompt",
                       param="messages")
    return text[: position + len(content)]
