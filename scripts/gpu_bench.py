#!/usr/bin/env python3
"""Decode throughput of a GLM-4.5-Air-width model (random weights, few layers) on one GPU, three ways side by side:
eager PyTorch paged attention, eager FlashInfer, FlashInfer under CUDA graphs. Prints a Markdown table.

Each run: B sequences whose first `--context` tokens are already in the KV cache (random K/V), then `--steps`
greedy decode steps (forward, lm_head, argmax feeding the next step), timed after warm-up steps. Host-side work
(metadata, planning) is inside the timing, as in serving.

    python scripts/gpu_bench.py                      # 4 layers, batches 1/8/32/64, context 1024
    python scripts/gpu_bench.py --layers 2 --batch-sizes 1,64 --steps 16
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import ModelConfig  # noqa: E402
from engine.cuda_graph_runner import CudaGraphRunner  # noqa: E402
from engine.loader import build_model  # noqa: E402
from kernels.attention.base import AttentionBackend, AttentionMetadata  # noqa: E402
from kernels.attention.torch_paged import TorchPagedAttention, allocate_kv_caches  # noqa: E402

MODES = ("torch", "flashinfer", "graphs")
MODE_TITLES = {"torch": "torch eager", "flashinfer": "FlashInfer eager", "graphs": "FlashInfer + CUDA graphs"}


def air_config(num_layers: int) -> ModelConfig:
    """GLM-4.5-Air's widths (config.json of zai-org/GLM-4.5-Air) with `num_layers` layers, no MTP."""
    return ModelConfig(
        vocab_size=151552, hidden_size=4096, intermediate_size=10944, moe_intermediate_size=1408,
        num_hidden_layers=num_layers, num_attention_heads=96, num_key_value_heads=8, head_dim=128,
        n_routed_experts=128, n_shared_experts=1, num_experts_per_tok=8, n_group=1, topk_group=1,
        routed_scaling_factor=1.0, norm_topk_prob=True, first_k_dense_replace=1, use_qk_norm=False,
        attention_bias=True, partial_rotary_factor=0.5, rope_theta=1_000_000.0, max_position_embeddings=131072,
    )


@torch.no_grad()
def random_model(config: ModelConfig, seed: int, device: str = "cuda") -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(config, torch.bfloat16, device)
    for name, param in model.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
        elif name.endswith("e_score_correction_bias"):
            param.uniform_(0.0, 0.05)
        else:
            param.normal_(0.0, 0.02)
    return model


