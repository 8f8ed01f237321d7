"""Tensor-parallel linear layers (vLLM's names). Each is an `nn.Linear` over this rank's part of the weight.

- Column-parallel (`ColumnParallelLinear`, `MergedColumnParallelLinear`, `QKVParallelLinear`): output features
  split; each rank computes its slice of y, no collective. The fused variants concatenate per-rank slices of several
  checkpoint tensors (q|k|v, gate|up), so every rank's output keeps the fused order of its own heads/rows.
- Row-parallel (`RowParallelLinear`): input features split; each rank computes a partial sum, summed by one
  all-reduce (or left partial with `reduce_results=False` for a caller that adds several before one all-reduce).
Which checkpoint slice fills which rows is `engine.weight_map`'s business, from the same `ParallelLayout`.
At world size 1 all of them are exactly `nn.Linear` (same parameters, same math, no collective).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.distributed.parallel_state import TensorParallelGroup


def _part(size: int, tp: TensorParallelGroup, what: str) -> int:
    start, end = tp.layout.split(size, what)
    return end - start


class ColumnParallelLinear(nn.Linear):
    def __init__(self, input_size: int, output_size: int, bias: bool, tp: TensorParallelGroup,
                 what: str = "output features") -> None:
        super().__init__(input_size, _part(output_size, tp, what), bias=bias)


class MergedColumnParallelLinear(nn.Linear):
    """Several column-parallel outputs fused, e.g. gate_up_proj: [gate part | up part] on every rank."""

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool, tp: TensorParallelGroup,
                 what: str = "intermediate_size") -> None:
        self.output_sizes = [_part(size, tp, what) for size in output_sizes]  # this rank's part of each
        super().__init__(input_size, sum(self.output_sizes), bias=bias)


class QKVParallelLinear(nn.Linear):
    """q|k|v fused over this rank's query heads and KV heads (one replicated KV head when nkv < world size)."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool,
                 tp: TensorParallelGroup) -> None:
        self.num_heads = _part(num_heads, tp, "num_attention_heads")  # local query heads
        kv_start, kv_end = tp.layout.kv_head_range(num_kv_heads)
        self.num_kv_heads = kv_end - kv_start  # local KV heads
        self.q_size, self.kv_size = self.num_heads * head_dim, self.num_kv_heads * head_dim
        super().__init__(hidden_size, self.q_size + 2 * self.kv_size, bias=bias)


class RowParallelLinear(nn.Linear):
    def __init__(self, input_size: int, output_size: int, bias: bool, tp: TensorParallelGroup,
                 reduce_results: bool = True, what: str = "input features") -> None:
        super().__init__(_part(input_size, tp, what), output_size, bias=bias)
        self.tp = tp
        self.reduce_results = reduce_results  # False: the caller all-reduces (and adds the bias, if any)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp.world_size == 1:
            return F.linear(x, self.weight, self.bias)
        y = F.linear(x, self.weight)  # [.., out] partial sum over this rank's input features
        if not self.reduce_results:
            return y
        y = self.tp.all_reduce(y)
        return y if self.bias is None else y + self.bias
