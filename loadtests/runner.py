"""Drive one benchmark run: readiness check, warm-up, arrivals, concurrency cap, progress bar, spec-decode deltas.

Traffic is bounded: exactly len(samples) measured requests plus the warm-ups, each bounded by request_timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from tqdm import tqdm

from loadtests.arrivals import arrival_offsets
from loadtests.request_func import CONNECT_ERROR, RequestFuncInput, RequestFuncOutput, send_request
from loadtests.sample_request import SampleRequest
from loadtests.serve_config import ServeBenchConfig
from loadtests.spec_decode_stats import fetch_spec_decode_counters, spec_decode_delta

READY_RETRY_INTERVAL_S = 1.0
# A --max-concurrency slot: an asyncio.Semaphore, or a no-op context when concurrency is unbounded.
Slot = contextlib.AbstractAsyncContextManager[Any]


@dataclass(frozen=True)
class BenchmarkRun:
    # One output per sample, in sample order (failed ones included).
    outputs: list[RequestFuncOutput]
    # Seconds from the first send to the last completion.
    duration_s: float
    # The concurrency cap this run used (None = unbounded).
    max_concurrency: int | None
    # vLLM spec_decode_* result keys when the server exports the counters and drafted during the run.
    spec_decode: dict | None


async def discover_model(config: ServeBenchConfig) -> str:
    """The first served model id of GET /v1/models, retrying while the server refuses connections (starting up)."""
    url = f"{config.server_root}/v1/models"
    deadline = time.monotonic() + config.ready_check_timeout_s
    async with httpx.AsyncClient(timeout=30.0) as client:
        while True:
            try:
                response = await client.get(url, headers=config.headers)
                break
            except httpx.ConnectError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url}: cannot connect ({e}); is the server running?") from None
                await asyncio.sleep(READY_RETRY_INTERVAL_S)
            except httpx.HTTPError as e:
                raise RuntimeError(f"{url}: {type(e).__name__}: {e}") from None
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}; pass --model")
    data = response.json().get("data") or []
    if not data:
        raise RuntimeError(f"{url} lists no model; pass --model")
    return str(data[0]["id"])


def _make_inputs(config: ServeBenchConfig, model: str, samples: Sequence[SampleRequest]) -> list[RequestFuncInput]:
    run_id = uuid.uuid4().hex[:8]
    return [
        RequestFuncInput(
            api_url=config.api_url,
            backend=config.backend,
            model=model,
            sample=sample,
            temperature=config.temperature,
            ignore_eos=config.ignore_eos,
            headers={**config.headers, "X-Request-Id": f"bench-{run_id}-{i}"},
            extra_body=config.extra_body or None,
        )
        for i, sample in enumerate(samples)
    ]


async def _wait_until_ready(client: httpx.AsyncClient, request: RequestFuncInput, config: ServeBenchConfig) -> None:
    """Send the first sample until it succeeds; retry only while the connection is refused (server starting)."""
    deadline = time.monotonic() + config.ready_check_timeout_s
    while True:
        output = await send_request(client, request, config.request_timeout_s)
        if output.success:
            return
        if output.error_kind != CONNECT_ERROR or time.monotonic() > deadline:
            raise RuntimeError(f"initial test request failed ({output.error_kind}): {output.error}")
        await asyncio.sleep(READY_RETRY_INTERVAL_S)


async def run_benchmark(
    config: ServeBenchConfig, model: str, samples: Sequence[SampleRequest], max_concurrency: int | None
) -> BenchmarkRun:
    inputs = _make_inputs(config, model, samples)
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
    timeout = httpx.Timeout(config.request_timeout_s, pool=None)  # NOTE: no pool timeout: queued sends wait
    semaphore: Slot = asyncio.Semaphore(max_concurrency) if max_concurrency else contextlib.nullcontext()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        if config.ready_check_timeout_s > 0:
            await _wait_until_ready(client, inputs[0], config)
        if config.num_warmups:
            warmup = [replace(inputs[0], headers={**inputs[0].headers, "X-Request-Id": f"warmup-{i}"})
                      for i in range(config.num_warmups)]
            await asyncio.gather(*(_limited(client, w, semaphore, None, config) for w in warmup))
        before = await fetch_spec_decode_counters(client, config.server_root)
        outputs, duration_s = await _timed_run(client, inputs, semaphore, config)
        after = await fetch_spec_decode_counters(client, config.server_root)
    return BenchmarkRun(outputs, duration_s, max_concurrency, spec_decode_delta(before, after))


async def _timed_run(
    client: httpx.AsyncClient, inputs: Sequence[RequestFuncInput], semaphore: Slot, config: ServeBenchConfig
) -> tuple[list[RequestFuncOutput], float]:
    offsets = arrival_offsets(len(inputs), config.request_rate, config.burstiness, config.seed)
    with tqdm(total=len(inputs), disable=config.disable_tqdm, desc="requests") as pbar:
        start = time.perf_counter()
        tasks = []
        for request, offset in zip(inputs, offsets):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_limited(client, request, semaphore, pbar, config)))
        outputs = await asyncio.gather(*tasks)
        duration_s = time.perf_counter() - start
    return list(outputs), duration_s


async def _limited(
    client: httpx.AsyncClient, request: RequestFuncInput, semaphore: Slot, pbar: tqdm | None,
    config: ServeBenchConfig,
) -> RequestFuncOutput:
    arrival = time.perf_counter()
    async with semaphore:
        output = await send_request(client, request, config.request_timeout_s)
    output.client_queue_time = output.start_time - arrival
    if pbar is not None:
        pbar.update(1)
    return output
