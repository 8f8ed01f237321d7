"""ModelConfig: the GLM-4.5 family's config.json, validated once.

Only `Glm4MoeForCausalLM` is served. Every knob of transformers' `Glm4MoeConfig` that changes the forward pass is
read here; everything else in config.json is ignored. Errors name the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

SUPPORTED_ARCHITECTURES = ("Glm4MoeForCausalLM",)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class ConfigError(ValueError):
    """A model directory's config is malformed or describes a model we do not serve."""


def resolve_dtype(name: str | torch.dtype | None, default: torch.dtype = torch.float32) -> torch.dtype:
    if name is None or name == "auto":
        return default
    if isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name).removeprefix("torch.")]
    except KeyError:
        raise ConfigError(f"unsupported dtype {name!r}; choose one of {sorted(set(_DTYPES))}") from None


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # dense MLP of layers < first_k_dense_replace
    moe_intermediate_size: int  # each routed expert; the shared expert is this x n_shared_experts
    num_hidden_layers: int  # without the MTP layer
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    first_k_dense_replace: int = 1
    use_qk_norm: bool = False
    attention_bias: bool = False
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 131072
    tie_word_embeddings: bool = False
    num_nextn_predict_layers: int = 0
    torch_dtype: str = "bfloat16"
    eos_token_id: tuple[int, ...] = field(default_factory=tuple)
    pad_token_id: int | None = None

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def has_mtp(self) -> bool:
        return self.num_nextn_predict_layers > 0

    def is_moe_layer(self, layer_idx: int) -> bool:
        # The MTP layer (index num_hidden_layers) is always MoE.
        return layer_idx >= self.first_k_dense_replace

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        for name in ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "n_routed_experts",
                     "num_experts_per_tok", "n_group", "topk_group", "max_position_embeddings"):
            need(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        need(self.n_shared_experts >= 0, "n_shared_experts must be >= 0")
        need(self.num_attention_heads % self.num_key_value_heads == 0,
             f"num_attention_heads={self.num_attention_heads} is not a multiple of "
             f"num_key_value_heads={self.num_key_value_heads}")
        need(self.n_routed_experts % self.n_group == 0,
             f"n_routed_experts={self.n_routed_experts} is not divisible by n_group={self.n_group}")
        need(self.topk_group <= self.n_group, f"topk_group={self.topk_group} exceeds n_group={self.n_group}")
        need(self.n_group == 1 or self.n_routed_experts // self.n_group >= 2,
             "each expert group needs at least 2 experts when n_group > 1")
        need(self.num_experts_per_tok <= self.topk_group * (self.n_routed_experts // self.n_group),
             f"num_experts_per_tok={self.num_experts_per_tok} exceeds the experts in the kept groups")
        need(0 < self.partial_rotary_factor <= 1, f"partial_rotary_factor={self.partial_rotary_factor} not in (0, 1]")
        need(self.rotary_dim % 2 == 0, f"head_dim * partial_rotary_factor = {self.rotary_dim} must be even")
        need(0 <= self.first_k_dense_replace <= self.num_hidden_layers, "first_k_dense_replace out of range")
        need(self.num_nextn_predict_layers in (0, 1),
             f"num_nextn_predict_layers={self.num_nextn_predict_layers}: only 0 or 1 MTP layer is supported")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.json") -> ModelConfig:
        archs = raw.get("architectures") or ["Glm4MoeForCausalLM"]
        if not isinstance(archs, list) or not any(a in SUPPORTED_ARCHITECTURES for a in archs):
            raise ConfigError(f"{source}: unsupported architectures {archs!r}; glm-serve serves {SUPPORTED_ARCHITECTURES}")
        if raw.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported (only 'silu')")
        # transformers 5 folds rope settings into rope_parameters; 4.x keeps them top-level.
        rope = dict(raw.get("rope_parameters") or {})
        scaling = raw.get("rope_scaling")
        if scaling:
            rope.update(scaling)
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ConfigError(f"{source}: rope type {rope_type!r} is not supported (only 'default')")
        values: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        for key in known:
            if key in raw:
                values[key] = raw[key]
        values["rope_theta"] = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
        values["partial_rotary_factor"] = rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 0.5))
        if "num_nextn_predict_layers" not in raw and "num_mtp_layers" in raw:
            values["num_nextn_predict_layers"] = raw["num_mtp_layers"]
        if values.get("head_dim") is None:
            try:
                values["head_dim"] = raw["hidden_size"] // raw["num_attention_heads"]
            except KeyError as exc:
                raise ConfigError(f"{source}: missing required key {exc.args[0]!r}") from None
        dtype = raw.get("torch_dtype", raw.get("dtype"))
        values["torch_dtype"] = str(dtype or "bfloat16").removeprefix("torch.")
        eos = raw.get("eos_token_id")
        values["eos_token_id"] = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> ModelConfig:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path}: not found (is {model_dir} a model directory?)")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: malformed JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(raw, source=str(path))
