"""The engine's configuration: one frozen object per part, validated once at construction.

Values discovered at start-up are not written back here: the number of KV blocks lives in the KV cache manager's
`BlockPool`, the attention backend and KV tensors on the `ModelRunner`. Every bad value raises `ValueError` naming
the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.config import ModelConfig
from engine.parallel.layout import ParallelLayout
from kernels.attention.selector import ATTENTION_BACKENDS, resolve_attention_backend


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _positive_int(name: str, value: object) -> None:
    _need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
          f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class CacheConfig:
    block_size: int = 16  # tokens per KV block
    kv_cache_memory: int | None = None  # bytes for the KV cache of all layers; None: see gpu_memory_utilization
    gpu_memory_utilization: float = 0.9  # CUDA, kv_cache_memory None: this fraction of free memory after weights
    enable_prefix_caching: bool = True  # reuse full blocks of equal token prefixes across requests
    num_blocks_override: int | None = None  # force the pool size (tests, debugging); wins over the memory budget

    def __post_init__(self) -> None:
        _positive_int("block_size", self.block_size)
        if self.kv_cache_memory is not None:
            _positive_int("kv_cache_memory", self.kv_cache_memory)
        _need(isinstance(self.gpu_memory_utilization, (int, float)) and 0 < self.gpu_memory_utilization <= 1,
              f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}")
        _need(isinstance(self.enable_prefix_caching, bool),
              f"enable_prefix_caching must be a bool, got {self.enable_prefix_caching!r}")
        if self.num_blocks_override is not None:
            _positive_int("num_blocks_override", self.num_blocks_override)


@dataclass(frozen=True)
class SchedulerConfig:
    max_model_len: int  # longest sequence (prompt + outputs) a request may reach
    max_num_seqs: int = 256  # most requests in one step
    max_num_batched_tokens: int = 8192  # token budget of one step (all requests together)
    enable_chunked_prefill: bool = True  # split prompts longer than the remaining budget across steps
    async_scheduling: bool = False  # overlap: schedule step N+1 on the host while the device runs step N

    def __post_init__(self) -> None:
        _positive_int("max_model_len", self.max_model_len)
        _positive_int("max_num_seqs", self.max_num_seqs)
        _positive_int("max_num_batched_tokens", self.max_num_batched_tokens)
        _need(isinstance(self.enable_chunked_prefill, bool), "enable_chunked_prefill must be a bool")
        _need(isinstance(self.async_scheduling, bool), "async_scheduling must be a bool")
        if not self.enable_chunked_prefill:
            _need(self.max_num_batched_tokens >= self.max_model_len,
                  f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_model_len "
                  f"({self.max_model_len}) when enable_chunked_prefill is False")


# Default of SpeculativeConfig.disable_by_batch_size, from loadtests/bench_spec_decode.py on the embedded model (CPU,
# 1 thread): the best k gains 1.5x at 32 running requests and ~1.1x at 64, shrinking with the batch (BENCHMARKS.md 2).
DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE: int | None = 64


@dataclass(frozen=True)
class SpeculativeConfig:
    """MTP speculative decoding (vLLM's `speculative_config` with method "mtp"): engine/mtp_proposer.py."""

    num_speculative_tokens: int = 0  # k: draft tokens verified per request per step; 0 = off
    # Steps with more scheduled requests than this draft nothing and run no MTP pass (verify rows cost real compute
    # once the batch is large); drafting resumes, with the MTP KV caught up, when the batch falls back to it.
    # None = always draft (vLLM's speculative_disable_by_batch_size).
    disable_by_batch_size: int | None = DEFAULT_SPECULATIVE_DISABLE_BY_BATCH_SIZE

    def __post_init__(self) -> None:
        k = self.num_speculative_tokens
        _need(isinstance(k, int) and not isinstance(k, bool) and k >= 0,
              f"num_speculative_tokens must be an int >= 0, got {k!r}")
        if self.disable_by_batch_size is not None:
            _positive_int("speculative_disable_by_batch_size", self.disable_by_batch_size)

    @property
    def is_enabled(self) -> bool:
        return self.num_speculative_tokens > 0


@dataclass(frozen=True)
class ParallelConfig:
    """Tensor and expert parallelism: one process per rank (engine/distributed/); 1 = the single-process engine."""

    tensor_parallel_size: int = 1  # ranks the model is split across (heads, MLP rows, vocabulary)
    enable_expert_parallel: bool = False  # routed experts placed whole across the ranks instead of sliced
    # Seconds any collective (a step's broadcast, an all-reduce) may wait for a peer before raising.
    distributed_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        _positive_int("tensor_parallel_size", self.tensor_parallel_size)
        _need(isinstance(self.enable_expert_parallel, bool),
              f"enable_expert_parallel must be a bool, got {self.enable_expert_parallel!r}")
        _need(isinstance(self.distributed_timeout_s, (int, float)) and self.distributed_timeout_s > 0,
              f"distributed_timeout_s must be > 0, got {self.distributed_timeout_s!r}")

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size

    def layout(self, rank: int) -> ParallelLayout:
        return ParallelLayout(rank, self.tensor_parallel_size, self.enable_expert_parallel)


@dataclass(frozen=True)
class EngineConfig:
    model: str  # model directory
    model_config: ModelConfig  # the checkpoint's config.json
    dtype: torch.dtype  # weights and KV cache dtype
    device: torch.device  # where the model runs
    cache: CacheConfig
    scheduler: SchedulerConfig
    seed: int = 0  # seeds the sampler's shared generator (requests without their own seed)
    speculative: SpeculativeConfig = SpeculativeConfig()  # MTP drafts (off by default)
    parallel: ParallelConfig = ParallelConfig()  # tensor / expert parallelism (one rank by default)
    # "auto": FlashInfer on CUDA when it imports and the cache is fp16/bf16, else torch; or force "torch" /
    # "flashinfer" (kernels/attention/selector.py). The chosen backend lives on the ModelRunner, not here.
    attention_backend: str = "auto"
    enforce_eager: bool = False  # CUDA: never capture or replay CUDA graphs (engine/cuda_graph_runner.py)

    def __post_init__(self) -> None:
        self.parallel.layout(0).check(self.model_config)  # every split must divide
        _need(isinstance(self.attention_backend, str) and self.attention_backend.lower() in ATTENTION_BACKENDS,
              f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}")
        if self.attention_backend.lower() != "auto":  # a forced backend that cannot run fails now, naming why
            resolve_attention_backend(self.attention_backend, self.device, self.dtype)
        _need(isinstance(self.enforce_eager, bool), f"enforce_eager must be a bool, got {self.enforce_eager!r}")
        _need(isinstance(self.seed, int) and not isinstance(self.seed, bool), f"seed must be an int, got {self.seed!r}")
        _need(not self.speculative.is_enabled or self.model_config.has_mtp,
              f"num_speculative_tokens={self.speculative.num_speculative_tokens}: the checkpoint has no MTP layer "
              "(num_nextn_predict_layers is 0)")
        limit = self.model_config.max_position_embeddings
        _need(self.scheduler.max_model_len <= limit,
              f"max_model_len ({self.scheduler.max_model_len}) exceeds the model's max_position_embeddings ({limit})")


def resolve_max_model_len(model_config: ModelConfig, max_model_len: int | None) -> int:
    """None -> the model's max_position_embeddings; larger values are refused by EngineConfig."""
    return model_config.max_position_embeddings if max_model_len is None else max_model_len


def default_async_scheduling(device: torch.device) -> bool:
    """On by default where the device runs asynchronously to the host (CUDA); off on CPU, where it gains nothing."""
    return device.type == "cuda"
