"""The server on a real (tiny, random) GLM-4.5 model: wire shapes, errors, auth, limits, disconnects, metrics.

One server for the module: `--api-key`, a 256-token context and room for two queued sequences, so that every
error class, the 503 admission path and abort-on-disconnect can be provoked.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_harness import ServerProcess, sample_value, sse_events, wait_for

KEY = "sk-test-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_MODEL_LEN = 256
HI = [{"role": "user", "content": "Hi there"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Any:
    proc = ServerProcess(tiny_model_dir, "--api-key", KEY, "--max-model-len", str(MAX_MODEL_LEN),
                         "--max-queued-requests", "4", "--kv-cache-memory", "4MiB")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def post(server: ServerProcess, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, headers={**AUTH, **(headers or {})}, timeout=60)


def post_root(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=AUTH, timeout=60)


def metrics(server: ServerProcess) -> str:
    return httpx.get(server.url + "/metrics", headers=AUTH, timeout=10).text


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_models_version_health(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # no key needed
    version = httpx.get(server.url + "/version", headers=AUTH, timeout=10).json()
    assert version["version"] and len(version["model_revision"]) == 12 and version["build"]
    models = httpx.get(server.base_url + "/models", headers=AUTH, timeout=10).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny", "tiny-alias"]
    assert all(m["object"] == "model" and m["max_model_len"] == MAX_MODEL_LEN for m in models["data"])
    assert httpx.get(server.base_url + "/models/tiny-alias", headers=AUTH, timeout=10).json()["id"] == "tiny-alias"
    missing = httpx.get(server.base_url + "/models/nope", headers=AUTH, timeout=10)
    assert missing.status_code == 404 and error_of(missing)["code"] == "model_not_found"


def test_api_key(server: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = httpx.post(server.base_url + "/chat/completions", headers=headers,
                              json={"model": "tiny", "messages": HI}, timeout=10)
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"
    assert httpx.get(server.base_url + "/models", timeout=10).status_code == 401
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401  # not public by default
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, extra_body={"ignore_eos": True})
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion" and out.model == "tiny"
    assert isinstance(out.created, int)
    choice = out.choices[0]
    assert choice.index == 0 and choice.finish_reason == "length" and choice.message.role == "assistant"
    assert out.usage.completion_tokens == 4
    assert out.usage.total_tokens == out.usage.prompt_tokens + 4
    assert out.usage.completion_tokens_details.reasoning_tokens is not None
    assert out.usage.prompt_tokens_details.cached_tokens is not None


def test_chat_streaming_client_and_raw(client: openai.OpenAI, server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": HI, "max_tokens": 5, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200 and r.headers["x-accel-buffering"] == "no"
        events = list(sse_events(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["usage"] is None for c in chunks[:-1])
    stream = client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, stream=True,
                                            extra_body={"ignore_eos": True})
    pieces = list(stream)
    assert pieces[0].choices[0].delta.role == "assistant"
    assert pieces[-1].choices[0].finish_reason == "length"


def test_max_completion_tokens_wins_and_unknown_fields(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-alias", messages=HI, max_tokens=9, max_completion_tokens=2,
        extra_body={"ignore_eos": True, "some_future_field": {"x": 1}, "service_tier": "auto",
                    "metadata": {"a": "b"}, "store": False, "user": "u1"})
    assert out.usage.completion_tokens == 2
    assert out.model == "tiny-alias"


@pytest.mark.parametrize("body, param", [
    ({"messages": HI, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": HI, "temperature": -1}, "temperature"),
    ({"messages": HI, "top_logprobs": 3}, "top_logprobs"),
    ({"messages": HI, "n": 0}, "n"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": []}, "messages"),
    ({"messages": HI, "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": HI, "min_tokens": 5, "max_tokens": 2}, "min_tokens"),
    ({"messages": HI, "tool_choice": "required"}, "tool_choice"),
    ({"messages": HI, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"messages": [*HI, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": HI, "logit_bias": {"999999": 1}}, "logit_bias"),
])
def test_bad_requests_are_400_naming_the_field(server: ServerProcess, body: dict[str, Any], param: str) -> None:
    response = post(server, "/chat/completions", {"model": "tiny", **body})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_malformed_json_unknown_model_unknown_route(server: ServerProcess, client: openai.OpenAI) -> None:
    response = httpx.post(server.base_url + "/chat/completions", content=b"{nope", headers=AUTH, timeout=10)
    assert response.status_code == 400 and error_of(response)["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert info.value.body["code"] == "model_not_found"
    assert "`gpt-4o` does not exist" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=HI, stream_options={"include_usage": True})
    unknown = httpx.get(server.url + "/v1/nothing-here", headers=AUTH, timeout=10)
    assert unknown.status_code == 404 and error_of(unknown)["code"] is None
    big = httpx.post(server.base_url + "/chat/completions", headers=AUTH, timeout=10,
                     json={"model": "tiny", "messages": [{"role": "user", "content": "x" * 5_000_000}]})
    assert big.status_code == 413 and error_of(big)["type"] == "invalid_request_error"


def test_context_length_exceeded(server: ServerProcess) -> None:
    count = post_root(server, "/tokenize", {"model": "tiny", "messages": HI}).json()["count"]
    response = post(server, "/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 300})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded" and error["param"] == "max_tokens"
    assert error["message"] == (
        f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, you requested {count + 300} "
        f"tokens ({count} in the messages, 300 in the completion). Please reduce the length of the messages or "
        "completion.")
    long_prompt = [{"role": "user", "content": "word " * 400}]
    too_long = post(server, "/chat/completions", {"model": "tiny", "messages": long_prompt})
    assert too_long.status_code == 400 and error_of(too_long)["code"] == "context_length_exceeded"
    assert "maximum context length is 256 tokens" in error_of(too_long)["message"]


def test_thinking_off_prompt_and_prompt_tokens(server: ServerProcess, client: openai.OpenAI) -> None:
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    tokens = post_root(server, "/tokenize", {"model": "tiny", "messages": HI, **off}).json()["tokens"]
    prompt = post_root(server, "/detokenize", {"model": "tiny", "tokens": tokens}).json()["prompt"]
    assert prompt.startswith("[gMASK]<sop><|user|>\nHi there/nothink")
    assert prompt.endswith("<|assistant|>\n<think></think>")
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=2, extra_body=off)
    assert out.usage.prompt_tokens == len(tokens)
    assert out.usage.completion_tokens_details.reasoning_tokens == 0


def test_completions(server: ServerProcess, client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny", prompt=["Hello", "The quick brown"], max_tokens=3, n=2,
                                    logprobs=2, extra_body={"ignore_eos": True})
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert all(len(c.logprobs.tokens) == 3 and len(c.logprobs.top_logprobs[0]) >= 2 for c in out.choices)
    assert out.usage.completion_tokens == 12
    echo = client.completions.create(model="tiny", prompt="Hello", max_tokens=2, echo=True,
                                     extra_body={"ignore_eos": True})
    assert echo.choices[0].text.startswith("Hello")
    ids = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=2, extra_body={"ignore_eos": True})
    assert ids.usage.prompt_tokens == 3
    stream = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, stream=True,
                                       stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert post(server, "/completions", {"model": "tiny", "prompt": "x", "suffix": "y"}).status_code == 400


def test_disconnect_aborts_and_queue_limit(server: ServerProcess) -> None:
    aborted_before = sample_value(metrics(server), "vllm:request_success_total", {"finished_reason": "abort"})
    body = {"model": "tiny", "messages": HI, "max_tokens": 200, "ignore_eos": True, "n": 4, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, headers=AUTH, timeout=60) as r:
        lines = r.iter_lines()
        for line in lines:  # wait for a first content token of the stream
            if line.startswith("data: ") and '"content":"' in line and '"role"' not in line:
                break
        running = sample_value(metrics(server), "vllm:num_requests_running")
        assert running == 4
        assert sample_value(metrics(server), "vllm:kv_cache_usage_perc") > 0
        full = post(server, "/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 1})
        assert full.status_code == 503 and full.headers["retry-after"]
        assert error_of(full)["code"] == "server_overloaded"
    # the client went away mid-stream: both completions are aborted and their blocks freed
    assert wait_for(lambda: sample_value(metrics(server), "vllm:num_requests_running") == 0)
    assert wait_for(lambda: sample_value(metrics(server), "vllm:kv_cache_usage_perc") == 0)
    text = metrics(server)
    assert sample_value(text, "vllm:request_success_total", {"finished_reason": "abort"}) == aborted_before + 1
    assert sample_value(text, "vllm:admission_rejections_total", {"reason": "queue_full"}) >= 1


def test_non_streaming_disconnect_aborts(server: ServerProcess) -> None:
    aborted_before = sample_value(metrics(server), "vllm:request_success_total", {"finished_reason": "abort"})
    body = json.dumps({"model": "tiny", "messages": HI, "max_tokens": 240, "ignore_eos": True}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    # A raw socket, so that the client goes away exactly once the request is decoding, however fast the machine.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {KEY}\r\nX-Request-Id: gone-1\r\n".encode()
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert wait_for(lambda: sample_value(metrics(server), "vllm:num_requests_running") == 1, interval=0.005)
    assert wait_for(lambda: any(line.get("request_id") == "gone-1" for line in server.request_log()))
    line = next(line for line in server.request_log() if line.get("request_id") == "gone-1")
    assert line["status"] == 499 and line["finish_reason"] == "abort" and line["completion_tokens"] < 240
    assert wait_for(lambda: sample_value(metrics(server), "vllm:num_requests_running") == 0)
    assert wait_for(lambda: sample_value(metrics(server), "vllm:kv_cache_usage_perc") == 0)
    after = sample_value(metrics(server), "vllm:request_success_total", {"finished_reason": "abort"})
    assert after == aborted_before + 1


def test_metrics_names_types_labels_buckets(server: ServerProcess, client: openai.OpenAI) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    before = metrics(server)
    client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, extra_body={"ignore_eos": True})
    time.sleep(0.3)  # the engine thread updates the counters after its step
    after = metrics(server)
    labels = {"model_name": "tiny", "engine": "0"}
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert sample_value(after, name, labels) > sample_value(before, name, labels)
    assert sample_value(after, "vllm:request_success_total", {**labels, "finished_reason": "length"}) > \
        sample_value(before, "vllm:request_success_total", {**labels, "finished_reason": "length"})
    families = {family.name: family for family in text_string_to_metric_families(after)}
    expected_types = {
        "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge", "vllm:prompt_tokens": "counter", "vllm:generation_tokens": "counter",
        "vllm:request_success": "counter", "vllm:num_preemptions": "counter",
        "vllm:prefix_cache_queries": "counter", "vllm:prefix_cache_hits": "counter",
        "vllm:time_to_first_token_seconds": "histogram", "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram", "vllm:request_queue_time_seconds": "histogram",
        "vllm:request_prefill_time_seconds": "histogram", "vllm:request_decode_time_seconds": "histogram",
        "vllm:iteration_tokens_total": "histogram", "vllm:request_params_n": "histogram",
        "vllm:spec_decode_num_drafts": "counter", "http_requests": "counter",
    }
    for name, kind in expected_types.items():
        assert families[name].type == kind, name
    ttft = [s for s in families["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in ttft][:4] == ["0.001", "0.005", "0.01", "0.02"]
    assert ttft[-1].labels["le"] == "+Inf" and len(ttft) == 23
    assert all(s.labels["model_name"] == "tiny" and s.labels["engine"] == "0" for s in ttft)
    prompt_buckets = [s.labels["le"] for s in families["vllm:request_prompt_tokens"].samples
                      if s.name.endswith("_bucket")]
    assert prompt_buckets[:4] == ["1.0", "2.0", "5.0", "10.0"] and prompt_buckets[-2] == "200.0"
    assert sample_value(after, "vllm:request_queue_time_seconds_count", labels) >= 1
    assert sample_value(after, "http_requests_total", {"handler": "/v1/chat/completions", "status": "2xx"}) >= 1


def test_prefix_cache_hits_reach_usage_and_metrics(server: ServerProcess, client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 8}, *HI]
    hits_before = sample_value(metrics(server), "vllm:prefix_cache_hits_total")
    first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=1)
    second = client.chat.completions.create(model="tiny", messages=messages, max_tokens=1)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens > 32 and cached >= 32 and cached % 16 == 0  # whole 16-token blocks
    assert wait_for(lambda: sample_value(metrics(server), "vllm:prefix_cache_hits_total") >= hits_before + cached)
