"""The embedded model's config, its random initialisation, and saving it as a Hugging Face GLM-4.5 checkpoint.

The saved directory has the published layout (reference sections 3 and 4.1): per-expert tensor names, separate
q/k/v and gate/up, the MTP layer flat under `model.layers.{num_hidden_layers}.*` with its own copies of the
embedding and head, bf16 tensors except the router (fp32, as transformers keeps it). Names come from
`engine.weight_map`, the one table our loader reads, walked in reverse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.config import ModelConfig
from engine.model import Glm4MoeForCausalLM
from engine.weight_map import checkpoint_weight_map


def hf_config_dict(vocab_size: int, stop_ids: list[int], pad_id: int, **overrides: Any) -> dict[str, Any]:
    """config.json as GLM-4.5 writes it (top-level rope keys), scaled down; `overrides` replace any size."""
    config: dict[str, Any] = {
        "architectures": ["Glm4MoeForCausalLM"],
        "model_type": "glm4_moe",
        "vocab_size": vocab_size,
        "hidden_size": 192,
        "intermediate_size": 576,
        "moe_intermediate_size": 192,
        "num_hidden_layers": 6,  # deep and narrow: one MTP layer costs a small share of a target step
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 48,
        "n_routed_experts": 8,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "n_group": 1,
        "topk_group": 1,
        "routed_scaling_factor": 2.5,
        "norm_topk_prob": True,
        "use_qk_norm": True,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "partial_rotary_factor": 0.5,
        "rope_theta": 10000.0,  # GLM-4.5 uses 1e6 for 128K contexts; 1e4 resolves short distances better
        "rope_scaling": None,
        "rms_norm_eps": 1e-05,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 2048,
        "num_nextn_predict_layers": 1,
        "tie_word_embeddings": True,  # an identity copy path: copying values from the prompt is learned far sooner
        "use_cache": True,
        "torch_dtype": "bfloat16",
        "eos_token_id": stop_ids,
        "pad_token_id": pad_id,
    }
    config.update(overrides)
    return config


def init_weights(model: Glm4MoeForCausalLM, seed: int, std: float = 0.02) -> None:
    """Normal(0, std) matrices, residual-output projections scaled by 1/sqrt(2 * layers), zero biases, unit norms,
    zero router bias. The model defines no init of its own."""
    gen = torch.Generator().manual_seed(seed)
    num_layers = model.config.num_hidden_layers + int(model.has_mtp)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith(("bias", "e_score_correction_bias")):
                param.zero_()
            else:
                scale = std / math.sqrt(2 * num_layers) if name.endswith(("o_proj.weight", "down_proj.weight",
                                                                         "mlp.w2")) else std
                param.copy_(torch.randn(param.shape, generator=gen) * scale)


def _keeps_fp32(name: str) -> bool:
    return name.endswith(("mlp.gate.weight", "e_score_correction_bias"))


def checkpoint_tensors(model: Glm4MoeForCausalLM, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Our fused parameters, split back into the checkpoint's tensors."""
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for ckpt_name, target in checkpoint_weight_map(model.config).items():
        if ckpt_name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied: transformers does not save it either
        tensor = params[target.param].detach()
        if target.expert is not None:
            tensor = tensor[target.expert]
        if target.rows is not None:
            tensor = tensor[target.rows[0] : target.rows[1]]
        out[ckpt_name] = tensor.to(torch.float32 if _keeps_fp32(ckpt_name) else dtype).contiguous().clone()
    return out


def save_checkpoint(model: Glm4MoeForCausalLM, hf_config: dict[str, Any], out_dir: str | Path) -> Path:
    """Write config.json and model.safetensors; the tokenizer files are written by tokenizer.bpe_builder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ModelConfig.from_dict(hf_config) != model.config:
        raise ValueError("hf_config does not describe this model")
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(checkpoint_tensors(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def build_untrained(hf_config: dict[str, Any], seed: int) -> Glm4MoeForCausalLM:
    model = Glm4MoeForCausalLM(ModelConfig.from_dict(hf_config))
    init_weights(model, seed)
    return model
