"""The real model (tiny random checkpoint, fp32, CPU) run step by step through TorchPagedAttention equals one dense
forward of every whole sequence: ragged prefill, chunked prefill, verify-like rows and decode, on shuffled blocks.
"""

from __future__ import annotations

import pytest
import torch

from engine.loader import load_model
from kernels.attention.base import AttentionMetadata
from kernels.attention.dense import DenseAttention
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches
from model_factory import make_tiny_model_dir

BLOCK, NUM_SEQS = 4, 4
STEPS = [  # (sequences, new tokens each)
    ([0, 1, 2, 3], [7, 1, 12, 3]),
    ([2, 0], [9, 1]),
    ([1, 3, 0], [4, 4, 1]),
    ([0, 1, 2, 3], [1, 1, 1, 1]),
    ([3, 1], [1, 2]),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp("tiny_paged"), seed=4)
    return load_model(path, dtype="float32")


@torch.inference_mode()
def test_paged_steps_equal_dense_whole_sequences(model) -> None:
    c = model.config
    gen = torch.Generator().manual_seed(0)
    totals = [sum(n for seqs, news in STEPS for s, n in zip(seqs, news) if s == b) for b in range(NUM_SEQS)]
    tokens = [torch.randint(0, c.vocab_size, (n,), generator=gen) for n in totals]
    blocks_per_seq = -(-max(totals) // BLOCK)
    order = torch.randperm(NUM_SEQS * blocks_per_seq, generator=gen).view(NUM_SEQS, blocks_per_seq).int()
    caches = allocate_kv_caches(model.num_kv_layers, NUM_SEQS * blocks_per_seq, BLOCK, c.num_key_value_heads,
                                c.head_dim, torch.float32, "cpu")
    attn = TorchPagedAttention(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim**-0.5, caches)
    dense = DenseAttention(c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim**-0.5)
    dense.plan(AttentionMetadata.for_prefill(totals))
    expected = model(torch.cat(tokens), torch.cat([torch.arange(n) for n in totals]), dense).split(totals)
    done = [0] * NUM_SEQS
    for step, (seqs, news) in enumerate(STEPS):
        positions = torch.cat([torch.arange(done[b], done[b] + n) for b, n in zip(seqs, news)])
        ids = torch.cat([tokens[b][done[b] : done[b] + n] for b, n in zip(seqs, news)])
        rows = [int(order[b, p // BLOCK]) * BLOCK + p % BLOCK for b, n in zip(seqs, news)
                for p in range(done[b], done[b] + n)]
        seq_lens = tuple(done[b] + n for b, n in zip(seqs, news))
        starts = torch.tensor([0, *torch.tensor(news).cumsum(0).tolist()], dtype=torch.int32)
        attn.plan(AttentionMetadata(starts, torch.tensor(seq_lens, dtype=torch.int32), tuple(news), seq_lens,
                                    torch.tensor(rows), order[seqs]))
        hidden = model(ids, positions, attn).split(news)
        for b, n, got in zip(seqs, news, hidden):
            torch.testing.assert_close(got, expected[b][done[b] : done[b] + n], atol=1e-4, rtol=1e-4,
                                       msg=lambda m, s=step, b=b: f"step {s}, sequence {b}: {m}")
            done[b] += n
    assert done == totals
