"""AsyncEngine in-process (no HTTP): the engine thread, per-request queues, finish/abort, refused requests, engine
death and the per-step stats, driven by the test-only scripted core."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from engine.sampling_params import SamplingParams
from server.async_engine import AsyncEngine, EngineDeadError
from server.metrics import ServerMetrics
from server.scripted_engine import ScriptedEngineCore
from tokenizer.tokenizer import Tokenizer


def make_engine(model_dir: Path, **script: Any) -> tuple[AsyncEngine, ServerMetrics, list[ScriptedEngineCore]]:
    tokenizer = Tokenizer.from_model_dir(model_dir)
    cores: list[ScriptedEngineCore] = []

    def factory() -> ScriptedEngineCore:
        cores.append(ScriptedEngineCore({"replies": [{"text": "one two three four"}], **script}, tokenizer, 128))
        return cores[-1]

    metrics = ServerMetrics("m", 128)
    return AsyncEngine(factory, metrics), metrics, cores


async def wait_ready(engine: AsyncEngine) -> None:
    while not engine.is_ready and not engine.is_dead:
        await asyncio.sleep(0.01)


def gauge(metrics: ServerMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model_name": "m", "engine": "0"})
    assert value is not None
    return value


def test_outputs_reach_their_group_in_order(tiny_model_dir: Path) -> None:
    async def main() -> None:
        engine, metrics, cores = make_engine(tiny_model_dir, tokens_per_step=2)
        engine.start(asyncio.get_running_loop())
        await wait_ready(engine)
        expected = Tokenizer.from_model_dir(tiny_model_dir).encode("one two three four")
        groups = [engine.add_request_group([f"r{i}-0", f"r{i}-1"], [[1, 2, 3]] * 2, [SamplingParams()] * 2)
                  for i in range(3)]
        assert engine.num_open_requests == 3 and engine.num_open_children == 6
        for group in groups:
            tokens: dict[str, list[int]] = {child: [] for child in group.child_ids}
            while not group.is_done:
                item = await group.next(timeout=10)
                assert item is not None and item.arrived_at <= time.monotonic()
                tokens[item.output.request_id].extend(item.output.new_token_ids)
            for child_tokens in tokens.values():
                assert child_tokens[:-1] == expected  # then the stop token
            group.close()
        assert engine.num_open_requests == 0
        await asyncio.sleep(0.6)  # an idle loop iteration refreshes the gauges
        assert gauge(metrics, "vllm:num_requests_running") == 0
        assert gauge(metrics, "vllm:generation_tokens_total") == 6 * (len(expected) + 1)
        assert gauge(metrics, "vllm:prompt_tokens_total") == 6 * 3
        assert engine.heartbeat_age() < 1.0
        engine.shutdown()

    asyncio.run(main())


def test_close_aborts_and_frees_and_refusals_do_not_kill_the_loop(tiny_model_dir: Path) -> None:
    async def main() -> None:
        engine, metrics, cores = make_engine(tiny_model_dir, step_delay_s=0.02,
                                             replies=[{"text": "la ", "stop_token": None}])
        engine.start(asyncio.get_running_loop())
        await wait_ready(engine)
        group = engine.add_request_group(["long"], [[5] * 40], [SamplingParams(max_tokens=1000)])
        assert await group.next(timeout=10) is not None
        await asyncio.sleep(0.1)
        assert gauge(metrics, "vllm:kv_cache_usage_perc") > 0
        group.close()  # the client went away
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not cores[0].requests and gauge(metrics, "vllm:kv_cache_usage_perc") == 0:
                break
        assert not cores[0].requests and cores[0].scheduler.kv.usage == 0
        assert gauge(metrics, "vllm:kv_cache_usage_perc") == 0
        refused = engine.add_request_group(["bad"], [[10**9]], [SamplingParams()])
        with pytest.raises(ValueError, match="prompt_token_ids"):
            await refused.next(timeout=10)
        refused.close()
        fine = engine.add_request_group(["fine"], [[5]], [SamplingParams(max_tokens=2)])
        while not fine.is_done:
            assert await fine.next(timeout=10) is not None
        fine.close()
        assert engine.num_open_children == 0
        engine.shutdown()

    asyncio.run(main())


def test_engine_death_fails_open_requests_and_notifies(tiny_model_dir: Path) -> None:
    async def main() -> None:
        engine, _, _ = make_engine(tiny_model_dir, fail_at_step=3, replies=[{"text": "la ", "stop_token": None}])
        died: list[BaseException] = []
        engine.add_death_callback(died.append)
        engine.start(asyncio.get_running_loop())
        await wait_ready(engine)
        group = engine.add_request_group(["x"], [[5]], [SamplingParams(max_tokens=100)])
        with pytest.raises(EngineDeadError):
            while True:
                await group.next(timeout=10)
        group.close()
        assert engine.is_dead and not engine.is_ready
        assert len(died) == 1 and "scripted engine failure" in str(died[0])
        with pytest.raises(EngineDeadError):
            engine.add_request_group(["y"], [[5]], [SamplingParams()])
        late: list[BaseException] = []
        engine.add_death_callback(late.append)  # registered after the death: called at once
        assert len(late) == 1

    asyncio.run(main())
