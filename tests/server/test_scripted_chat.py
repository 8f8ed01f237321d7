"""Chat semantics end to end through HTTP with controlled model output (the test-only scripted engine core).

A random model writes gibberish, so the paths that depend on what the model says (tool calls, reasoning split,
finish_reason `tool_calls`, forced calls, thinking off) run against `server.scripted_engine`, which replays the
completions below; everything else (template, tokenizer, detokenizer, parser, SSE) is the real server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_harness import ServerProcess, sse_events, write_script

THINK_AND_CALLS = (
    "\n<think>The user wants weather in two cities.</think>\nChecking both.\n"
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
    "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>\n"
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome \"old\" town</arg_value>\n</tool_call>"
)
# Real special tokens ([gMASK], <sop>: special in GLM-4.5) in reasoning, content and an argument value, around the
# parser's tags (not special).
SPECIAL = (
    "\n<think>Mask [gMASK] seen.</think>\nMarker<sop> here.\n"
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo[gMASK]</arg_value>\n</tool_call>"
)
REPLIES = [
    {"when": "Echo the markers", "text": SPECIAL, "stop_token": "<|observation|>"},
    # forced calls: the prompt ends with the forced suffix, the reply continues inside the call
    {"when": "<think></think>\n<tool_call>get_weather\n", "text": "<arg_key>city</arg_key>\n<arg_value>Oslo"
     "</arg_value>\n</tool_call>", "stop_token": "<|observation|>"},
    {"when": "<think></think>\n<tool_call>", "text": "get_weather\n<arg_key>city</arg_key>\n<arg_value>Bergen"
     "</arg_value>\n</tool_call>", "stop_token": "<|observation|>"},
    {"when": "<tool_response>", "text": "\n<think>Got it.</think>\nIt is sunny in Paris.", "stop_token": "<|user|>"},
    {"when": "weather", "text": THINK_AND_CALLS, "stop_token": "<|observation|>"},
    {"when": "<think></think>", "text": "\nThe answer is 4.", "stop_token": "<|user|>"},
    {"when": "add two", "text": "\n<think>Two plus two is four.</think>\nThe answer is 4.", "stop_token": "<|user|>"},
    {"text": "\nHello there, friend.", "stop_token": "<|endoftext|>"},
]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather forecast", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"], "additionalProperties": False}}}
WEATHER = [{"role": "user", "content": "What is the weather in Paris and Rome?"}]
ADD = [{"role": "user", "content": "Please add two and two."}]


@pytest.fixture(scope="module")
def prompt_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scripted") / "prompts.jsonl"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, prompt_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = write_script(tmp_path_factory.mktemp("script") / "script.json", replies=REPLIES, tokens_per_step=1,
                          prompt_log=str(prompt_log))
    proc = ServerProcess(tiny_model_dir, env={"GLM_SERVE_TEST_SCRIPT": str(script)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)


def last_prompt(prompt_log: Path) -> str:
    return json.loads(prompt_log.read_text(encoding="utf-8").splitlines()[-1])["prompt"]


def raw_stream(server: ServerProcess, body: dict[str, Any]) -> list[dict[str, Any] | str]:
    """The stream as raw SSE: parsed JSON events, and the literal "[DONE]"."""
    with httpx.stream("POST", server.base_url + "/chat/completions", json={"model": "tiny", **body},
                      timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        payloads = list(sse_events(response.iter_lines()))
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def test_tool_calls_with_reasoning_non_streaming(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL])
    choice = out.choices[0]
    assert out.id.startswith("chatcmpl-")
    assert choice.finish_reason == "tool_calls"
    message = choice.message
    assert message.content == "Checking both."
    assert message.model_extra["reasoning_content"] == "The user wants weather in two cities."
    calls = message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2}  # typed by the schema
    assert json.loads(calls[1].function.arguments) == {"city": 'Rome "old" town'}
    assert calls[0].id.startswith("call_") and calls[0].id != calls[1].id
    usage = out.usage
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert usage.completion_tokens > usage.completion_tokens_details.reasoning_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_streamed_tool_calls_equal_non_streamed(client: openai.OpenAI, server: ServerProcess) -> None:
    whole = client.chat.completions.create(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL])
    with client.chat.completions.stream(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.content == whole.choices[0].message.content
    assert [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls] == \
        [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]
    assert streamed.message.tool_calls[0].function.parsed_arguments == {"city": "Paris", "days": 2}
    events = raw_stream(server, {"messages": WEATHER, "tools": [WEATHER_TOOL],
                                 "stream": True, "stream_options": {"include_usage": True}})
    check_chunk_rules(events)
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content") or ""
                        for e in events if isinstance(e, dict) and e["choices"])
    assert reasoning == whole.choices[0].message.model_extra["reasoning_content"]


def check_chunk_rules(events: list[Any]) -> None:
    """Contract section 5: ids, role once, tool-call fragments, finish chunk, usage chunk, [DONE] last."""
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    regular = [c for c in chunks if c["choices"]]
    assert all("usage" in c and c["usage"] is None for c in regular)
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    deltas = [c["choices"][0]["delta"] for c in regular]
    assert [("role" in d) for d in deltas].count(True) == 1 and deltas[0]["role"] == "assistant"
    seen_headers: set[int] = set()
    for delta in deltas:
        for fragment in delta.get("tool_calls", []):
            assert "index" in fragment
            has_header = "id" in fragment
            assert has_header == (fragment["index"] not in seen_headers)
            if has_header:
                assert fragment["type"] == "function" and fragment["function"]["name"]
                seen_headers.add(fragment["index"])
            else:
                assert set(fragment) == {"index", "function"} and set(fragment["function"]) == {"arguments"}
    finishes = [c["choices"][0]["finish_reason"] for c in regular]
    assert finishes[-1] is not None and all(f is None for f in finishes[:-1])
    assert regular[-1]["choices"][0]["delta"] == {}


@pytest.mark.parametrize("skip, reasoning, content, city", [
    (None, "Mask  seen.", "Marker here.", "Oslo"),  # default: skip_special_tokens=true, as vLLM
    (False, "Mask [gMASK] seen.", "Marker<sop> here.", "Oslo[gMASK]"),
])
def test_skip_special_tokens_drops_special_tokens_but_never_the_parser_tags(
        client: openai.OpenAI, server: ServerProcess, skip: bool | None, reasoning: str, content: str,
        city: str) -> None:
    messages = [{"role": "user", "content": "Echo the markers, please."}]
    extra = {} if skip is None else {"skip_special_tokens": skip}
    out = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL], extra_body=extra)
    message = out.choices[0].message
    assert (message.model_extra["reasoning_content"], message.content) == (reasoning, content)
    assert out.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [{"city": city}]
    assert "<|observation|>" not in (message.content or "")  # the stop token is hidden either way
    events = raw_stream(server, {"messages": messages, "tools": [WEATHER_TOOL], "stream": True, **extra})
    deltas = [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == reasoning
    assert "".join(d.get("content") or "" for d in deltas) == content
    arguments = "".join(f["function"]["arguments"] for d in deltas for f in d.get("tool_calls") or [])
    assert json.loads(arguments) == {"city": city}


@pytest.mark.parametrize("switch", [
    {"chat_template_kwargs": {"enable_thinking": False}},
    {"thinking": {"type": "disabled"}},
    {"reasoning_effort": "none"},
])
def test_thinking_off(client: openai.OpenAI, prompt_log: Path, switch: dict[str, Any]) -> None:
    out = client.chat.completions.create(model="tiny", messages=ADD, extra_body=switch)
    assert last_prompt(prompt_log).endswith("<|assistant|>\n<think></think>")
    assert out.choices[0].message.content == "The answer is 4."
    assert out.choices[0].message.model_extra["reasoning_content"] is None
    assert out.usage.completion_tokens_details.reasoning_tokens == 0


def test_thinking_on_by_default_and_precedence(client: openai.OpenAI, prompt_log: Path) -> None:
    out = client.chat.completions.create(model="tiny", messages=ADD, reasoning_effort="low")
    assert last_prompt(prompt_log).endswith("<|assistant|>")
    assert out.choices[0].message.model_extra["reasoning_content"] == "Two plus two is four."
    assert out.choices[0].message.content == "The answer is 4."
    assert 0 < out.usage.completion_tokens_details.reasoning_tokens < out.usage.completion_tokens
    # chat_template_kwargs wins over thinking.type
    client.chat.completions.create(model="tiny", messages=ADD, extra_body={
        "chat_template_kwargs": {"enable_thinking": True}, "thinking": {"type": "disabled"}})
    assert last_prompt(prompt_log).endswith("<|assistant|>")


def test_reasoning_switches(client: openai.OpenAI) -> None:
    hidden = client.chat.completions.create(model="tiny", messages=ADD, extra_body={"include_reasoning": False})
    assert "reasoning_content" not in hidden.choices[0].message.model_extra
    raw = client.chat.completions.create(model="tiny", messages=ADD, extra_body={"separate_reasoning": False})
    assert raw.choices[0].message.content == "<think>Two plus two is four.</think>\nThe answer is 4."


@pytest.mark.parametrize("choice, city, suffix", [
    ("required", "Bergen", "<|assistant|>\n<think></think>\n<tool_call>"),
    ({"type": "function", "function": {"name": "get_weather"}}, "Oslo",
     "<|assistant|>\n<think></think>\n<tool_call>get_weather\n"),
])
def test_forced_tool_choice(client: openai.OpenAI, prompt_log: Path, choice: Any, city: str, suffix: str) -> None:
    messages = [{"role": "user", "content": "Tell me a joke."}]
    out = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL], tool_choice=choice)
    assert last_prompt(prompt_log).endswith(suffix)
    assert out.choices[0].finish_reason == "tool_calls"
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": city}
    with client.chat.completions.stream(model="tiny", messages=messages, tools=[WEATHER_TOOL],
                                        tool_choice=choice) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls[0].function.arguments == call.function.arguments


def test_tool_choice_none_and_parallel_false(client: openai.OpenAI) -> None:
    none = client.chat.completions.create(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL], tool_choice="none")
    assert none.choices[0].finish_reason == "stop"
    assert not none.choices[0].message.tool_calls
    assert "<tool_call>get_weather" in none.choices[0].message.content
    single = client.chat.completions.create(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL],
                                            parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls) == 1


def test_tool_round_trip_renders_history(client: openai.OpenAI, prompt_log: Path, tiny_model_dir: Path) -> None:
    first = client.chat.completions.create(model="tiny", messages=WEATHER, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    messages: list[dict[str, Any]] = [
        *WEATHER,
        {"role": "assistant", "content": first.choices[0].message.content,
         "reasoning_content": first.choices[0].message.model_extra["reasoning_content"],
         "tool_calls": [c.model_dump() for c in calls]},
        *({"role": "tool", "tool_call_id": c.id, "content": '{"temp": 20}'} for c in calls),
    ]
    out = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL])
    assert out.choices[0].message.content == "It is sunny in Paris."
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    hf_messages = [{**m, "tool_calls": [{**c, "function": {**c["function"],
                                                           "arguments": json.loads(c["function"]["arguments"])}}
                                        for c in m["tool_calls"]]} if "tool_calls" in m else m for m in messages]
    expected = hf.apply_chat_template(hf_messages, tools=[WEATHER_TOOL], tokenize=False, add_generation_prompt=True)
    assert last_prompt(prompt_log) == expected


def test_stop_strings_n_and_logprobs(client: openai.OpenAI, server: ServerProcess) -> None:
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                         stop=["friend"], n=2, logprobs=True, top_logprobs=2)
    assert [c.index for c in out.choices] == [0, 1]
    for choice in out.choices:
        assert choice.message.content == "Hello there,"
        assert choice.finish_reason == "stop"
        assert len(choice.logprobs.content) >= 3
        assert all(len(entry.top_logprobs) == 2 for entry in choice.logprobs.content)
    events = raw_stream(server, {"messages": [{"role": "user", "content": "hi"}], "n": 2, "stream": True,
                                 "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 1})
    chunks = [e for e in events if isinstance(e, dict)]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert ["role" in c["delta"] for c in mine].count(True) == 1
        assert "".join(c["delta"].get("content") or "" for c in mine) == "Hello there, friend."
        assert mine[-1]["finish_reason"] == "stop"
        assert sum(len(c["logprobs"]["content"]) for c in mine if c["logprobs"]) > 3
    assert [c for c in chunks if not c["choices"]][0]["usage"]["completion_tokens"] > 6


def test_request_id_header_echoed(server: ServerProcess) -> None:
    response = httpx.post(server.base_url + "/chat/completions", headers={"X-Request-Id": "my-req.42"},
                          json={"model": "tiny-alias", "messages": ADD}, timeout=60)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "my-req.42"
    assert response.json()["id"] == "chatcmpl-my-req.42"
    assert response.json()["model"] == "tiny-alias"
    body_id = httpx.post(server.base_url + "/chat/completions", timeout=60,
                         json={"model": "tiny", "messages": ADD, "request_id": "from-body"})
    assert body_id.headers["x-request-id"] == "from-body" and body_id.json()["id"] == "chatcmpl-from-body"
    bad = httpx.get(server.url + "/version", headers={"X-Request-Id": "bad id<script>"}, timeout=10)
    assert bad.headers["x-request-id"] != "bad id<script>" and len(bad.headers["x-request-id"]) == 32
    logged = [line for line in server.request_log() if line.get("request_id") == "my-req.42"]
    assert logged and logged[0]["status"] == 200 and logged[0]["reasoning_tokens"] > 0
    assert "Please add two" not in server.log()  # no prompt text in the logs


def test_continue_final_message(client: openai.OpenAI, prompt_log: Path) -> None:
    messages = [*ADD, {"role": "assistant", "content": "The answer is"}]
    client.chat.completions.create(model="tiny", messages=messages,
                                   extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert last_prompt(prompt_log).endswith("<|assistant|>\n<think></think>\nThe answer is")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=messages, extra_body={"continue_final_message": True})
    assert info.value.body["param"] == "continue_final_message"
