"""What each rank of tests/distributed/test_tensor_parallel_model.py runs (spawned; importable by name)."""

from __future__ import annotations

from pathlib import Path

import torch

import engine.loader as loader
from engine.distributed.parallel_state import TensorParallelGroup, destroy_distributed, init_distributed
from engine.parallel.layout import ParallelLayout
from kernels.attention import AttentionMetadata, DenseAttention

SEQUENCES = [[5, 17, 230, 998, 42, 7], [3], list(range(100, 140)), [900, 1, 2, 3, 4, 999 - 1, 11]]


def model_outputs(model) -> dict[str, torch.Tensor]:
    """Target logits of SEQUENCES as one batch, and the MTP layer's draft logits over the same rows."""
    c = model.config
    attn = DenseAttention(model.model.layers[0].self_attn.num_heads, model.model.layers[0].self_attn.num_kv_heads,
                          c.head_dim, c.head_dim**-0.5)
    attn.plan(AttentionMetadata.for_prefill([len(s) for s in SEQUENCES]))
    ids = torch.tensor([t for s in SEQUENCES for t in s])
    positions = torch.cat([torch.arange(len(s)) for s in SEQUENCES])
    with torch.inference_mode():
        hidden = model(ids, positions, attn)
        out = {"logits": model.compute_logits(hidden)}
        if model.has_mtp:
            g = model.mtp_forward(ids, hidden, positions, attn)  # any pairing serves to compare ranks
            out["mtp_logits"] = model.compute_mtp_logits(g)
    return out


def run_rank(rank: int, world_size: int, port: int, cases: list[tuple[str, str, bool]], out_dir: str) -> None:
    """For every (name, model_dir, expert_parallel): load this rank's slices, record what was read, run."""
    torch.set_num_threads(1)
    group = init_distributed(ParallelLayout(rank, world_size), torch.device("cpu"), f"tcp://127.0.0.1:{port}", 60)
    original = loader._read_tensor
    reads: list[tuple[str, tuple[int, ...], int]] = []

    def spy(f, name, target, dest_shape, path):
        tensor = original(f, name, target, dest_shape, path)
        reads.append((name, tuple(tensor.shape), tensor.numel() * tensor.element_size()))
        return tensor

    loader._read_tensor = spy
    results = {}
    try:
        for name, model_dir, expert_parallel in cases:
            tp = TensorParallelGroup(ParallelLayout(rank, world_size, expert_parallel), group.device_group,
                                     group.cpu_group)
            reads.clear()
            model = loader.load_model(model_dir, dtype=torch.float32, tp=tp)
            results[name] = {**model_outputs(model), "reads": list(reads)}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        destroy_distributed()