@dataclass
class Pool:
    """B sequences with fixed shuffled blocks; `lens` are their current context lengths."""

    tables: torch.Tensor  # [max_batch, blocks_per_seq] int32 on the device
    tables_host: list[list[int]]
    block_size: int

    def metadata(self, batch: int, lens: list[int]) -> AttentionMetadata:
        """Decode step: one new token per sequence at position lens[b] (lens are updated by the caller)."""
        bs = self.block_size
        slots = [self.tables_host[b][p // bs] * bs + p % bs for b, p in enumerate(lens)]
        seq_lens = tuple(p + 1 for p in lens)
        dev = self.tables.device
        return AttentionMetadata(
            query_start_loc=torch.arange(batch + 1, dtype=torch.int32).to(dev, non_blocking=True),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32).to(dev, non_blocking=True),
            query_lens_cpu=(1,) * batch,
            seq_lens_cpu=seq_lens,
            slot_mapping=torch.tensor(slots, dtype=torch.int64).to(dev, non_blocking=True),
            block_tables=self.tables[:batch],
        )


def make_pool(max_batch: int, max_len: int, block_size: int, device: str = "cuda") -> tuple[Pool, int]:
    blocks_per_seq = -(-max_len // block_size)
    num_blocks = max_batch * blocks_per_seq + 1  # block 0: CUDA-graph capture's dummy writes
    order = (torch.randperm(num_blocks - 1) + 1).view(max_batch, blocks_per_seq).int()
    return Pool(order.to(device), order.tolist(), block_size), num_blocks


def decode_loop(model, step_fn, pool: Pool, batch: int, context: int, num_steps: int) -> None:
    device = pool.tables.device
    lens = [context] * batch
    ids = torch.randint(0, model.config.vocab_size, (batch,), device=device)
    for _ in range(num_steps):
        metadata = pool.metadata(batch, lens)
        positions = torch.tensor(lens, dtype=torch.int64).to(device, non_blocking=True)
        hidden = step_fn(ids, positions, metadata)
        ids = model.compute_logits(hidden).argmax(-1)
        lens = [p + 1 for p in lens]
    if device.type == "cuda":
        torch.cuda.synchronize()


def eager_step(model, attn: AttentionBackend):
    def step(ids, positions, metadata):
        attn.plan(metadata)
        return model(ids, positions, attn)

    return step


def graph_step(runner: CudaGraphRunner):
    def step(ids, positions, metadata):
        return runner.run(ids, positions, metadata)

    return step


def capture_graphs(model, attn, batches: list[int], max_len: int, notes: list[str]):
    """The graph step function, or None (with the reason in `notes`) when capture fails."""
    runner = CudaGraphRunner(model, attn, max(batches), capture_sizes=batches, max_model_len=max_len)
    start = time.perf_counter()
    try:
        runner.capture()
    except RuntimeError as exc:
        notes.append(f"FlashInfer + CUDA graphs: n/a, {str(exc).splitlines()[0]}")
        return None
    notes.append(f"CUDA graph capture of {len(batches)} batch sizes took {time.perf_counter() - start:.1f} s")
    return graph_step(runner)


def time_decode(model, step_fn, pool, batch, args) -> float:
    """Tokens per second over `args.steps` timed steps."""
    decode_loop(model, step_fn, pool, batch, args.context, args.warmup)
    start = time.perf_counter()
    decode_loop(model, step_fn, pool, batch, args.context, args.steps)
    return batch * args.steps / (time.perf_counter() - start)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-sizes", default="1,8,32,64")
    p.add_argument("--context", type=int, default=1024, help="tokens already cached per sequence")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--time-budget", type=float, default=360.0, help="seconds; later runs are skipped past it")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


@torch.inference_mode()
def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 2
    started = time.perf_counter()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        print(f"gpu_bench: --modes: unknown {sorted(unknown)}; choose from {MODES}", file=sys.stderr)
        return 2
    modes.sort(key=MODES.index)
    config = air_config(args.layers)
    model = random_model(config, args.seed)
    max_len = args.context + args.warmup + args.steps + 1
    pool, num_blocks = make_pool(max(batches), max_len, args.block_size)
    caches = allocate_kv_caches(model.num_kv_layers, num_blocks, args.block_size, config.num_key_value_heads,
                                config.head_dim, torch.bfloat16, "cuda")
    for cache in caches:
        cache.normal_()
    shape = (config.num_attention_heads, config.num_key_value_heads, config.head_dim, config.head_dim**-0.5)
    notes: list[str] = []
    results: dict[tuple[str, int], str] = {}
    flashinfer_attn = None
    # NOTE: graphs go last: a failed capture can leave the CUDA context unusable for the other modes.
    for mode in modes:
        if mode == "torch":
            step_fn = eager_step(model, TorchPagedAttention(*shape, caches))
        else:
            if flashinfer_attn is None:
                from kernels.attention.flashinfer_paged import FlashInferPagedAttention

                flashinfer_attn = FlashInferPagedAttention(*shape, caches)
            step_fn = eager_step(model, flashinfer_attn) if mode == "flashinfer" else None
            if mode == "graphs":
                step_fn = capture_graphs(model, flashinfer_attn, batches, max_len, notes)
        for batch in batches:
            if step_fn is None:
                results[mode, batch] = "n/a"
            elif time.perf_counter() - started > args.time_budget:
                results[mode, batch] = "skipped (time)"
            else:
                tps = time_decode(model, step_fn, pool, batch, args)
                results[mode, batch] = f"{tps:,.0f}"
                print(f"  {MODE_TITLES[mode]:>26} batch {batch:>3}: {tps:,.0f} tok/s", file=sys.stderr, flush=True)
    print_table(args, config, modes, batches, results, notes, time.perf_counter() - started)
    return 0


def print_table(args, config, modes, batches, results, notes, elapsed) -> None:
    flashinfer_version = "-"
    if "flashinfer" in modes or "graphs" in modes:
        import flashinfer

        flashinfer_version = getattr(flashinfer, "__version__", "?")
    print(f"\n### Decode throughput, GLM-4.5-Air widths, {config.num_hidden_layers} layers, random bf16 weights\n")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, flashinfer {flashinfer_version}; "
          f"context {args.context} tokens/sequence, {args.steps} timed steps after {args.warmup} warm-up, "
          f"block size {args.block_size}.\n")
    header = ["batch"] + [f"{MODE_TITLES[m]} (tok/s)" for m in modes]
    has_ratio = "torch" in modes and len(modes) > 1
    if has_ratio:
        header += [f"{MODE_TITLES[m]} / torch" for m in modes if m != "torch"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for batch in batches:
        row = [str(batch)] + [results[m, batch] for m in modes]
        if has_ratio:
            row += [ratio(results[m, batch], results["torch", batch]) for m in modes if m != "torch"]
        print("| " + " | ".join(row) + " |")
    for note in notes:
        print(f"\n- {note}")
    print(f"\n(total {elapsed:.0f} s)")


def ratio(value: str, base: str) -> str:
    try:
        return f"{float(value.replace(',', '')) / float(base.replace(',', '')):.2f}x"
    except ValueError:
        return "-"


if __name__ == "__main__":
    sys.exit(main())
