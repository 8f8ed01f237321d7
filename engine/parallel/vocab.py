"""Vocabulary-parallel embedding and LM head (vLLM's names): each rank holds ceil(V / world) vocabulary rows.

The last rank's rows past V are padding (zeros, never read as tokens; their logits are cut off after the gather).
At world size 1 they are exactly `nn.Embedding` / a bias-free `nn.Linear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.distributed.parallel_state import TensorParallelGroup


class VocabParallelEmbedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.vocab_start, self.vocab_end, rows = tp.layout.vocab_range(vocab_size)
        self.weight = nn.Parameter(torch.empty(rows, hidden_size))  # [V / world, H]
        self.tp = tp

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [T] -> [T, H]: each rank embeds the ids in its range (zeros elsewhere), summed over ranks."""
        if self.tp.world_size == 1:
            return F.embedding(input_ids, self.weight)
        is_local = (input_ids >= self.vocab_start) & (input_ids < self.vocab_end)
        local_ids = torch.where(is_local, input_ids - self.vocab_start, 0)
        x = F.embedding(local_ids, self.weight) * is_local.unsqueeze(-1).to(self.weight.dtype)
        return self.tp.all_reduce(x)


class ParallelLMHead(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, tp: TensorParallelGroup) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        _, _, rows = tp.layout.vocab_range(vocab_size)
        self.weight = nn.Parameter(torch.empty(rows, hidden_size))  # [V / world, H]
        self.tp = tp

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, H] -> logits [N, V] on every rank (all-gather of each rank's vocabulary slice)."""
        logits = F.linear(hidden, self.weight)  # [N, V / world]
        if self.tp.world_size == 1:
            return logits
        return self.tp.all_gather(logits)[:, : self.vocab_size]
