"""Stop strings on multi-token steps (speculative decoding delivers several tokens per step): a stop string
completed by a token in the middle of a step ends the output there. No text, token, logprob or usage count of the
tokens after it reaches the client, streamed or not. One scripted server (test-only core, 4 tokens per step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from server_harness import ServerProcess, sse_events, write_script

from tokenizer.tokenizer import Tokenizer

REPLY = "Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu."
TOKENS_PER_STEP = 4
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = write_script(tmp_path_factory.mktemp("spec_stop") / "script.json", tokens_per_step=TOKENS_PER_STEP,
                          replies=[{"text": REPLY, "stop_token": "<|user|>"}])
    proc = ServerProcess(tiny_model_dir, env={"GLM_SERVE_TEST_SCRIPT": str(script)})
    yield proc
    proc.stop()


def cut_inside_a_step(tiny_model_dir: Path) -> list[tuple[str, int]]:
    """(stop string, tokens up to the one completing it) for stop strings completed before the end of a step."""
    tokenizer = Tokenizer.from_model_dir(tiny_model_dir)
    ids = tokenizer.encode(REPLY)
    cases = []
    for word in REPLY.rstrip(".").split()[1:]:
        num_tokens = next(n for n in range(1, len(ids) + 1) if word in tokenizer.decode(ids[:n]))
        if num_tokens % TOKENS_PER_STEP and num_tokens < len(ids):
            cases.append((word, num_tokens))
    return cases


def test_a_stop_string_inside_a_multi_token_step_ends_ids_logprobs_and_usage_there(
        server: ServerProcess, tiny_model_dir: Path) -> None:
    cases = cut_inside_a_step(tiny_model_dir)
    assert len(cases) >= 3
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
    for stop, num_tokens in cases:
        want = REPLY[: REPLY.index(stop)]
        out = client.chat.completions.create(model="tiny", messages=MESSAGES, stop=[stop], logprobs=True)
        choice = out.choices[0]
        assert (choice.message.content, choice.finish_reason) == (want.strip(), "stop")  # chat content is stripped
        assert out.usage.completion_tokens == num_tokens
        assert len(choice.logprobs.content) == num_tokens
        body = {"model": "tiny", "messages": MESSAGES, "stop": [stop], "stream": True, "logprobs": True,
                "stream_options": {"include_usage": True}}
        with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=60) as response:
            chunks = [json.loads(e) for e in sse_events(response.iter_lines()) if e != "[DONE]"]
        deltas = [c["choices"][0] for c in chunks if c["choices"]]
        assert "".join(d["delta"].get("content") or "" for d in deltas).strip() == want.strip()
        assert sum(len(d["logprobs"]["content"]) for d in deltas if d.get("logprobs")) == num_tokens
        assert [c["usage"]["completion_tokens"] for c in chunks if not c["choices"]] == [num_tokens]
        legacy = client.completions.create(model="tiny", prompt="hi", stop=[stop], logprobs=1, max_tokens=64)
        assert legacy.choices[0].text == want and legacy.usage.completion_tokens == num_tokens
        assert len(legacy.choices[0].logprobs.tokens) == num_tokens
