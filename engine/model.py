"""GLM-4.5 family (`Glm4MoeForCausalLM`) and its MTP layer, written for a serving engine.

The forward pass takes the flattened tokens of many sequences (no padding), their absolute positions and an
`AttentionBackend` that was planned for this step; KV caching lives entirely in the backend. Equations follow
shared/reference/glm45-model.md (section numbers in comments). Shapes: T tokens, H hidden, nh query heads,
nkv KV heads, d head_dim, rd rotary dims, E routed experts, k experts per token, I moe_intermediate_size, V vocab.

Parameter layout differs from the checkpoint only by fusions (q/k/v -> qkv_proj, gate/up -> gate_up_proj, experts
stacked into w13/w2); `engine/weight_map.py` holds the one table that maps checkpoint names onto these parameters.

Tensor parallelism (`tp`, one rank by default): every layer holds this rank's part (engine/parallel/layout.py);
attention heads, MLP and shared-expert rows, routed experts (sliced, or placed whole with expert parallelism) and the
vocabulary are split, norms, the router and the MTP layer's eh_proj are replicated. Each attention block and each
MLP/MoE block ends in one all-reduce; the LM head all-gathers the vocabulary. Shapes below are per rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ModelConfig
from engine.distributed.parallel_state import TensorParallelGroup
from engine.parallel.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from engine.parallel.vocab import ParallelLMHead, VocabParallelEmbedding
from kernels.attention.base import AttentionBackend
from kernels.moe import fused_experts


class RMSNorm(nn.Module):
    """Section 2.3: statistics in fp32, cast back to the input dtype, then scale (transformers' order)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is x * rsqrt(mean(x^2) + eps) in one op (equal to the spelled-out form to the last bit).
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Section 2.4.3: NeoX rotate-half RoPE on dims [0, rd) of every head; dims [rd, d) pass through.

    `forward(positions)` builds a step's (cos, sin) tables once; every layer applies them with `apply_rotary`.
    """

    def __init__(self, rotary_dim: int, theta: float) -> None:
        super().__init__()
        self.rotary_dim = rotary_dim
        self.theta = theta

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [T] -> (cos, sin), each [T, 1, rd/2] fp32."""
        # NOTE: inv_freq is recomputed (cheap, [rd/2]) so that a model built on the meta device needs no buffer fix-up.
        exponent = torch.arange(0, self.rotary_dim, 2, dtype=torch.float32, device=positions.device) / self.rotary_dim
        inv_freq = 1.0 / (self.theta**exponent)  # [rd/2]
        freqs = (positions.float()[:, None] * inv_freq[None, :])[:, None, :]  # [T, 1, rd/2]
        return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [T, heads, d], rope (cos, sin) [T, 1, rd/2] -> [T, heads, d]. The halves x1, x2 of the rotary dims become
    (x1 cos - x2 sin, x2 cos + x1 sin): x * cos + rotate_half(x) * sin to the last bit."""
    cos, sin = rope[0].to(x.dtype), rope[1].to(x.dtype)
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


class Attention(nn.Module):
    """Section 2.4: q/k/v with bias, QK-norm before RoPE, partial RoPE, causal GQA attention, o_proj without bias."""

    def __init__(self, config: ModelConfig, layer_idx: int, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.layer_idx = layer_idx  # also the KV-cache layer index in the attention backend
        self.head_dim = config.head_dim
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim, config.num_attention_heads,
                                          config.num_key_value_heads, config.attention_bias, tp)
        self.num_heads, self.num_kv_heads = self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads  # this rank's
        self.q_size, self.kv_size = self.qkv_proj.q_size, self.qkv_proj.kv_size
        self.o_proj = RowParallelLinear(config.num_attention_heads * self.head_dim, config.hidden_size, False, tp,
                                        what="num_attention_heads")
        self.use_qk_norm = config.use_qk_norm
        if config.use_qk_norm:
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)  # one weight shared by all heads
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], attn: AttentionBackend) -> torch.Tensor:
        """rope: the step's (cos, sin) tables from the model's `RotaryEmbedding`."""
        num_tokens = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(num_tokens, self.num_heads, self.head_dim)  # [T, nh, d]
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)  # [T, nkv, d]
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)  # [T, nkv, d]
        if self.use_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        out = attn.forward(self.layer_idx, q, k, v)  # [T, nh, d]
        return self.o_proj(out.reshape(num_tokens, self.q_size))  # [T, H]


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)); the dense MLP (section 2.6) and the shared expert."""

    def __init__(self, hidden_size: int, intermediate_size: int, tp: TensorParallelGroup,
                 reduce_results: bool = True) -> None:
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(hidden_size, [intermediate_size] * 2, False, tp)  # gate first
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, False, tp, reduce_results,
                                           what="intermediate_size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Router(nn.Module):
    """Section 2.5 router ("noaux_tc"), in fp32: sigmoid scores, bias for selection only, group-limited top-k."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # NOTE: both tensors stay fp32 whatever the model dtype (transformers keeps them fp32 too).
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size, dtype=torch.float32))
        self.e_score_correction_bias = nn.Parameter(
            torch.zeros(config.n_routed_experts, dtype=torch.float32), requires_grad=False
        )
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.norm_topk_prob = config.norm_topk_prob
        self.routed_scaling_factor = config.routed_scaling_factor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, H] -> (topk_ids [T, k] int64, topk_weights [T, k] fp32)."""
        scores = torch.sigmoid(F.linear(x.float(), self.weight))  # s, [T, E]
        choice = scores + self.e_score_correction_bias  # c = s + bias, used only to choose
        if self.n_group > 1:
            grouped = choice.view(x.shape[0], self.n_group, -1)  # [T, G, E/G]
            group_scores = grouped.topk(2, dim=-1).values.sum(-1)  # [T, G]: sum of the two best per group
            kept = group_scores.topk(self.topk_group, dim=-1).indices  # [T, topk_group]
            group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
            choice = grouped.masked_fill(~group_mask[..., None], float("-inf")).view_as(choice)
        topk_ids = choice.topk(self.top_k, dim=-1).indices  # [T, k]
        topk_weights = scores.gather(1, topk_ids)  # w = s[idx], unbiased
        if self.norm_topk_prob:
            topk_weights = topk_weights / (topk_weights.sum(-1, keepdim=True) + 1e-20)
        return topk_ids, topk_weights * self.routed_scaling_factor


class MoE(nn.Module):
    """moe(x) = sum_i w_i * E_{idx_i}(x) + shared(x) (section 2.5)."""

    def __init__(self, config: ModelConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.moe_intermediate_size
        self.tp = tp
        expert_start, expert_end = tp.layout.expert_range(config.n_routed_experts)
        inter_start, inter_end = tp.layout.moe_intermediate_range(inter)
        self.expert_start, self.num_local_experts = expert_start, expert_end - expert_start
        self.is_expert_parallel = tp.layout.expert_parallel and tp.world_size > 1
        self.gate = Router(config)
        local_inter = inter_end - inter_start
        self.w13 = nn.Parameter(torch.empty(self.num_local_experts, 2 * local_inter, hidden))  # [E, 2I, H]: gate, up
        self.w2 = nn.Parameter(torch.empty(self.num_local_experts, hidden, local_inter))  # [E, H, I]
        self.shared_experts = (
            MLP(hidden, inter * config.n_shared_experts, tp, reduce_results=False)
            if config.n_shared_experts > 0 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        topk_ids, topk_weights = self.gate(x)  # every rank routes every token (x is replicated across ranks)
        if self.is_expert_parallel:
            # Dispatch is local: each rank has every token and runs its own experts; the others' become id E.
            local = topk_ids - self.expert_start
            topk_ids = local.masked_fill((local < 0) | (local >= self.num_local_experts), self.num_local_experts)
        out = fused_experts(x, self.w13, self.w2, topk_ids, topk_weights, self.is_expert_parallel)  # [T, H] partial
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return self.tp.all_reduce(out)  # combine: one all-reduce for routed and shared experts


class DecoderLayer(nn.Module):
    """Section 2.2: pre-norm, two residual adds."""

    def __init__(self, config: ModelConfig, layer_idx: int, is_moe: bool, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx, tp)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp: nn.Module = MoE(config, tp) if is_moe else MLP(config.hidden_size, config.intermediate_size, tp)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], attn: AttentionBackend,
                output_rows: torch.Tensor | None = None) -> torch.Tensor:
        """x [T, H] -> [T, H]; with output_rows [N], only those rows' outputs [N, H] (every row still writes its KV)."""
        x = x + self.self_attn(self.input_layernorm(x), rope, attn)
        if output_rows is not None:
            x = x[output_rows]
            if x.shape[0] == 0:
                return x
        return x + self.mlp(self.post_attention_layernorm(x))


class Glm4MoeModel(nn.Module):
    def __init__(self, config: ModelConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size, tp)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, config.is_moe_layer(i), tp) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class MTPLayer(nn.Module):
    """Section 4: the "nextn" layer, checkpoint prefix `model.layers.{num_hidden_layers}`; its decoder is always MoE.

    `head` is None when the checkpoint's `shared_head.head` equals (or lacks) the target's lm_head: then the
    target head is used (section 4.1). The embedding is always the target's.
    """

    def __init__(self, config: ModelConfig, tp: TensorParallelGroup) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.enorm = RMSNorm(hidden, config.rms_norm_eps)
        self.hnorm = RMSNorm(hidden, config.rms_norm_eps)
        # NOTE: replicated (as vLLM's): its [2H] input is replicated too, and it is one small matrix.
        self.eh_proj = nn.Linear(2 * hidden, hidden, bias=False)  # input columns: [embedding half, hidden half]
        self.layer = DecoderLayer(config, config.num_hidden_layers, True, tp)
        self.shared_head_norm = RMSNorm(hidden, config.rms_norm_eps)
        self.head: ParallelLMHead | None = None


