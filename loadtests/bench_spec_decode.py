"""Offline speed of MTP speculative decoding: the same engine with k = 0 (off) and k = 1..3, side by side, one process.

Greedy decoding of held-out chat turns of the embedded model (its eval_conversations.jsonl, rendered with its chat
template, thinking on or off as each conversation says), natural stops, at several batch sizes: at batch size B
the prompts run in groups of B submitted together. Every k must produce exactly the tokens of k = 0 (checked).
Each group runs with k = 0, 1, 2, 3 back to back, --repeats times, and each group's best run per k counts, so that
load from other processes on a shared machine hurts every k alike; after the first repeat the prompts are
prefix-cache hits, so the figures are decode speed. Printed per batch size and k: output tokens/s in wall time and
in process CPU time (one thread: the CPU figure leaves out time spent waiting for a busy machine), each with its
ratio to k = 0, the mean acceptance length (tokens per verify step of a request) and the acceptance rate per
draft position.

Not a test: run it by hand, e.g.
    .venv/bin/python -m loadtests.bench_spec_decode                      # embedded model, batch 1, 8, 32
    .venv/bin/python -m loadtests.bench_spec_decode --batch-sizes 1 --ks 0,2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory with an MTP layer (default: the embedded model)")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated")
    p.add_argument("--ks", default="0,1,2,3", help="num_speculative_tokens values, comma-separated (0 first)")
    p.add_argument("--prompts-per-batch-size", type=int, default=32, help="prompts run at each batch size")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per (batch size, k); the best is kept")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadiest on a shared CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--disable-by-batch-size", type=int, default=None,
                   help="speculative_disable_by_batch_size for the k > 0 engines (default: the engine's)")
    return p.parse_args(argv)


def resolve_model(name: str | None) -> Path:
    if name:
        return Path(name)
    from engine.embedded_model import default_model_path

    return default_model_path()


def chat_prompts(model_dir: Path, count: int) -> list[list[int]]:
    """The first `count` held-out conversations, each up to the assistant turn the model is evaluated on."""
    from engine.embedded_model import EVAL_CONVERSATIONS
    from tokenizer.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_model_dir(model_dir)
    prompts = []
    with open(model_dir / EVAL_CONVERSATIONS, encoding="utf-8") as f:
        for line in f:
            if len(prompts) == count:
                break
            raw = json.loads(line)
            prompts.append(tokenizer.encode_chat(raw["messages"][: raw["target_index"]], raw["tools"] or None,
                                                 add_generation_prompt=True, enable_thinking=raw["enable_thinking"]))
    if len(prompts) < count:
        raise ValueError(f"--prompts-per-batch-size: {model_dir / EVAL_CONVERSATIONS} has only {len(prompts)}")
    return prompts


@dataclass
class Result:
    wall_seconds: float  # the sum over groups of each group's best wall time
    cpu_seconds: float  # the same in process CPU time (time spent waiting for a shared CPU left out)
    num_tokens: int  # output tokens of one pass over the prompts
    mean_acceptance_length: float
    acceptance_per_pos: list[float]


def make_llm(model_dir: Path, k: int, args: argparse.Namespace):
    from engine import LLM, SamplingParams

    kwargs = {} if args.disable_by_batch_size is None else {"speculative_disable_by_batch_size":
                                                            args.disable_by_batch_size}
    llm = LLM(model=model_dir, device=args.device, dtype=args.dtype, num_speculative_tokens=k,
              max_num_seqs=max(int(b) for b in args.batch_sizes.split(",")), **kwargs)
    llm.generate({"prompt_token_ids": [1, 2, 3, 4]}, SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
    return llm


def run_once(llm, prompts: list[list[int]], batch_size: int, max_tokens: int):
    """Prompts in groups of `batch_size`; returns (wall seconds, outputs, speculative stats of this run)."""
    from engine import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    stats = llm.engine.scheduler.spec_decode_stats
    before = stats.snapshot()
    outputs: list[list[int]] = []
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        group = [{"prompt_token_ids": p} for p in prompts[i : i + batch_size]]
        outputs += [o.outputs[0].token_ids for o in llm.generate(group, params, use_tqdm=False)]
    return time.perf_counter() - start, outputs, stats.since(before)


def bench_batch_size(llms: dict, prompts: list[list[int]], batch_size: int, args) -> dict[int, Result]:
    """Each group of `batch_size` prompts runs with every k back to back (so that load changes on a shared machine
    hit every k alike), `repeats` times; a group's best run per k counts. NOTE: after the first repeat the prompts
    are prefix-cache hits, so the best runs measure decoding."""
    groups = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    wall = {k: [float("inf")] * len(groups) for k in llms}
    cpu = {k: [float("inf")] * len(groups) for k in llms}
    first_pass: dict[int, tuple[int, object]] = {}  # k -> (output tokens, speculative stats) of the first repeat
    reference: list[list[list[int]] | None] = [None] * len(groups)
    for repeat in range(args.repeats):
        before = {k: llm.engine.scheduler.spec_decode_stats.snapshot() for k, llm in llms.items()}
        num_tokens = dict.fromkeys(llms, 0)
        for g, group in enumerate(groups):
            for k, llm in llms.items():
                cpu_start = time.process_time()
                seconds, outputs, _ = run_once(llm, group, batch_size, args.max_tokens)
                cpu[k][g] = min(cpu[k][g], time.process_time() - cpu_start)
                wall[k][g] = min(wall[k][g], seconds)
                num_tokens[k] += sum(map(len, outputs))
                if reference[g] is None:
                    reference[g] = outputs
                elif outputs != reference[g]:
                    raise AssertionError(f"k={k}, batch size {batch_size}: outputs differ from k=0 (not lossless)")
        if repeat == 0:
            first_pass = {k: (num_tokens[k], llm.engine.scheduler.spec_decode_stats.since(before[k]))
                          for k, llm in llms.items()}
    return {k: Result(sum(wall[k]), sum(cpu[k]), n, stats.mean_acceptance_length, stats.acceptance_rate_per_pos)
            for k, (n, stats) in first_pass.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    ks = [int(k) for k in args.ks.split(",")]
    if ks[0] != 0:
        raise ValueError("--ks must start with 0 (the baseline)")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    prompts = chat_prompts(model_dir, args.prompts_per_batch_size)
    llms = {k: make_llm(model_dir, k, args) for k in ks}
    print(f"model {model_dir}  threads={torch.get_num_threads()}  {len(prompts)} prompts "
          f"(mean {sum(map(len, prompts)) / len(prompts):.0f} tokens), greedy, max_tokens={args.max_tokens}, "
          f"best of {args.repeats}")
    print(f"{'batch':>5s} {'k':>2s} {'tok/s wall':>10s} {'vs k=0':>7s} {'tok/s cpu':>10s} {'vs k=0':>7s} "
          f"{'mean acc. len':>14s}  acceptance per position")
    for batch_size in batch_sizes:
        results = bench_batch_size(llms, prompts, batch_size, args)
        base_wall = results[0].num_tokens / results[0].wall_seconds
        base_cpu = results[0].num_tokens / results[0].cpu_seconds
        for k, r in results.items():
            wall, cpu = r.num_tokens / r.wall_seconds, r.num_tokens / r.cpu_seconds
            per_pos = " ".join(f"{a:.2f}" for a in r.acceptance_per_pos) if k else "-"
            print(f"{batch_size:5d} {k:2d} {wall:10.1f} {wall / base_wall:6.2f}x {cpu:10.1f} {cpu / base_cpu:6.2f}x "
                  f"{r.mean_acceptance_length:14.2f}  {per_pos}")


if __name__ == "__main__":
    main()
