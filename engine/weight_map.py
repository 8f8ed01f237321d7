"""The one table mapping Hugging Face checkpoint tensor names onto our (fused) parameters.

Checkpoint layout (shared/reference/glm45-model.md section 3 and 4.1): per-expert tensors, separate q/k/v and
gate/up, the MTP layer flat under `model.layers.{num_hidden_layers}.*`. Ours: qkv_proj, gate_up_proj, experts stacked
into w13 [E, 2I, H] / w2 [E, H, I], the MTP layer under `mtp.*`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ModelConfig


@dataclass(frozen=True, slots=True)
class WeightTarget:
    param: str  # our parameter's name in model.state_dict()
    expert: int | None = None  # index along dim 0 (stacked experts), or None
    rows: tuple[int, int] | None = None  # [start, end) along the (remaining) first dim, or None for the whole
    optional: bool = False  # may be absent from the checkpoint


def _attention(ckpt: str, ours: str, config: ModelConfig) -> dict[str, WeightTarget]:
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    table = {f"{ckpt}.o_proj.weight": WeightTarget(f"{ours}.o_proj.weight")}
    for name, rows in (("q_proj", (0, q)), ("k_proj", (q, q + kv)), ("v_proj", (q + kv, q + 2 * kv))):
        table[f"{ckpt}.{name}.weight"] = WeightTarget(f"{ours}.qkv_proj.weight", rows=rows)
        if config.attention_bias:
            table[f"{ckpt}.{name}.bias"] = WeightTarget(f"{ours}.qkv_proj.bias", rows=rows)
    if config.use_qk_norm:
        table[f"{ckpt}.q_norm.weight"] = WeightTarget(f"{ours}.q_norm.weight")
        table[f"{ckpt}.k_norm.weight"] = WeightTarget(f"{ours}.k_norm.weight")
    return table


def _mlp(ckpt: str, ours: str, inter: int) -> dict[str, WeightTarget]:
    return {
        f"{ckpt}.gate_proj.weight": WeightTarget(f"{ours}.gate_up_proj.weight", rows=(0, inter)),
        f"{ckpt}.up_proj.weight": WeightTarget(f"{ours}.gate_up_proj.weight", rows=(inter, 2 * inter)),
        f"{ckpt}.down_proj.weight": WeightTarget(f"{ours}.down_proj.weight"),
    }


def _decoder_layer(ckpt: str, ours: str, config: ModelConfig, is_moe: bool) -> dict[str, WeightTarget]:
    table = {
        f"{ckpt}.input_layernorm.weight": WeightTarget(f"{ours}.input_layernorm.weight"),
        f"{ckpt}.post_attention_layernorm.weight": WeightTarget(f"{ours}.post_attention_layernorm.weight"),
    }
    table |= _attention(f"{ckpt}.self_attn", f"{ours}.self_attn", config)
    if not is_moe:
        return table | _mlp(f"{ckpt}.mlp", f"{ours}.mlp", config.intermediate_size)
    inter = config.moe_intermediate_size
    table[f"{ckpt}.mlp.gate.weight"] = WeightTarget(f"{ours}.mlp.gate.weight")
    table[f"{ckpt}.mlp.gate.e_score_correction_bias"] = WeightTarget(f"{ours}.mlp.gate.e_score_correction_bias")
    for e in range(config.n_routed_experts):
        expert = f"{ckpt}.mlp.experts.{e}"
        table[f"{expert}.gate_proj.weight"] = WeightTarget(f"{ours}.mlp.w13", expert=e, rows=(0, inter))
        table[f"{expert}.up_proj.weight"] = WeightTarget(f"{ours}.mlp.w13", expert=e, rows=(inter, 2 * inter))
        table[f"{expert}.down_proj.weight"] = WeightTarget(f"{ours}.mlp.w2", expert=e)
    if config.n_shared_experts > 0:
        table |= _mlp(f"{ckpt}.mlp.shared_experts", f"{ours}.mlp.shared_experts", inter * config.n_shared_experts)
    return table


# Optional MTP copies that the loader compares with the target's tensors instead of loading into a parameter.
MTP_HEAD = "shared_head.head.weight"
MTP_EMBED = "embed_tokens.weight"


def checkpoint_weight_map(config: ModelConfig, include_mtp: bool = True) -> dict[str, WeightTarget]:
    """Every checkpoint tensor name this config expects -> where it goes."""
    table = {
        "model.embed_tokens.weight": WeightTarget("model.embed_tokens.weight"),
        "model.norm.weight": WeightTarget("model.norm.weight"),
        # A tied model's lm_head is the embedding; tolerate a checkpoint that still stores it.
        "lm_head.weight": WeightTarget(
            "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight",
            optional=config.tie_word_embeddings,
        ),
    }
    for i in range(config.num_hidden_layers):
        table |= _decoder_layer(f"model.layers.{i}", f"model.layers.{i}", config, config.is_moe_layer(i))
    if config.has_mtp and include_mtp:
        ckpt = f"model.layers.{config.num_hidden_layers}"
        table |= _decoder_layer(ckpt, "mtp.layer", config, is_moe=True)
        for name, ours in (("enorm", "enorm"), ("hnorm", "hnorm"), ("eh_proj", "eh_proj"),
                           ("shared_head.norm", "shared_head_norm")):
            table[f"{ckpt}.{name}.weight"] = WeightTarget(f"mtp.{ours}.weight")
        table[f"{ckpt}.{MTP_HEAD}"] = WeightTarget("lm_head.weight", optional=True)
        table[f"{ckpt}.{MTP_EMBED}"] = WeightTarget("model.embed_tokens.weight", optional=True)
    return table
