"""Attention without a KV cache: each sequence attends causally over its own rows only.

The plain-PyTorch reference of causal GQA attention: used for training, for the oracle in kernel tests, and by
callers that run whole sequences at once. Differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.attention.base import AttentionBackend


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """One sequence. q [Lq, nh, d], k/v [Lk, nkv, d], Lq <= Lk, bottom-right aligned causal mask -> [Lq, nh, d]."""
    num_q = q.shape[0]
    num_k = k.shape[0]
    # NOTE: 4-D inputs with enable_gqa take torch's fused CPU kernel (3-D ones fall back to the unfused math path,
    # ~1.8x slower with its backward) and skip materialising repeated KV heads.
    qh, kh, vh = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # [1, heads, L, d]
    if num_q == num_k:
        out = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=scale, enable_gqa=True)
    else:
        # Row i of the query is position num_k - num_q + i: it sees keys 0..num_k - num_q + i.
        rows = torch.arange(num_q, device=q.device)[:, None] + (num_k - num_q)
        mask = torch.arange(num_k, device=q.device)[None, :] <= rows  # [Lq, Lk]
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale, enable_gqa=True)
    out = out[0]  # [nh, Lq, d]
    return out.transpose(0, 1)  # [Lq, nh, d]


class DenseAttention(AttentionBackend):
    def forward(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        assert self.metadata is not None, "plan() must be called before forward()"
        outs = []
        start = 0
        for n in self.metadata.query_lens_cpu:
            outs.append(causal_attention(q[start : start + n], k[start : start + n], v[start : start + n], self.scale))
            start += n
        return torch.cat(outs, dim=0)
