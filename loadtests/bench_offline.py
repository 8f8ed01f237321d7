"""Offline throughput: glm-serve's `LLM.generate` vs transformers' `generate` with static batches, one process.

Both run the same random prompts (lengths drawn in [--min-input, --max-input]) with greedy decoding and the same
per-prompt output lengths (drawn in [--min-output, --max-output]; EOS ignored on both sides). transformers runs
them in arrival order in static batches of --batch-size (left-padded, each batch decoding until its longest output
is done), the way a plain `generate` loop serves a dataset. Printed: wall time, output and total tokens/s of each,
the ratio, and how many prompts got identical tokens from both.

Not a test: run it by hand, e.g.
    .venv/bin/python -m loadtests.bench_offline --num-prompts 64
Without --model it builds a tiny random GLM-4.5-architecture checkpoint (MoE, QK-norm, partial RoPE) in a temp dir.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch


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
    p.add_argument("--skip-hf", action="store_true", help="only run glm-serve")
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
              max_model_len=args.max_input + args.max_output + 1, seed=args.seed)
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in output_lens]
    warmup = [{"prompt_token_ids": p[:32]} for p in prompts[:4]]
    llm.generate(warmup, SamplingParams(temperature=0, max_tokens=4), use_tqdm=False)
    start = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    return elapsed, [o.outputs[0].token_ids for o in outs]


def run_hf(model_dir: Path, prompts: list[list[int]], output_lens: list[int], args) -> tuple[float, list[list[int]]]:
    from transformers import Glm4MoeForCausalLM

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    model = Glm4MoeForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    model.generation_config.eos_token_id = None  # decode every requested token, as ignore_eos does
    pad = model.config.pad_token_id or 0

    def one_batch(batch: list[list[int]], max_new: int) -> list[list[int]]:
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=pad)
        return out[:, width:].tolist()

    one_batch([prompts[0][:32]], 4)  # warm-up
    start = time.perf_counter()
    results: list[list[int]] = []
    for i in range(0, len(prompts), args.batch_size):
        batch, lens = prompts[i : i + args.batch_size], output_lens[i : i + args.batch_size]
        for tokens, n in zip(one_batch(batch, max(lens)), lens):
            results.append(tokens[:n])
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else build_tiny_model(Path(tmp) / "tiny", args)
        from engine.config import ModelConfig

        prompts, output_lens = make_workload(args, ModelConfig.from_pretrained(model_dir).vocab_size)
        num_in, num_out = sum(map(len, prompts)), sum(output_lens)
        print(f"{len(prompts)} prompts: {num_in} prompt tokens, {num_out} output tokens; "
              f"threads={torch.get_num_threads()} dtype={args.dtype}")
        ours_s, ours = run_ours(model_dir, prompts, output_lens, args)
        rows = [("glm-serve LLM.generate", ours_s)]
        if not args.skip_hf:
            hf_s, hf = run_hf(model_dir, prompts, output_lens, args)
            rows.append((f"transformers generate, static batches of {args.batch_size}", hf_s))
    print(f"{'':48s} {'seconds':>9s} {'out tok/s':>10s} {'total tok/s':>12s}")
    for name, seconds in rows:
        print(f"{name:48s} {seconds:9.2f} {num_out / seconds:10.1f} {(num_in + num_out) / seconds:12.1f}")
    if args.skip_hf:
        return
    print(f"speed-up (output tokens/s): {hf_s / ours_s:.2f}x")
    same = sum(a == b for a, b in zip(ours, hf))
    prefix = sum(_common_prefix(a, b) for a, b in zip(ours, hf)) / num_out
    print(f"identical outputs: {same}/{len(prompts)} prompts; common-prefix tokens: {prefix:.1%} "
          "(transformers' left padding changes float rounding, so a near-tie can flip a token and what follows)")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


if __name__ == "__main__":
    main()
