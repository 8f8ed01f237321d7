"""Speculative decoding through the server's wiring: `--num-speculative-tokens` reaches the engine config, and the
engine's counters reach the vllm:spec_decode_* Prometheus series and each request's own counts its log line
(AsyncEngine over a real EngineCore whose model is the pure-Python fake of test_spec_decode_scheduler.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from engine.config import ModelConfig
from engine.engine_config import DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE, SchedulerConfig
from engine.engine_core import EngineCore
from engine.kv_cache_manager import KVCacheManager
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler
from model_factory import TINY_CONFIG
from server.args import ServerArgs
from server.async_engine import AsyncEngine
from server.cli import args_from_namespace, build_parser
from server.context import ServingContext
from server.engine_builder import build_engine_config
from server.generation import GenerationRun
from server.logging import RequestRecord
from server.metrics import ServerMetrics
from test_spec_decode_scheduler import VOCAB, FakeSpecRunner
from tokenizer.detokenizer import IncrementalDetokenizer


def test_the_flag_reaches_the_engine_config(tmp_path):
    ns = build_parser().parse_args(["--model", str(tmp_path), "--num-speculative-tokens", "3", "--device", "cpu"])
    args = args_from_namespace(ns)
    with_mtp = ModelConfig.from_dict({**TINY_CONFIG, "architectures": ["Glm4MoeForCausalLM"]})
    assert build_engine_config(args, with_mtp).speculative.num_speculative_tokens == 3
    without = ModelConfig.from_dict({**TINY_CONFIG, "architectures": ["Glm4MoeForCausalLM"],
                                     "num_nextn_predict_layers": 0})
    with pytest.raises(ValueError, match="num_speculative_tokens=3: the checkpoint has no MTP layer"):
        build_engine_config(args, without)
    off = ServerArgs(model=str(tmp_path), served_model_names=("m",), device="cpu")
    assert not build_engine_config(off, without).speculative.is_enabled
    assert build_engine_config(args, with_mtp).speculative.disable_by_batch_size == DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE
    limited = build_parser().parse_args(["--model", str(tmp_path), "--num-speculative-tokens", "2",
                                         "--speculative-disable-by-batch-size", "12"])
    assert build_engine_config(args_from_namespace(limited), with_mtp).speculative.disable_by_batch_size == 12
    with pytest.raises(SystemExit):  # argparse refuses it, naming the flag
        build_parser().parse_args(["--model", str(tmp_path), "--speculative-disable-by-batch-size", "0"])


def sample(metrics: ServerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model_name": "m", "engine": "0", **labels})
    return 0.0 if value is None else value


def spec_core_factory(cores: list[EngineCore], k: int):
    """An AsyncEngine core factory: a speculative EngineCore on FakeSpecRunner, kept in `cores` for inspection."""

    def factory() -> EngineCore:
        kv = KVCacheManager(200, 4)
        scheduler = Scheduler(SchedulerConfig(max_model_len=128), kv, num_speculative_tokens=k)
        cores.append(EngineCore(scheduler, FakeSpecRunner(200, 4, k), VOCAB))
        return cores[-1]

    return factory


def test_engine_counters_reach_the_spec_decode_metrics():
    k = 3
    cores: list[EngineCore] = []
    factory = spec_core_factory(cores, k)

    async def main() -> None:
        metrics = ServerMetrics("m", 128)
        engine = AsyncEngine(factory, metrics)
        engine.start(asyncio.get_running_loop())
        while not engine.is_ready:
            await asyncio.sleep(0.01)
        group = engine.add_request_group([f"r{i}" for i in range(6)], [[i + 1] * (i + 3) for i in range(6)],
                                         [SamplingParams(max_tokens=40)] * 6)
        num_tokens = 0
        while not group.is_done:
            item = await group.next(timeout=10)
            assert item is not None
            num_tokens += len(item.output.new_token_ids)
        group.close()
        await asyncio.sleep(0.6)  # one more loop iteration records the last step
        engine.shutdown()
        stats = cores[0].scheduler.spec_decode_stats
        assert num_tokens == 6 * 40 and stats.num_accepted_tokens > 0
        assert sample(metrics, "vllm:spec_decode_num_drafts_total") == stats.num_drafts
        assert sample(metrics, "vllm:spec_decode_num_draft_tokens_total") == stats.num_draft_tokens
        assert sample(metrics, "vllm:spec_decode_num_accepted_tokens_total") == stats.num_accepted_tokens
        per_pos = [sample(metrics, "vllm:spec_decode_num_accepted_tokens_per_pos_total", position=str(j))
                   for j in range(k)]
        assert per_pos == stats.num_accepted_tokens_per_pos
        assert sample(metrics, "vllm:generation_tokens_total") == 6 * 40

    asyncio.run(main())


class _IdText:
    """Stands in for a tokenizer: each id decodes to ` <id>`."""

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(f" {token_id}" for token_id in ids)


@pytest.mark.parametrize("flag", [3, 0])
def test_the_request_log_line_carries_its_own_drafted_and_accepted_counts(tmp_path, flag):
    k = 3
    cores: list[EngineCore] = []
    factory = spec_core_factory(cores, k)

    async def main() -> list[RequestRecord]:
        metrics = ServerMetrics("m", 128)
        engine = AsyncEngine(factory, metrics)
        engine.start(asyncio.get_running_loop())
        while not engine.is_ready:
            await asyncio.sleep(0.01)
        args = ServerArgs(model=str(tmp_path), served_model_names=("m",), device="cpu", num_speculative_tokens=flag)
        ctx = ServingContext(args, None, engine, metrics, 128)  # type: ignore[arg-type]  # no tokenizer needed
        records = []
        for i, n in enumerate((1, 2, 1)):  # the second request has two completions: their counts add up
            record = RequestRecord(f"req{i}", "POST", "/v1/chat/completions", None)
            params = [SamplingParams(max_tokens=30 + 7 * i)] * n
            run = GenerationRun(ctx, record, time.monotonic(), [[i + 1] * (i + 4)], params,
                                [IncrementalDetokenizer(_IdText()) for _ in params])
            await run.run_to_end()
            run.close()
            records.append(record)
        engine.shutdown()
        return records

    records = asyncio.run(main())
    stats = cores[0].scheduler.spec_decode_stats
    if not flag:  # speculation off by the server's flag: the fields stay out of the log line
        assert all(r.spec_drafted is None and r.spec_accepted is None for r in records)
        assert "spec_" not in records[0].to_json()
        return
    assert sum(r.spec_drafted for r in records) == stats.num_draft_tokens
    assert sum(r.spec_accepted for r in records) == stats.num_accepted_tokens
    assert all(0 < r.spec_accepted < r.spec_drafted for r in records)
    line = json.loads(records[1].to_json())
    assert (line["spec_drafted"], line["spec_accepted"]) == (records[1].spec_drafted, records[1].spec_accepted)
