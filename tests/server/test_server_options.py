"""Server flags: incremental tool-call streaming on multi-token steps, `--reasoning-field reasoning`, default
template kwargs and their precedence, keys from GLM_SERVE_API_KEY, `--metrics-public`, CORS. One scripted server
(test-only core, 3 tokens per step as speculative decoding would deliver them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_harness import ServerProcess, sse_events, write_script

CODE = 'def f(x):\n    return "a\\\\b" + x  # ünïcode\n'
REPLY = ("\n<think>Write the file.</think>\n<tool_call>write_file\n<arg_key>path</arg_key>\n<arg_value>/tmp/a.py"
         f"</arg_value>\n<arg_key>content</arg_key>\n<arg_value>{CODE}</arg_value>\n<arg_key>mode</arg_key>\n"
         "<arg_value>644</arg_value>\n</tool_call>")
TOOL = {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"}}}}}
MESSAGES = [{"role": "user", "content": "Write the file."}]
THINK = {"reasoning_effort": "high"}  # wins over the server's default enable_thinking=false
KEYS = ("key-a", "key-b")


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("options")
    script = write_script(directory / "script.json", tokens_per_step=3, prompt_log=str(directory / "log.jsonl"),
                          replies=[{"text": REPLY, "stop_token": "<|observation|>"}])
    proc = ServerProcess(tiny_model_dir, "--tool-call-streaming", "incremental", "--reasoning-field", "reasoning",
                         "--default-chat-template-kwargs", '{"enable_thinking": false}', "--metrics-public",
                         "--cors-origins", "http://example.com",
                         env={"GLM_SERVE_TEST_SCRIPT": str(script), "GLM_SERVE_API_KEY": ",".join(KEYS)})
    proc.prompt_log = directory / "log.jsonl"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def client(server: ServerProcess, key: str = KEYS[1]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_incremental_tool_call_streaming_equals_whole(server: ServerProcess) -> None:
    whole = client(server).chat.completions.create(model="tiny", messages=MESSAGES, tools=[TOOL], extra_body=THINK)
    call = whole.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"path": "/tmp/a.py", "content": CODE, "mode": 644}
    assert whole.choices[0].message.model_extra["reasoning"] == "Write the file."
    assert "reasoning_content" not in whole.choices[0].message.model_extra
    body = {"model": "tiny", "messages": MESSAGES, "tools": [TOOL], "stream": True, **THINK}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEYS[0]}"}) as response:
        chunks = [json.loads(e) for e in sse_events(response.iter_lines()) if e != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert all("reasoning" in d for d in deltas if d) and not any("reasoning_content" in d for d in deltas)
    fragments = [f for d in deltas for f in d.get("tool_calls", [])]
    assert len(fragments) > 3  # arguments streamed in pieces, not as one fragment
    assert fragments[0]["id"].startswith("call_") and fragments[0]["function"]["name"] == "write_file"
    assert all(set(f) == {"index", "function"} for f in fragments[1:])
    assert "".join(f["function"]["arguments"] for f in fragments) == call.function.arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_default_template_kwargs_apply_unless_overridden(server: ServerProcess) -> None:
    out = client(server).chat.completions.create(model="tiny", messages=MESSAGES)
    prompt = json.loads(server.prompt_log.read_text().splitlines()[-1])["prompt"]  # type: ignore[attr-defined]
    assert prompt.endswith("<|assistant|>\n<think></think>")
    assert out.choices[0].message.model_extra["reasoning"] is None  # thinking off: nothing is reasoning
    assert out.usage.completion_tokens_details.reasoning_tokens == 0


def test_keys_from_environment_public_metrics_and_cors(server: ServerProcess) -> None:
    for key in KEYS:
        assert client(server, key).models.list().data[0].id == "tiny"
    with pytest.raises(openai.AuthenticationError):
        client(server, "key-c").models.list()
    assert httpx.get(server.url + "/metrics", timeout=10).status_code == 200
    preflight = httpx.options(server.base_url + "/chat/completions", timeout=10, headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://example.com"
    other = httpx.options(server.base_url + "/chat/completions", timeout=10, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
