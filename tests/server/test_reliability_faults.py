"""Faults: a request failing inside the engine fails alone (500 envelope / in-stream error) while its batch
finishes; hundreds of clients vanishing at random points lose nothing and leak nothing; aborts while waiting,
while prefilling and while decoding free everything. (Engine-loop death and a hung loop: test_lifecycle.py.)

Two servers: the scripted core (test-only: injected per-request failures, paced steps) and the tiny random model
with one sequence at a time and a 4-token step budget, so that a long prompt is prefilled over ~100 steps.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, is_idle, metric, sample_value, sse_events, wait_for, write_script
from test_async_engine import make_engine, wait_ready

from engine.sampling_params import SamplingParams
from server.async_engine import RequestFailedError

POISON = "POISON"
ENDLESS = {"text": "la ", "stop_token": None}  # runs to max_tokens


@pytest.fixture(scope="module")
def scripted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    script = write_script(tmp_path_factory.mktemp("faults") / "script.json", replies=[ENDLESS],
                          step_delay_s=0.005, fail_request_when=POISON)
    proc = ServerProcess(tiny_model_dir, "--max-model-len", "256", env={"GLM_SERVE_TEST_SCRIPT": str(script)})
    yield proc
    proc.stop()


def finished_total(server: ServerProcess) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(sample_value(text, "vllm:request_success_total", {"finished_reason": reason}) or 0.0
               for reason in ("stop", "length", "abort", "error"))


def chat_body(content: str, max_tokens: int, stream: bool = False) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "stream": stream}


class RawStream:
    """A streamed chat completion over a raw socket: the test reads exactly as far as it wants, then hangs up."""

    def __init__(self, server: ServerProcess, body: dict[str, Any], request_id: str) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        payload = json.dumps(body).encode()
        self.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          + f"X-Request-Id: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                          + payload)
        self.received = b""

    def read_events(self, count: int) -> None:
        """Reads until `count` SSE data events have arrived (the role chunk is the first)."""
        while self.received.count(b"data: ") < count:
            chunk = self.sock.recv(65536)
            assert chunk, self.received
            self.received += chunk

    def hang_up(self) -> None:
        self.sock.close()


class Streamer(threading.Thread):
    """One streamed chat completion read in the background; `first_token` is set at its first content."""

    def __init__(self, server: ServerProcess, body: dict[str, Any], request_id: str) -> None:
        super().__init__(daemon=True)
        self.server, self.body, self.request_id = server, body, request_id
        self.first_token = threading.Event()
        self.events: list[str] = []

    def run(self) -> None:
        headers = {"X-Request-Id": self.request_id}
        with httpx.stream("POST", self.server.base_url + "/chat/completions", json=self.body, headers=headers,
                          timeout=60) as response:
            for payload in sse_events(response.iter_lines()):
                self.events.append(payload)
                if '"content":"' in payload and '"role"' not in payload:
                    self.first_token.set()

    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]


def test_a_request_failing_inside_the_engine_fails_alone(scripted: ServerProcess) -> None:
    alone = httpx.post(scripted.base_url + "/chat/completions", json=chat_body("hello", 60), timeout=60).json()
    expected = alone["choices"][0]["message"]["content"]
    assert alone["usage"]["completion_tokens"] == 60 and expected.startswith("la la")
    others = [Streamer(scripted, chat_body(f"hello {i}", 60, stream=True), f"ok-{i}") for i in range(5)]
    for other in others:
        other.start()
    assert all(other.first_token.wait(30) for other in others)  # the batch is decoding
    failed = httpx.post(scripted.base_url + "/chat/completions", json=chat_body(f"{POISON} me", 60), timeout=60)
    assert failed.status_code == 500, failed.text
    error = failed.json()["error"]
    assert error["type"] == "server_error" and "failed while processing this request" in error["message"]
    streamed = Streamer(scripted, chat_body(f"{POISON} again", 60, stream=True), "poison-stream")
    streamed.run()
    assert streamed.events[-1] == "[DONE]" and "failed while processing" in streamed.chunks()[-1]["error"]["message"]
    for other in others:
        other.join(60)
        chunks = other.chunks()
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert other.events[-1] == "[DONE]" and chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert text == expected  # whole and in order: the failure of its neighbour cost it nothing
    assert httpx.get(scripted.url + "/health", timeout=10).status_code == 200
    assert wait_for(lambda: is_idle(scripted))
    assert metric(scripted, "vllm:request_success_total", {"finished_reason": "error"}) == 2


def test_a_bug_in_add_request_fails_that_request_alone(tiny_model_dir: Path) -> None:
    async def main() -> None:
        engine, _, cores = make_engine(tiny_model_dir)
        engine.start(asyncio.get_running_loop())
        await wait_ready(engine)
        real_add = cores[0].add_request

        def add(request_id: str, prompt: Any, params: SamplingParams) -> None:
            if request_id == "bad":
                raise TypeError("a bug in validation")
            real_add(request_id, prompt, params)

        cores[0].add_request = add  # type: ignore[method-assign]
        good = engine.add_request_group(["good"], [[1, 2, 3]], [SamplingParams()])
        bad = engine.add_request_group(["bad"], [[1, 2, 3]], [SamplingParams()])
        with pytest.raises(RequestFailedError, match="TypeError: a bug in validation"):
            await bad.next(timeout=10)
        while not good.is_done:
            assert await good.next(timeout=10) is not None
        bad.close()
        good.close()
        assert not engine.is_dead and not cores[0].requests
        engine.shutdown()

    asyncio.run(main())


async def vanishing_client(client: httpx.AsyncClient, server: ServerProcess, rng: random.Random) -> bool:
    """Streams a completion and goes away after a random number of events; True if it left before [DONE]."""
    max_tokens = rng.randint(5, 60)
    leave_after = rng.randint(0, max_tokens + 3)
    async with client.stream("POST", server.base_url + "/chat/completions",
                             json=chat_body("hi", max_tokens, stream=True)) as response:
        assert response.status_code == 200
        seen = 0
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return False
            if line.startswith("data: "):
                seen += 1
                if seen > leave_after:
                    return True
    return False


def test_hundreds_of_clients_disconnecting_at_random_points(scripted: ServerProcess) -> None:
    before = finished_total(scripted)
    num_clients = 300

    async def main() -> list[bool]:
        rng = random.Random(0)
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(vanishing_client(client, scripted, rng) for _ in range(num_clients)))

    left_early = asyncio.run(main())
    assert 50 < sum(left_early) < num_clients  # many left mid-stream, some read to the end
    print(f"{num_clients} streaming clients, {sum(left_early)} left mid-stream")  # quoted in RELIABILITY.md
    assert wait_for(lambda: is_idle(scripted), timeout=30)
    assert wait_for(lambda: finished_total(scripted) == before + num_clients)  # each accounted for once
    ok = httpx.post(scripted.base_url + "/chat/completions", json=chat_body("after", 3), timeout=30)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


@pytest.fixture(scope="module")
def one_at_a_time(tiny_model_dir: Path) -> Any:
    proc = ServerProcess(tiny_model_dir, "--max-model-len", "512", "--max-num-seqs", "1",
                         "--max-num-batched-tokens", "4", "--no-enable-prefix-caching")
    yield proc
    proc.stop()


def log_line(server: ServerProcess, request_id: str) -> dict[str, Any]:
    assert wait_for(lambda: any(line.get("request_id") == request_id for line in server.request_log()))
    return next(line for line in server.request_log() if line.get("request_id") == request_id)


def test_aborts_while_waiting_prefilling_and_decoding_free_everything(one_at_a_time: ServerProcess) -> None:
    server = one_at_a_time
    decoding = RawStream(server, {**chat_body("hi", 400, stream=True), "ignore_eos": True}, "decoding")
    decoding.read_events(3)  # role, then tokens: decoding
    waiting = RawStream(server, chat_body("hi", 5, stream=True), "waiting")
    waiting.read_events(1)  # the role chunk only: one sequence at a time, so it waits
    assert wait_for(lambda: metric(server, "vllm:num_requests_waiting") == 1, interval=0.01)
    waiting.hang_up()
    assert wait_for(lambda: metric(server, "vllm:num_requests_waiting") == 0, interval=0.01)
    assert metric(server, "vllm:num_requests_running") == 1  # the decoding request runs on
    line = log_line(server, "waiting")
    assert line["finish_reason"] == "abort" and line["completion_tokens"] == 0

    decoding.hang_up()
    line = log_line(server, "decoding")
    assert line["finish_reason"] == "abort" and 0 < line["completion_tokens"] < 400
    assert wait_for(lambda: is_idle(server))

    words = " ".join(random.Random(1).choice(["alpha", "beta", "gamma", "delta"]) for _ in range(100))  # ~400 tokens
    prefilling = RawStream(server, chat_body(words, 5, stream=True), "prefilling")
    prefilling.read_events(1)
    assert wait_for(lambda: metric(server, "vllm:num_requests_running") == 1, interval=0.005)  # admitted
    prefilling.hang_up()  # 4 prompt tokens per step: its prefill takes ~100 steps
    line = log_line(server, "prefilling")
    assert line["finish_reason"] == "abort" and line["completion_tokens"] == 0 and line["prompt_tokens"] > 300
    assert wait_for(lambda: is_idle(server))
    after = httpx.post(server.base_url + "/chat/completions", json=chat_body("hi", 3), timeout=60)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] <= 3
