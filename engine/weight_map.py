"""The one table mapping Hugging Face checkpoint tensor names onto our (fused) parameters.

Checkpoint layout (shared/reference/glm45-model.md section 3 and 4.1): per-expert tensors, separate q/k/v and
gate/up, the MTP layer flat under `model.layers.{num_hidden_layers}.*`. Ours: qkv_proj, gate_up_proj, experts stacked
into w13 [E, 2I, H] / w2 [E, H, I], the MTP layer under `mtp.*`.

Tensor parallelism: the map is built for one rank's `ParallelLayout`. A sharded tensor's target names the part of
the checkpoint tensor this rank reads (`shard`, read with safetensors' `get_slice`, never the whole tensor) and the
rows of its (smaller) parameter it fills; another rank's expert (expert parallelism) is marked `on_this_rank=False`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ModelConfig
from engine.parallel.layout import ParallelLayout


@dataclass(frozen=True, slots=True)
class Shard:
    """The part of a checkpoint tensor one rank reads: [start, end) along `dim`, all of every other dim."""

    dim: int  # 0: output rows (column-parallel, vocabulary); 1: input columns (row-parallel)
    start: int
    end: int
    full_size: int  # the checkpoint tensor's size along dim (checked before reading)


@dataclass(frozen=True, slots=True)
class WeightTarget:
    param: str  # our parameter's name in model.state_dict()
    expert: int | None = None  # this rank's index along dim 0 (stacked experts), or None
    rows: tuple[int, int] | None = None  # [start, end) along the (remaining) first dim, or None for the whole
    optional: bool = False  # may be absent from the checkpoint
    shard: Shard | None = None  # the checkpoint slice this rank reads; None: the whole tensor
    on_this_rank: bool = True  # False: another rank's routed expert (expert parallelism); not read here


def _rows(start: int, end: int, full: int) -> Shard:
    return Shard(0, start, end, full)


def _attention(ckpt: str, ours: str, config: ModelConfig, layout: ParallelLayout) -> dict[str, WeightTarget]:
    d = config.head_dim
    q_full, kv_full = config.num_attention_heads * d, config.num_key_value_heads * d
    q_start, q_end = (h * d for h in layout.split(config.num_attention_heads, "num_attention_heads"))
    kv_start, kv_end = (h * d for h in layout.kv_head_range(config.num_key_value_heads))
    q, kv = q_end - q_start, kv_end - kv_start  # this rank's rows of q and of each of k, v
    sharded = layout.is_sharded
    table = {f"{ckpt}.o_proj.weight": WeightTarget(
        f"{ours}.o_proj.weight", shard=Shard(1, q_start, q_end, q_full) if sharded else None)}
    parts = (("q_proj", (0, q), _rows(q_start, q_end, q_full)),
             ("k_proj", (q, q + kv), _rows(kv_start, kv_end, kv_full)),
             ("v_proj", (q + kv, q + 2 * kv), _rows(kv_start, kv_end, kv_full)))
    for name, rows, shard in parts:
        shard = shard if sharded else None
        table[f"{ckpt}.{name}.weight"] = WeightTarget(f"{ours}.qkv_proj.weight", rows=rows, shard=shard)
        if config.attention_bias:
            table[f"{ckpt}.{name}.bias"] = WeightTarget(f"{ours}.qkv_proj.bias", rows=rows, shard=shard)
    if config.use_qk_norm:
        table[f"{ckpt}.q_norm.weight"] = WeightTarget(f"{ours}.q_norm.weight")
        table[f"{ckpt}.k_norm.weight"] = WeightTarget(f"{ours}.k_norm.weight")
    return table


def _mlp(ckpt: str, ours: str, full: int, part: tuple[int, int], sharded: bool,
         expert: int | None = None) -> dict[str, WeightTarget]:
    """gate/up/down of one SwiGLU MLP (or one routed expert) whose intermediate rows [part) live on this rank."""
    inter = part[1] - part[0]
    rows = _rows(*part, full) if sharded else None
    columns = Shard(1, *part, full) if sharded else None
    gate_up, down = (f"{ours}.w13", f"{ours}.w2") if expert is not None else (
        f"{ours}.gate_up_proj.weight", f"{ours}.down_proj.weight")
    return {
        f"{ckpt}.gate_proj.weight": WeightTarget(gate_up, expert=expert, rows=(0, inter), shard=rows),
        f"{ckpt}.up_proj.weight": WeightTarget(gate_up, expert=expert, rows=(inter, 2 * inter), shard=rows),
        f"{ckpt}.down_proj.weight": WeightTarget(down, expert=expert, shard=columns),
    }


def _dense_mlp(ckpt: str, ours: str, full: int, layout: ParallelLayout, what: str) -> dict[str, WeightTarget]:
    return _mlp(ckpt, ours, full, layout.split(full, what), layout.is_sharded)


def _moe(ckpt: str, ours: str, config: ModelConfig, layout: ParallelLayout) -> dict[str, WeightTarget]:
    full = config.moe_intermediate_size
    table = {
        f"{ckpt}.gate.weight": WeightTarget(f"{ours}.gate.weight"),
        f"{ckpt}.gate.e_score_correction_bias": WeightTarget(f"{ours}.gate.e_score_correction_bias"),
    }
    first, end = layout.expert_range(config.n_routed_experts)
    part = layout.moe_intermediate_range(full)
    is_sliced = layout.is_sharded and not layout.expert_parallel
    for e in range(config.n_routed_experts):
        expert = _mlp(f"{ckpt}.experts.{e}", ours, full, part, is_sliced, expert=e - first)
        if not first <= e < end:
            expert = {name: WeightTarget(t.param, on_this_rank=False) for name, t in expert.items()}
        table |= expert
    if config.n_shared_experts > 0:
        table |= _dense_mlp(f"{ckpt}.shared_experts", f"{ours}.shared_experts", full * config.n_shared_experts,
                            layout, "shared experts' intermediate size")
    return table


def _decoder_layer(ckpt: str, ours: str, config: ModelConfig, is_moe: bool,
                   layout: ParallelLayout) -> dict[str, WeightTarget]:
    table = {
        f"{ckpt}.input_layernorm.weight": WeightTarget(f"{ours}.input_layernorm.weight"),
        f"{ckpt}.post_attention_layernorm.weight": WeightTarget(f"{ours}.post_attention_layernorm.weight"),
    }
    table |= _attention(f"{ckpt}.self_attn", f"{ours}.self_attn", config, layout)
    if is_moe:
        return table | _moe(f"{ckpt}.mlp", f"{ours}.mlp", config, layout)
    return table | _dense_mlp(f"{ckpt}.mlp", f"{ours}.mlp", config.intermediate_size, layout, "intermediate_size")


def _vocab(param: str, config: ModelConfig, layout: ParallelLayout, optional: bool = False) -> WeightTarget:
    """A [V, H] tensor (embedding, LM head): this rank's vocabulary rows, the padding rows left at zero."""
    if not layout.is_sharded:
        return WeightTarget(param, optional=optional)
    start, end, _ = layout.vocab_range(config.vocab_size)
    return WeightTarget(param, rows=(0, end - start), optional=optional, shard=_rows(start, end, config.vocab_size))


