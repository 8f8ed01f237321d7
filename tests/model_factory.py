"""Tiny random GLM-4.5-architecture checkpoints written by transformers (the oracle), MTP layer included.

`make_tiny_model_dir(path, **overrides)` saves a random `Glm4MoeForCausalLM` with `save_pretrained` (per-expert
tensor names, as published checkpoints) and appends an MTP layer in the flat layout of reference section 5.2, so
that our loader and transformers' own MTP path read the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TINY_CONFIG: dict[str, Any] = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    n_routed_experts=8,
    n_shared_experts=1,
    num_experts_per_tok=2,
    n_group=2,
    topk_group=1,
    first_k_dense_replace=1,
    routed_scaling_factor=2.5,
    norm_topk_prob=True,
    attention_bias=True,
    use_qk_norm=True,
    tie_word_embeddings=False,
    rope_theta=1_000_000.0,
    partial_rotary_factor=0.5,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    num_nextn_predict_layers=1,
    pad_token_id=0,
    eos_token_id=[1, 2, 3],
)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random norms and router biases: transformers initialises them to constants, which would hide mistakes."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias") and "proj" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.rand(b.shape, generator=gen))


def hf_config(**overrides: Any):
    from transformers import Glm4MoeConfig

    values = {**TINY_CONFIG, **overrides}
    return Glm4MoeConfig(**values)


def make_tiny_model_dir(path: str | Path, seed: int = 0, with_mtp: bool = True, **overrides: Any) -> Path:
    from transformers import Glm4MoeForCausalLM

    path = Path(path)
    config = hf_config(**overrides)
    torch.manual_seed(seed)
    model = Glm4MoeForCausalLM(config).eval()
    _perturb(model, seed)
    model.save_pretrained(path, safe_serialization=True)
    if not with_mtp:
        raw = json.loads((path / "config.json").read_text())
        raw["num_nextn_predict_layers"] = 0
        raw.pop("num_mtp_layers", None)
        (path / "config.json").write_text(json.dumps(raw, indent=2))
        return path
    num_layers = config.num_hidden_layers
    hidden = config.hidden_size
    # A (L+1)-layer model with the same config gives a correctly shaped MoE decoder layer at index L.
    bigger = Glm4MoeForCausalLM(hf_config(**{**overrides, "num_hidden_layers": num_layers + 1,
                                            "first_k_dense_replace": config.first_k_dense_replace})).eval()
    _perturb(bigger, seed + 7)
    gen = torch.Generator().manual_seed(seed + 2)
    prefix = f"model.layers.{num_layers}."
    tensors = load_file(path / "model.safetensors")
    with torch.no_grad():
        bigger_state = _per_expert_state(bigger, prefix)
        tensors.update(bigger_state)
        tensors[prefix + "enorm.weight"] = 1.0 + 0.2 * torch.randn(hidden, generator=gen)
        tensors[prefix + "hnorm.weight"] = 1.0 + 0.2 * torch.randn(hidden, generator=gen)
        tensors[prefix + "shared_head.norm.weight"] = 1.0 + 0.2 * torch.randn(hidden, generator=gen)
        tensors[prefix + "eh_proj.weight"] = 0.05 * torch.randn(hidden, 2 * hidden, generator=gen)
        head = model.lm_head.weight if not config.tie_word_embeddings else model.model.embed_tokens.weight
        tensors[prefix + "shared_head.head.weight"] = head.detach().clone()
        tensors[prefix + "embed_tokens.weight"] = model.model.embed_tokens.weight.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, path / "model.safetensors", metadata={"format": "pt"})
    return path


def _per_expert_state(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """The layer's tensors under checkpoint names (transformers fuses experts in memory; split them back)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if not name.startswith(prefix):
            continue
        if name.endswith("mlp.experts.gate_up_proj"):
            inter = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                out[f"{prefix}mlp.experts.{e}.gate_proj.weight"] = tensor[e, :inter].clone()
                out[f"{prefix}mlp.experts.{e}.up_proj.weight"] = tensor[e, inter:].clone()
        elif name.endswith("mlp.experts.down_proj"):
            for e in range(tensor.shape[0]):
                out[f"{prefix}mlp.experts.{e}.down_proj.weight"] = tensor[e].clone()
        else:
            out[name] = tensor.clone()
    return out


def load_hf_model(path: str | Path):
    """transformers' model for the same directory, in fp32 (the MTP tensors are ignored, as in the real models)."""
    from transformers import Glm4MoeForCausalLM

    num_layers = json.loads((Path(path) / "config.json").read_text())["num_hidden_layers"]
    Glm4MoeForCausalLM._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{num_layers}\..*"]
    return Glm4MoeForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
