"""Overload: two bursts of 300 concurrent streaming requests against `--max-queued-requests 8` on the tiny random model.
The excess gets 503 + Retry-After in the error envelope, everything admitted completes whole and equal to the same
request served alone (greedy), resident memory does not grow from the first burst to the second, and afterwards the KV
pool is free again and no request is left in the engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, is_idle, metric, wait_for

QUEUE_LIMIT = 8
BURST = 300
MAX_TOKENS = 12
BODY = {"model": "tiny", "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": MAX_TOKENS,
        "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Any:
    proc = ServerProcess(tiny_model_dir, "--max-model-len", "128", "--max-queued-requests", str(QUEUE_LIMIT),
                         "--max-num-seqs", str(QUEUE_LIMIT))
    yield proc
    proc.stop()


def rss_bytes(server: ServerProcess) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def one(client: httpx.AsyncClient, server: ServerProcess) -> tuple[int, Any]:
    """(status, streamed text and finish reason) or (503, (error, Retry-After))."""
    async with client.stream("POST", server.base_url + "/chat/completions", json={**BODY, "stream": True}) as r:
        if r.status_code != 200:
            body = json.loads(await r.aread())
            return r.status_code, (body, r.headers.get("retry-after"))
        pieces, reasons, done = [], [], False
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                choice = json.loads(line[6:])["choices"][0]
                pieces.append(choice["delta"].get("content") or "")
                reasons.append(choice["finish_reason"])
        return 200, ("".join(pieces), [r for r in reasons if r], done)


def burst(server: ServerProcess) -> list[tuple[int, Any]]:
    async def main() -> list[tuple[int, Any]]:
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return await asyncio.gather(*(one(client, server) for _ in range(BURST)))

    return asyncio.run(main())


def test_bursts_get_503_for_the_excess_and_whole_answers_for_the_rest(server: ServerProcess) -> None:
    alone = httpx.post(server.base_url + "/chat/completions", json=BODY, timeout=60).json()
    expected = alone["choices"][0]["message"]["content"]
    rejected_before = metric(server, "vllm:admission_rejections_total", {"reason": "queue_full"})
    rss = []
    for _ in range(2):
        results = burst(server)
        served = [payload for status, payload in results if status == 200]
        refused = [payload for status, payload in results if status != 200]
        assert {status for status, _ in results} == {200, 503}
        assert len(served) >= QUEUE_LIMIT and len(served) + len(refused) == BURST
        for body, retry_after in refused:
            assert body["error"]["code"] == "server_overloaded" and body["error"]["type"] == "server_error"
            assert retry_after is not None and int(retry_after) >= 1
        for text, reasons, done in served:
            assert done and reasons == ["length"] and text == expected
        assert wait_for(lambda: is_idle(server))  # KV pool free again, no request left in the engine
        rss.append(rss_bytes(server))
        print(f"burst of {BURST}: {len(served)} served whole, {len(refused)} refused with 503 + Retry-After; "
              f"server RSS {rss[-1] / 2**20:.0f} MiB")  # the figures RELIABILITY.md quotes (pytest -s)
    assert metric(server, "vllm:admission_rejections_total", {"reason": "queue_full"}) > rejected_before
    assert rss[1] - rss[0] < 32 * 2**20, rss  # bounded: the second burst does not grow on the first
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