class Glm4MoeForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig, tp: TensorParallelGroup | None = None) -> None:
        super().__init__()
        self.config = config
        self.tp = tp if tp is not None else TensorParallelGroup()
        self.model = Glm4MoeModel(config, self.tp)
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, self.tp)
        self.rotary = RotaryEmbedding(config.rotary_dim, config.rope_theta)  # no weights: shared by every layer
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.mtp = MTPLayer(config, self.tp) if config.has_mtp else None

    @property
    def has_mtp(self) -> bool:
        return self.mtp is not None

    @property
    def num_kv_layers(self) -> int:
        """Attention layers that need KV cache: the target's, then the MTP layer's (index num_hidden_layers)."""
        return self.config.num_hidden_layers + int(self.has_mtp)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, attn: AttentionBackend) -> torch.Tensor:
        """input_ids, positions [T] -> hidden [T, H] after the final norm (section 2.1)."""
        x = self.model.embed_tokens(input_ids)  # [T, H] (replicated on every rank); no embedding scale
        rope = self.rotary(positions)  # (cos, sin): built once, used by every layer
        for layer in self.model.layers:
            x = layer(x, rope, attn)
        return self.model.norm(x)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, H] -> logits [N, V] in fp32; untied head, no bias, no soft-cap."""
        return self.lm_head(hidden).float()

    def mtp_forward(
        self, input_ids: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor, attn: AttentionBackend,
        output_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One MTP step (section 4.2) for T rows: row p takes the target hidden h_p (after model.norm, or the previous
        MTP step's output for drafts 2..k) and the next token t_{p+1}; returns g [T, H] after shared_head.norm, which
        is both the input of `compute_mtp_logits` and the hidden carried to the next draft step (section 4.3).
        With output_rows [N]: g of those rows only, [N, H]; the others just write their MTP KV (a draft-extend needs
        g of one row per request, and the MoE of the rest is skipped).

        Positions: any convention used consistently inside the MTP KV cache works (RoPE is relative); transformers
        uses the position of t_{p+1}, vLLM/SGLang that of h_p.
        """
        assert self.mtp is not None, "this checkpoint has no MTP layer"
        mtp = self.mtp
        e = self.model.embed_tokens(input_ids)  # [T, H]
        z = mtp.eh_proj(torch.cat([mtp.enorm(e), mtp.hnorm(hidden)], dim=-1))  # [T, 2H] -> [T, H]
        y = mtp.layer(z, self.rotary(positions), attn, output_rows)  # residual stream starts at z
        return mtp.shared_head_norm(y)

    def compute_mtp_logits(self, mtp_hidden: torch.Tensor) -> torch.Tensor:
        assert self.mtp is not None, "this checkpoint has no MTP layer"
        head = self.mtp.head if self.mtp.head is not None else self.lm_head
        return head(mtp_hidden).float()
