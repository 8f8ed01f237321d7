"""Routed-expert computation behind one small interface, with the plain-PyTorch reference.

`fused_experts(x, w13, w2, topk_ids, topk_weights)` computes, for every token t,
    sum_i topk_weights[t, i] * down_e(silu(gate_e(x_t)) * up_e(x_t)),   e = topk_ids[t, i]
with w13 [E, 2I, H] (gate rows first, then up) and w2 [E, H, I]. Assignments are sorted by expert once; no Python
loop ever runs over tokens. Expert parallelism: an id equal to E (`w13.shape[0]`) marks an assignment whose expert
lives on another rank; it is sorted last and contributes nothing here.

Three implementations of the same math:
- `looped_experts`: a loop over the experts that received tokens. The reference and the CPU path; differentiable.
- `host_routed_experts`: the loop with the routing read on the host first (on CPU that costs nothing: there is no
  device queue to wait for), so no sort, count or gather runs as tensor ops. The same per-expert products in the
  same accumulation order as the loop (equal to the last bit); used on CPU for a few assignments (decode steps
  of a batch of one or two, MTP draft steps), where every small op's dispatch cost is the whole cost.
- `grouped_experts`: two `torch.nn.functional.grouped_mm` calls with device-side offsets. No host sync, so it can be
  captured in a CUDA graph; used on CUDA in bf16 (grouped_mm's supported case there), and on CPU in float32 without
  autograd for small batches (decode steps), where the expert loop's per-expert calls cost more than the math.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# CPU float32 batches with at most this many token-expert assignments take `grouped_experts` (measured faster up
# to ~2k assignments with a tiny model; the loop wins on big prefill batches).
_CPU_GROUPED_MAX_ASSIGNMENTS = 2048
# CPU inference batches with at most this many assignments take `host_routed_experts` (measured ~2x faster than
# grouped_mm for one token, even at four assignments, slower from six on).
_CPU_HOST_ROUTED_MAX_ASSIGNMENTS = 4


def _sort_by_expert(topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (token_of [T*k]: source token per sorted assignment, weights [T*k, 1], counts [E] per expert)."""
    top_k = topk_ids.shape[1]
    flat_ids = topk_ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    return order // top_k, topk_weights.reshape(-1)[order].unsqueeze(-1), flat_ids


def looped_experts(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor
) -> torch.Tensor:
    token_of, weights, flat_ids = _sort_by_expert(topk_ids, topk_weights)
    num_experts = w13.shape[0]
    counts = torch.bincount(flat_ids, minlength=num_experts)[:num_experts].tolist()  # NOTE: one host sync per layer
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


def host_routed_experts(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor
) -> torch.Tensor:
    top_k = topk_ids.shape[1]
    assignments_of: dict[int, list[int]] = {}  # expert -> its assignments (token * top_k + slot), in order
    for assignment, expert in enumerate(topk_ids.reshape(-1).tolist()):  # NOTE: a host sync (free on CPU)
        assignments_of.setdefault(expert, []).append(assignment)
    weights = topk_weights.reshape(-1, 1)
    out = torch.zeros_like(x)
    for expert in sorted(assignments_of):
        if expert >= w13.shape[0]:  # expert parallelism: another rank's expert contributes nothing here
            continue
        assignments = assignments_of[expert]
        if len(assignments) == 1:  # slices, not index tensors: fewer ops for the common decode case
            a, t = assignments[0], assignments[0] // top_k
            gate, up = F.linear(x[t : t + 1], w13[expert]).chunk(2, dim=-1)
            out[t : t + 1] += (F.linear(F.silu(gate) * up, w2[expert]) * weights[a : a + 1]).to(x.dtype)
            continue
        rows = torch.tensor([a // top_k for a in assignments], device=x.device)
        gate, up = F.linear(x[rows], w13[expert]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[expert]) * weights[torch.tensor(assignments, device=x.device)]
        out.index_add_(0, rows, y.to(x.dtype))
    return out


def grouped_experts(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
    has_foreign: bool = False,
) -> torch.Tensor:
    token_of, weights, flat_ids = _sort_by_expert(topk_ids, topk_weights)
    num_experts = w13.shape[0]
    counts = torch.bincount(flat_ids, minlength=num_experts)[:num_experts]
    offsets = torch.cumsum(counts, 0).to(torch.int32)  # [E] group ends
    h = F.grouped_mm(x[token_of], w13.transpose(1, 2), offs=offsets)  # [T*k, 2I]
    gate, up = h.chunk(2, dim=-1)
    y = F.grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offs=offsets)  # [T*k, H]
    if has_foreign:  # NOTE: rows past the last group (other ranks' experts) are uninitialised, maybe NaN
        is_here = torch.arange(y.shape[0], device=y.device).unsqueeze(-1) < offsets[-1]
        y = torch.where(is_here, y, 0.0)
    return torch.zeros_like(x).index_add_(0, token_of, (y * weights).to(x.dtype))


def is_graph_capturable(device: torch.device, dtype: torch.dtype) -> bool:
    """True when `fused_experts` on this device and activation dtype never synchronises with the host (it takes
    `grouped_experts`), so a forward through it can be captured in a CUDA graph. Keep in step with fused_experts."""
    return device.type == "cuda" and dtype == torch.bfloat16


def fused_experts(
    x: torch.Tensor,  # [T, H]
    w13: torch.Tensor,  # [E, 2I, H]
    w2: torch.Tensor,  # [E, H, I]
    topk_ids: torch.Tensor,  # [T, k] int64
    topk_weights: torch.Tensor,  # [T, k] float32
    has_foreign: bool = False,  # expert parallelism: topk_ids may hold E (an expert on another rank)
) -> torch.Tensor:  # [T, H], dtype of x
    if is_graph_capturable(x.device, x.dtype):
        return grouped_experts(x, w13, w2, topk_ids, topk_weights, has_foreign)
    is_cpu_inference = x.device.type == "cpu" and not torch.is_grad_enabled()
    if is_cpu_inference and topk_ids.numel() <= _CPU_HOST_ROUTED_MAX_ASSIGNMENTS:
        return host_routed_experts(x, w13, w2, topk_ids, topk_weights)
    is_small_cpu_batch = x.device.type == "cpu" and topk_ids.numel() <= _CPU_GROUPED_MAX_ASSIGNMENTS
    if is_small_cpu_batch and x.dtype == torch.float32 and w13.dtype == torch.float32 and not torch.is_grad_enabled():
        return grouped_experts(x, w13, w2, topk_ids, topk_weights, has_foreign)
    return looped_experts(x, w13, w2, topk_ids, topk_weights)
