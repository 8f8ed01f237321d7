"""Offline throughput in one process: glm-serve's `LLM.generate` vs transformers' `generate` (static batches) vs
transformers' continuous batching (`generate_batch`'s manager).

All three run the same random prompts (lengths drawn in [--min-input, --max-input]) with greedy decoding and the
same per-prompt output lengths (drawn in [--min-output, --max-output]; EOS ignored everywhere). `generate` runs them
in arrival order in static batches of --batch-size (left-padded, each batch decoding until its longest output is
done), the way a plain `generate` loop serves a dataset; continuous batching gets every prompt at once with its own
max_new_tokens. Printed: the machine, wall time, output and total tokens/s of each, ratios to glm-serve, and how
many prompts got exactly glm-serve's tokens.

Not a test: run it by hand, e.g.
    .venv/bin/python -m loadtests.bench_offline --num-prompts 64
Without --model it builds a tiny random GLM-4.5-architecture checkpoint (MoE, QK-norm, partial RoPE) in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from loadtests.machine_info import machine_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: build a tiny random one)")
    p.add_argument("--num-prompts", type=int, default=256)
    p.add_argument("--min-input", type=int, default=16)
    p.add_argument("--max-input", type=int, default=1024)
    p.add_argument("--min-output", type=int, default=16)
    p.add_argument("--max-output", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16, help="transformers' static batch size")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=8192)
    p.add_argument("--async-scheduling", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--attention-backend", default="auto", help="glm-serve's attention backend (auto, cpu, torch, ...)")
    p.add_argument("--skip-hf", action="store_true", help="only run glm-serve")
    p.add_argument("--skip-hf-static", action="store_true", help="skip transformers `generate` (static batches)")
    p.add_argument("--skip-hf-cb", action="store_true", help="skip transformers continuous batching")
    p.add_argument("--result-file", default=None, help="write the figures as JSON here")
    p.add_argument("--hidden-size", type=int, default=128, help="tiny model: hidden size")
    p.add_argument("--num-layers", type=int, default=4, help="tiny model: decoder layers")
    p.add_argument("--vocab-size", type=int, default=4096, help="tiny model: vocabulary")
    return p.parse_args(argv)


def build_tiny_model(path: Path, args: argparse.Namespace) -> Path:
    """A random GLM-4.5-architecture checkpoint written by transformers (no MTP layer)."""
    from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

    hidden = args.hidden_size
    config = Glm4MoeConfig(
        vocab_size=args.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, moe_intermediate_size=hidden // 2,
        num_hidden_layers=args.num_layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
        n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=1, topk_group=1,
        first_k_dense_replace=1, routed_scaling_factor=2.5, norm_topk_prob=True, attention_bias=True,
        use_qk_norm=True, partial_rotary_factor=0.5, max_position_embeddings=args.max_input + args.max_output + 16,
        num_nextn_predict_layers=0, pad_token_id=0, eos_token_id=[1, 2, 3], tie_word_embeddings=False,
    )
    torch.manual_seed(args.seed)
    Glm4MoeForCausalLM(config).save_pretrained(path)
    return path


def make_workload(args: argparse.Namespace, vocab_size: int) -> tuple[list[list[int]], list[int]]:
    rng = random.Random(args.seed)
    prompts = [[rng.randrange(4, vocab_size) for _ in range(rng.randint(args.min_input, args.max_input))]
               for _ in range(args.num_prompts)]
    outputs = [rng.randint(args.min_output, args.max_output) for _ in prompts]
    return prompts, outputs


def run_ours(model_dir: Path, prompts: list[list[int]], output_lens: list[int], args) -> tuple[float, list[list[int]]]:
    from engine import LLM, SamplingParams

    async_scheduling = {"auto": None, "on": True, "off": False}[args.async_scheduling]
    llm = LLM(model=model_dir, dtype=args.dtype, device=args.device, max_num_seqs=args.max_num_seqs,
              max_num_batched_tokens=args.max_num_batched_tokens, async_scheduling=async_scheduling,
              max_model_len=args.max_input + args.max_output + 1, seed=args.seed,
              attention_backend=args.attention_backend)
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in output_lens]
    warmup = [{"prompt_token_ids": p[:32]} for p in prompts[:4]]
    llm.generate(warmup, SamplingParams(temperature=0, max_tokens=4), use_tqdm=False)
    start = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    return elapsed, [o.outputs[0].token_ids for o in outs]


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison, prints the table and returns it (also what --result-file writes)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_summary()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else build_tiny_model(Path(tmp) / "tiny", args)
        from engine.config import ModelConfig

        prompts, output_lens = make_workload(args, ModelConfig.from_pretrained(model_dir).vocab_size)
        num_in, num_out = sum(map(len, prompts)), sum(output_lens)
        print(f"machine: {machine}")
        print(f"{len(prompts)} prompts: {num_in} prompt tokens, {num_out} output tokens; dtype={args.dtype}")
        ours_s, ours = run_ours(model_dir, prompts, output_lens, args)
        rows = [_row("glm-serve LLM.generate", ours_s, ours, ours, num_in, num_out)]
        rows += _run_transformers(model_dir, prompts, output_lens, ours, args)
    print(f"{'':48s} {'seconds':>9s} {'out tok/s':>10s} {'total tok/s':>12s} {'ours ×':>7s} {'identical':>10s}")
    for r in rows:
        print(f"{r['name']:48s} {r['seconds']:9.2f} {r['output_tok_s']:10.1f} {r['total_tok_s']:12.1f} "
              f"{ours_s and r['seconds'] / ours_s:7.2f} {r['identical']:5d}/{len(prompts)}")
    if len(rows) > 1:
        print("ours × = their seconds / ours (>1: glm-serve faster); identical = prompts whose tokens equal "
              "glm-serve's (a float near-tie can flip a token under a different batch shape, and what follows)")
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
              "num_prompts": len(prompts), "input_tokens": num_in, "output_tokens": num_out, "rows": rows}
    if args.result_file:
        Path(args.result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_file).write_text(json.dumps(result, indent=2))
    return result


def _run_transformers(model_dir: Path, prompts, output_lens, ours, args) -> list[dict]:
    if args.skip_hf:
        return []
    from loadtests import hf_baselines

    num_in, num_out = sum(map(len, prompts)), sum(output_lens)
    model = hf_baselines.load_model(model_dir, args.dtype, args.device)
    rows = []
    if not args.skip_hf_static:
        seconds, tokens = hf_baselines.run_static_batches(model, prompts, output_lens, args.batch_size)
        rows.append(_row(f"transformers generate, static batches of {args.batch_size}", seconds, tokens, ours,
                         num_in, num_out))
    if not args.skip_hf_cb:
        seconds, tokens = hf_baselines.run_continuous_batching(model, prompts, output_lens,
                                                               args.max_num_batched_tokens)
        rows.append(_row("transformers continuous batching", seconds, tokens, ours, num_in, num_out))
    return rows


def _row(name: str, seconds: float, tokens: list[list[int]], ours: list[list[int]], num_in: int,
         num_out: int) -> dict:
    if [len(t) for t in tokens] != [len(t) for t in ours]:
        raise RuntimeError(f"{name}: output lengths differ from glm-serve's (EOS not ignored?)")
    return {"name": name, "seconds": seconds, "output_tok_s": num_out / seconds,
            "total_tok_s": (num_in + num_out) / seconds, "identical": sum(a == b for a, b in zip(tokens, ours)),
            "common_prefix_fraction": sum(_common_prefix(a, b) for a, b in zip(tokens, ours)) / num_out}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


if __name__ == "__main__":
    main()