# Optional MTP copies that the loader compares with the target's tensors instead of loading into a parameter.
MTP_HEAD = "shared_head.head.weight"
MTP_EMBED = "embed_tokens.weight"


def checkpoint_weight_map(config: ModelConfig, include_mtp: bool = True,
                          layout: ParallelLayout = ParallelLayout()) -> dict[str, WeightTarget]:
    """Every checkpoint tensor name this config expects -> where it goes on this rank."""
    table = {
        "model.embed_tokens.weight": _vocab("model.embed_tokens.weight", config, layout),
        "model.norm.weight": WeightTarget("model.norm.weight"),
        # A tied model's lm_head is the embedding; tolerate a checkpoint that still stores it.
        "lm_head.weight": _vocab("model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight",
                                 config, layout, optional=config.tie_word_embeddings),
    }
    for i in range(config.num_hidden_layers):
        table |= _decoder_layer(f"model.layers.{i}", f"model.layers.{i}", config, config.is_moe_layer(i), layout)
    if config.has_mtp and include_mtp:
        ckpt = f"model.layers.{config.num_hidden_layers}"
        table |= _decoder_layer(ckpt, "mtp.layer", config, True, layout)
        for name, ours in (("enorm", "enorm"), ("hnorm", "hnorm"), ("eh_proj", "eh_proj"),
                           ("shared_head.norm", "shared_head_norm")):
            table[f"{ckpt}.{name}.weight"] = WeightTarget(f"mtp.{ours}.weight")
        table[f"{ckpt}.{MTP_HEAD}"] = _vocab("lm_head.weight", config, layout, optional=True)
        table[f"{ckpt}.{MTP_EMBED}"] = _vocab("model.embed_tokens.weight", config, layout, optional=True)
    return table
