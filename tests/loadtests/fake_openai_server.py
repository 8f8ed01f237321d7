"""A tiny in-process OpenAI-compatible streaming server with scripted timings and faults, for load-generator tests.

It follows the wire contract (openai-api-contract.md section 5): a role-only first delta, one chunk per
`tokens_per_chunk` output tokens, a separate finish chunk with `delta: {}`, one `choices: []` usage chunk when
`stream_options.include_usage` is set, then `data: [DONE]`. Every output token is the word " w<i>", so counts
are exact. Runs uvicorn in a daemon thread on a free 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

MODEL_NAME = "fake-glm"
# Prompt tokens the fake chat "template" adds per message.
CHAT_TOKENS_PER_MESSAGE = 3


@dataclass
class FakeBehaviour:
    # Sleep before the first output chunk (after the role chunk) and between output chunks, seconds.
    ttft_s: float = 0.0
    itl_s: float = 0.0
    # Output tokens carried by one chunk (> 1 imitates MTP speculative decoding).
    tokens_per_chunk: int = 1
    # Output tokens per request; None = the request's max tokens.
    output_tokens: int | None = None
    # Every n-th request (1-based arrival count) gets: a 503 before streaming / an error event mid-stream.
    http_503_every: int = 0
    midstream_error_every: int = 0
    # Leave out the usage chunk even when asked for it; stop the stream before [DONE].
    omit_usage: bool = False
    omit_done: bool = False
    # Drafts accounted in /metrics per output chunk (speculative-decoding counters), 0 = no counters exported.
    drafts_per_chunk: int = 0


@dataclass
class FakeState:
    behaviour: FakeBehaviour = field(default_factory=FakeBehaviour)
    # (route, body, headers) of every generation request, in arrival order.
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted: int = 0


def _prompt_tokens(route: str, body: dict[str, Any]) -> int:
    if route == "completions":
        return len(str(body.get("prompt", "")).split())
    return sum(len(str(m.get("content") or "").split()) + CHAT_TOKENS_PER_MESSAGE for m in body["messages"])


def _chunk(route: str, text: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
    if route == "completions":
        choice: dict[str, Any] = {"index": 0, "text": text or "", "finish_reason": finish}
        return {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": MODEL_NAME,
                "choices": [choice], "usage": None}
    delta: dict[str, Any] = {}
    if role:
        delta = {"role": "assistant", "content": ""}
    elif text is not None:
        delta = {"content": text}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def build_app(state: FakeState) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "root": MODEL_NAME}]}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        if not state.behaviour.drafts_per_chunk:
            return PlainTextResponse("# no spec decode\n")
        labels = f'engine="0",model_name="{MODEL_NAME}"'
        return PlainTextResponse(
            f"vllm:spec_decode_num_drafts_total{{{labels}}} {float(state.num_drafts)}\n"
            f"vllm:spec_decode_num_draft_tokens_total{{{labels}}} {float(state.num_draft_tokens)}\n"
            f"vllm:spec_decode_num_accepted_tokens_total{{{labels}}} {float(state.num_accepted)}\n"
            f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{{labels},position="0"}} {float(state.num_accepted)}\n'
        )

    async def generate(route: str, request: Request):
        body = await request.json()
        state.requests.append((route, body, dict(request.headers)))
        number = len(state.requests)
        b = state.behaviour
        if b.http_503_every and number % b.http_503_every == 0:
            error = {"message": "queue full", "type": "server_error", "param": None, "code": "server_overloaded"}
            return JSONResponse({"error": error}, status_code=503, headers={"Retry-After": "1"})
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        n_out = b.output_tokens if b.output_tokens is not None else max_tokens
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        fail_midstream = bool(b.midstream_error_every and number % b.midstream_error_every == 0)
        return StreamingResponse(
            _stream(state, route, body, n_out, usage_wanted, fail_midstream), media_type="text/event-stream"
        )

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await generate("completions", request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await generate("chat", request)

    return app


async def _stream(state: FakeState, route: str, body: dict[str, Any], n_out: int, usage_wanted: bool,
                  fail_midstream: bool):
    b = state.behaviour
    state.in_flight += 1
    state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
    try:
        if route == "chat":
            yield _sse(_chunk(route, None, role=True))
        yield b": ping\n\n"
        await asyncio.sleep(b.ttft_s)
        sent = 0
        while sent < n_out:
            if sent:
                await asyncio.sleep(b.itl_s)
            take = min(b.tokens_per_chunk, n_out - sent)
            yield _sse(_chunk(route, "".join(f" w{sent + i}" for i in range(take))))
            if b.drafts_per_chunk and sent:
                state.num_drafts += 1
                state.num_draft_tokens += b.drafts_per_chunk
                state.num_accepted += take - 1
            sent += take
            if fail_midstream and sent >= n_out // 2:
                error = {"message": "engine died", "type": "server_error", "param": None, "code": None}
                yield _sse({"error": error})
                yield _sse("[DONE]")
                return
        yield _sse(_chunk(route, None, finish="length"))
        if usage_wanted and not b.omit_usage:
            prompt = _prompt_tokens(route, body)
            usage = {"prompt_tokens": prompt, "completion_tokens": n_out, "total_tokens": prompt + n_out}
            yield _sse({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL_NAME,
                        "choices": [], "usage": usage})
        if not b.omit_done:
            yield _sse("[DONE]")
    finally:
        state.in_flight -= 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAIServer:
    """`with FakeOpenAIServer(FakeBehaviour(...)) as server:` then point the benchmark at `server.base_url`."""

    def __init__(self, behaviour: FakeBehaviour | None = None) -> None:
        self.state = FakeState(behaviour=behaviour or FakeBehaviour())
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(self.state), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    """Stand-alone fake server for measuring the load generator's own ceiling (see BENCHMARKS.md)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    args = parser.parse_args()
    behaviour = FakeBehaviour(ttft_s=args.ttft_ms / 1000, itl_s=args.itl_ms / 1000,
                              tokens_per_chunk=args.tokens_per_chunk)
    uvicorn.run(build_app(FakeState(behaviour=behaviour)), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
