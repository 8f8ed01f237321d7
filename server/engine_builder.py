"""ServerArgs -> the engine's EngineConfig, and the factory the engine thread calls to build the core.

The factory runs in the engine thread (model load, KV cache allocation), so /health can answer 503 meanwhile.
Test-only: when the environment variable `GLM_SERVE_TEST_SCRIPT` names a JSON script, the factory builds a
`ScriptedEngineCore` instead (see `server.scripted_engine`); production never sets it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from engine.config import ModelConfig, resolve_dtype
from engine.engine_config import (
    CacheConfig,
    EngineConfig,
    ParallelConfig,
    SchedulerConfig,
    SpeculativeConfig,
    default_async_scheduling,
    resolve_max_model_len,
)
from server.args import ServerArgs
from server.async_engine import EngineCoreLike

logger = logging.getLogger(__name__)
SCRIPT_ENV = "GLM_SERVE_TEST_SCRIPT"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available")
    return device


def build_engine_config(args: ServerArgs, model_config: ModelConfig) -> EngineConfig:
    device = resolve_device(args.device)
    if args.dtype == "auto":
        from engine.loader import default_dtype  # NOTE: lazy, keeps `import server` light

        dtype = default_dtype(model_config, device)
    else:
        dtype = resolve_dtype(args.dtype)
    async_scheduling = default_async_scheduling(device) if args.async_scheduling is None else args.async_scheduling
    scheduler = SchedulerConfig(
        max_model_len=resolve_max_model_len(model_config, args.max_model_len),
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        async_scheduling=async_scheduling,
    )
    cache = CacheConfig(kv_cache_memory=args.kv_cache_memory, enable_prefix_caching=args.enable_prefix_caching)
    speculative = SpeculativeConfig(num_speculative_tokens=args.num_speculative_tokens)
    if args.speculative_disable_by_batch_size is not None:
        speculative = replace(speculative, disable_by_batch_size=args.speculative_disable_by_batch_size)
    parallel = ParallelConfig(tensor_parallel_size=args.tensor_parallel_size,
                              enable_expert_parallel=args.enable_expert_parallel)
    return EngineConfig(model=args.model, model_config=model_config, dtype=dtype, device=device, cache=cache,
                        scheduler=scheduler, seed=args.seed, speculative=speculative, parallel=parallel,
                        attention_backend=args.attention_backend, enforce_eager=args.enforce_eager)


def core_factory(args: ServerArgs, config: EngineConfig) -> Callable[[], EngineCoreLike]:
    script = os.environ.get(SCRIPT_ENV)
    if script:
        from server.scripted_engine import ScriptedEngineCore

        logger.warning("TEST MODE: %s is set; replaying scripted outputs instead of running the model", SCRIPT_ENV)
        return lambda: ScriptedEngineCore.from_script(Path(script), Path(args.model),
                                                      config.scheduler.max_model_len)

    def build() -> EngineCoreLike:
        from engine.engine_core import EngineCore

        return EngineCore.from_config(config)

    return build
