"""Send one streaming request to an OpenAI-compatible endpoint and time it (`--backend openai|openai-chat`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from loadtests.sample_request import SampleRequest
from loadtests.stream_accumulator import StreamAccumulator, StreamError, error_message_of_body

BACKENDS = ("openai", "openai-chat")
DEFAULT_ENDPOINTS = {"openai": "/v1/completions", "openai-chat": "/v1/chat/completions"}

# Error kinds raised before or around the stream (stream_accumulator lists those found inside it).
CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"
TRANSPORT_ERROR = "transport_error"


def http_error_kind(status: int) -> str:
    return f"http_{status}"


@dataclass(frozen=True, slots=True)
class RequestFuncInput:
    # Full URL of the generation route (base URL + endpoint).
    api_url: str
    # One of BACKENDS: the body is a completions body or a chat body.
    backend: str
    # The `model` field of the body (a served model name).
    model: str
    # What to send: prompt or messages, and max tokens.
    sample: SampleRequest
    # Sampling temperature (0.0 = greedy, as vLLM's benchmark sends).
    temperature: float = 0.0
    # Adds `ignore_eos: true` (a vLLM/SGLang extension; OpenAI itself rejects unknown fields).
    ignore_eos: bool = False
    # Extra HTTP headers (Authorization, X-Request-Id).
    headers: Mapping[str, str] = field(default_factory=dict)
    # Extra body fields (--extra-body) merged after the fields above; the sample's own extra_body wins over them.
    extra_body: Mapping[str, Any] | None = None


@dataclass(slots=True)
class RequestFuncOutput:
    # True when the stream completed with output and usage; otherwise error_kind says why.
    success: bool = False
    error_kind: str | None = None
    error: str = ""
    generated_text: str = ""
    reasoning_text: str = ""
    # usage.completion_tokens / usage.prompt_tokens as reported by the server (None when absent).
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    # The dataset's client-side prompt count (None without --tokenizer).
    prompt_len: int | None = None
    # Seconds: first output chunk, gaps between output chunks, last data event (see stream_accumulator).
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    # perf_counter() when the request was sent, and the time it waited for a --max-concurrency slot before.
    start_time: float = 0.0
    client_queue_time: float = 0.0
    finish_reason: str | None = None

    def fail(self, kind: str, message: str) -> RequestFuncOutput:
        self.success, self.error_kind, self.error = False, kind, message
        return self


def build_payload(request: RequestFuncInput) -> dict[str, Any]:
    sample = request.sample
    payload: dict[str, Any] = {"model": request.model, "temperature": request.temperature}
    if request.backend == "openai":
        payload["prompt"] = sample.prompt
        payload["max_tokens"] = sample.expected_output_len
    else:
        messages = sample.messages or ({"role": "user", "content": sample.prompt},)
        payload["messages"] = list(messages)
        payload["max_completion_tokens"] = sample.expected_output_len
        if sample.tools:
            payload["tools"] = list(sample.tools)
    payload["stream"] = True
    payload["stream_options"] = {"include_usage": True}
    if request.ignore_eos:
        payload["ignore_eos"] = True
    payload.update(request.extra_body or {})
    payload.update(sample.extra_body or {})
    return payload


async def send_request(client: httpx.AsyncClient, request: RequestFuncInput, timeout_s: float) -> RequestFuncOutput:
    """Never raises for server or network trouble: failures come back with `error_kind` set.

    NOTE: `timeout_s` bounds the whole request (connect to [DONE]), so a stuck server cannot hang the benchmark.
    """
    output = RequestFuncOutput(prompt_len=request.sample.prompt_len)
    payload = build_payload(request)
    output.start_time = time.perf_counter()
    stream = StreamAccumulator(start_time=output.start_time)
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", request.api_url, json=payload, headers=dict(request.headers)) as resp:
                if resp.status_code != 200:
                    body = await resp.aread()
                    return output.fail(http_error_kind(resp.status_code), error_message_of_body(body))
                async for line in resp.aiter_lines():
                    stream.feed_line(line, time.perf_counter())
        stream.finish()
    except StreamError as e:
        return output.fail(e.kind, e.message)
    except (TimeoutError, httpx.TimeoutException):
        return output.fail(TIMEOUT, f"no complete response within {timeout_s:g} s")
    except httpx.ConnectError as e:
        return output.fail(CONNECT_ERROR, f"{request.api_url}: {e}")
    except httpx.HTTPError as e:
        return output.fail(TRANSPORT_ERROR, f"{type(e).__name__}: {e}")
    return _succeed(output, stream)


def _succeed(output: RequestFuncOutput, stream: StreamAccumulator) -> RequestFuncOutput:
    assert stream.ttft is not None and stream.completion_tokens is not None
    output.success = True
    output.ttft = stream.ttft
    output.itl = stream.itl
    output.latency = stream.last_event_time - stream.start_time
    output.output_tokens = stream.completion_tokens
    output.prompt_tokens = stream.prompt_tokens
    output.generated_text = "".join(stream.text)
    output.reasoning_text = "".join(stream.reasoning)
    output.finish_reason = stream.finish_reason
    return output
