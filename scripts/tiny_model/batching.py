"""Packing tokenized samples into flat training batches with next-token and MTP targets.

A batch is many whole sequences laid end to end (no padding), run with `DenseAttention` planned by
`AttentionMetadata.for_prefill(lens)`. Targets, per sequence of n tokens t_0..t_{n-1}:
- next token: row p predicts t_{p+1} (p < n-1), trained where t_{p+1} is model output;
- MTP (reference 4.2): row p gets h_p and t_{p+1} and predicts t_{p+2} (p < n-2), trained where t_{p+2} is output.
  The MTP input of the last row (no t_{p+1}) is a pad token; causality keeps it from reaching earlier rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from scripts.tiny_model.corpus import Sample


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [T] int64, all sequences concatenated
    positions: torch.Tensor  # [T] int64, restarting at 0 per sequence
    lens: tuple[int, ...]  # tokens per sequence
    main_rows: torch.Tensor  # [N] int64 rows whose next-token loss counts
    main_labels: torch.Tensor  # [N] int64
    mtp_input_ids: torch.Tensor  # [T] int64: t_{p+1} per row (pad on each sequence's last row)
    mtp_rows: torch.Tensor  # [M] int64 rows whose MTP loss counts
    mtp_labels: torch.Tensor  # [M] int64: t_{p+2}

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())


def make_batch(samples: list[Sample], pad_id: int) -> Batch:
    ids, positions, mtp_ids = [], [], []
    main_rows, main_labels, mtp_rows, mtp_labels = [], [], [], []
    offset = 0
    for s in samples:
        n = len(s.ids)
        ids += s.ids
        positions += range(n)
        mtp_ids += s.ids[1:] + [pad_id]
        for p in range(n - 1):
            if s.is_output[p + 1]:
                main_rows.append(offset + p)
                main_labels.append(s.ids[p + 1])
            if p + 2 < n and s.is_output[p + 2]:
                mtp_rows.append(offset + p)
                mtp_labels.append(s.ids[p + 2])
        offset += n

    def tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int64)

    return Batch(tensor(ids), tensor(positions), tuple(len(s.ids) for s in samples), tensor(main_rows),
                 tensor(main_labels), tensor(mtp_ids), tensor(mtp_rows), tensor(mtp_labels))


def packed_batches(samples: list[Sample], tokens_per_batch: int, seed: int) -> Iterator[list[Sample]]:
    """Endless epochs; each a seeded shuffle greedily packed into batches of at most `tokens_per_batch` tokens."""
    rng = random.Random(seed)
    order = list(range(len(samples)))
    while True:
        rng.shuffle(order)
        batch: list[Sample] = []
        used = 0
        for i in order:
            n = len(samples[i].ids)
            if batch and used + n > tokens_per_batch:
                yield batch
                batch, used = [], 0
            batch.append(samples[i])
            used += n
        if batch:
            yield batch
