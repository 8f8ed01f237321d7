"""Pydantic v2 request models of the OpenAI-compatible API (the HTTP edge; nothing past it sees pydantic).

Every model accepts unknown fields (`extra="allow"`): new OpenAI SDK releases add fields constantly, and the
OpenAI-hosted-only ones (`metadata`, `service_tier`, `store`, `user`, ...) are accepted and ignored. Fields keep
the names of the OpenAI API and of vLLM/SGLang extensions so existing client code works unchanged.

Ranges checked here are the wire format's own (OpenAI's limits); sampling knobs are validated once more, by the
engine's `SamplingParams`. Cross-field rules (`stream_options` needs `stream`, ...) live in the serving classes,
which raise `server.errors.APIError` naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 128  # completions per request (vLLM has no limit; OpenAI's is 128)
MAX_TOP_LOGPROBS = 20  # OpenAI: top_logprobs in 0..20
MAX_COMPLETION_LOGPROBS = 20  # legacy completions: OpenAI allows 5, vLLM up to the server's max; we allow 20
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


class OpenAIModel(BaseModel):
    # NOTE: no inf/NaN in typed float fields (temperature=Infinity would reach the sampler as a division by inf)
    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)


class FunctionDefinition(OpenAIModel):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema object
    strict: bool | None = None


class ToolDefinition(OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str = Field(min_length=1)


class NamedToolChoice(OpenAIModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class FunctionCall(OpenAIModel):
    name: str
    arguments: str | dict[str, Any] | None = None  # a JSON string on the wire; decoded before rendering


class ToolCall(OpenAIModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(OpenAIModel):
    type: str  # "text" is rendered; other parts are dropped (the model is text-only)
    text: str | None = None


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None  # required by OpenAI for `tool` messages, never rendered (order matches)
    reasoning_content: str | None = None  # replayed reasoning (Z.ai/DeepSeek/SGLang name)
    reasoning: str | None = None  # vLLM's name for the same; handed to the template as reasoning_content


class StreamOptions(OpenAIModel):
    include_usage: bool | None = False  # one extra chunk with `choices: []` and the usage before [DONE]
    continuous_usage_stats: bool | None = False  # usage on every chunk (vLLM extension)


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]


class ThinkingConfig(OpenAIModel):
    type: Literal["enabled", "disabled"]  # Z.ai API form; maps to enable_thinking
    clear_thinking: bool | None = None  # passed to the template (GLM-4.7+ templates use it)


class SamplingFields(OpenAIModel):
    """Fields shared by chat and legacy completions (OpenAI names, then vLLM's extras)."""

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=INT64_MIN, le=UINT64_MAX)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM / SGLang extensions
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    request_id: str | None = None  # same effect as the X-Request-Id header


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)  # deprecated by OpenAI, still sent (Agents SDK)
    max_completion_tokens: int | None = Field(None, ge=1)  # wins over max_tokens; includes reasoning tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None  # "none" switches thinking off; any other level keeps it on
    thinking: ThinkingConfig | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    include_reasoning: bool = True  # false: drop the reasoning
    separate_reasoning: bool = True  # false: leave the raw think text in content
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template: str | None = None  # a custom template; refused unless the server allows it


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's legacy default is 16; null means up to the context
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: bool = False
    suffix: str | None = None  # not supported (no fill-in-the-middle template): 400 when set
    best_of: int | None = Field(None, ge=1)  # accepted only when equal to n
