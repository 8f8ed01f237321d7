"""Routed-expert computation behind one small interface, with the plain-PyTorch reference.

`fused_experts(x, w13, w2, topk_ids, topk_weights)` computes, for every token t,
    sum_i topk_weights[t, i] * down_e(silu(gate_e(x_t)) * up_e(x_t)),   e = topk_ids[t, i]
with w13 [E, 2I, H] (gate rows first, then up) and w2 [E, H, I]. Tokens are grouped by expert (one sort), so the
Python loop runs over the experts that received tokens, never over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fused_experts(
    x: torch.Tensor,  # [T, H]
    w13: torch.Tensor,  # [E, 2I, H]
    w2: torch.Tensor,  # [E, H, I]
    topk_ids: torch.Tensor,  # [T, k] int64
    topk_weights: torch.Tensor,  # [T, k] float32
) -> torch.Tensor:  # [T, H], dtype of x
    num_tokens, top_k = topk_ids.shape
    flat_ids = topk_ids.reshape(-1)  # [T*k]
    order = torch.argsort(flat_ids, stable=True)  # assignments sorted by expert
    token_of = order // top_k  # [T*k] source token of each sorted assignment
    counts = torch.bincount(flat_ids, minlength=w13.shape[0]).tolist()  # NOTE: one host sync per layer
    weights = topk_weights.reshape(-1)[order].unsqueeze(-1)  # [T*k, 1]
    out = torch.zeros_like(x)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        rows = token_of[start : start + count]
        gate, up = F.linear(x[rows], w13[expert]).chunk(2, dim=-1)  # [n, I] each
        y = F.linear(F.silu(gate) * up, w2[expert])  # [n, H]
        out.index_add_(0, rows, (y * weights[start : start + count]).to(x.dtype))
        start += count
    return out
