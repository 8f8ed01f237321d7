"""ServerArgs: the server's configuration, validated once; argparse lives in `server.cli`.

Engine knobs (`max_num_seqs`, `kv_cache_memory`, ...) are carried as given and handed to the engine's own config,
which validates them again in its terms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_KEY_ENV = "GLM_SERVE_API_KEY"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# kernels/attention/selector.py's names, repeated here so that the CLI imports no torch (a test keeps them equal).
ATTENTION_BACKENDS = ("auto", "flashinfer", "cpu", "torch")
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class ServerArgs:
    model: str  # model directory (config.json, safetensors, tokenizer files)
    served_model_names: tuple[str, ...]  # names the API accepts in `model`; the first one is reported
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port (the URL line prints the real one)
    api_keys: tuple[str, ...] = ()  # accepted bearer keys; empty: no authentication (any placeholder accepted)
    dtype: str = "auto"  # "auto", "float32", "bfloat16", "float16"
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:N"
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    max_num_seqs: int = 256  # most requests in one engine step
    max_num_batched_tokens: int = 8192  # token budget of one engine step
    kv_cache_memory: int | None = None  # bytes for the KV cache; None: the engine's default sizing
    enable_prefix_caching: bool = True
    num_speculative_tokens: int = 0  # MTP draft tokens per step (0: off)
    # steps with more running requests than this draft nothing; None: the engine's default (SpeculativeConfig)
    speculative_disable_by_batch_size: int | None = None
    tensor_parallel_size: int = 1  # ranks (processes, one GPU each) the model is split across
    enable_expert_parallel: bool = False  # routed experts placed whole across the ranks instead of sliced
    seed: int = 0  # the engine's generator seed for requests without their own seed
    attention_backend: str = "auto"  # "auto" (FlashInfer on CUDA when it imports, else torch), "torch", "flashinfer"
    enforce_eager: bool = False  # CUDA: no CUDA graphs for decode
    async_scheduling: bool | None = None  # overlap scheduling; None: the engine's default (on for CUDA, off on CPU)
    max_queued_requests: int = 1024  # waiting + running requests (each of n counts); beyond: 503
    cors_origins: tuple[str, ...] = ()  # allowed CORS origins; empty: no CORS middleware
    log_level: str = "info"
    tool_call_streaming: str = "exact"  # "exact": one fragment per finished call; "incremental": stream arguments
    reasoning_field: str = "reasoning_content"  # or "reasoning" (current vLLM's key); never both
    shutdown_timeout: float = 30.0  # SIGTERM: seconds in-flight requests may run before they are aborted
    metrics_public: bool = False  # /metrics without the API key even when keys are configured
    max_request_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # larger bodies get 413 before they are parsed
    disable_fastapi_docs: bool = False  # no /openapi.json and /docs
    heartbeat_timeout: float = 60.0  # /health turns 503 when the engine loop is silent this long
    default_chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"enable_thinking": false}
    allow_custom_chat_template: bool = False  # accept the request field `chat_template`
    keep_alive_interval: float = 10.0  # SSE `: ping` comments while a stream waits for its first token

    def __post_init__(self) -> None:
        if not self.served_model_names or not all(self.served_model_names):
            raise ValueError("served_model_names must hold at least one non-empty name")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_queued_requests", "max_request_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.kv_cache_memory is not None and self.kv_cache_memory < 1:
            raise ValueError(f"kv_cache_memory must be >= 1 byte, got {self.kv_cache_memory}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if self.num_speculative_tokens < 0:
            raise ValueError(f"num_speculative_tokens must be >= 0, got {self.num_speculative_tokens}")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}")
        if self.tool_call_streaming not in ("exact", "incremental"):
            raise ValueError(f"tool_call_streaming must be 'exact' or 'incremental', got {self.tool_call_streaming!r}")
        if self.reasoning_field not in ("reasoning_content", "reasoning"):
            raise ValueError(f"reasoning_field must be 'reasoning_content' or 'reasoning', got {self.reasoning_field!r}")
        for name in ("shutdown_timeout", "heartbeat_timeout", "keep_alive_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(not key for key in self.api_keys):
            raise ValueError("api_keys must not contain an empty key")

    @property
    def model_name(self) -> str:
        """The primary served name (what `/v1/models` lists first)."""
        return self.served_model_names[0]


def parse_size(text: str) -> int:
    """'8589934592', '8GiB', '512MB', '1.5G' -> bytes (decimal units for kB/MB/GB, binary for KiB/MiB/GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 8589934592, 8GiB, 512MB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_api_keys(cli_keys: list[str] | None, env_value: str | None) -> tuple[str, ...]:
    """CLI keys win; otherwise the environment variable, several keys separated by commas."""
    if cli_keys:
        return tuple(cli_keys)
    if env_value:
        return tuple(key.strip() for key in env_value.split(",") if key.strip())
    return ()
