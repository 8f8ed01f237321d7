"""TP=1 vs TP=N greedy comparison on the GPUs of one node (run by scripts/gpu_check.sh when it sees several).

Generates greedily for a batch of mixed prompts with the single-GPU engine, then with `tensor_parallel_size=N`
(NCCL), with and without `enable_expert_parallel` and MTP speculation, and reports how many completions are
token-for-token identical. float32 by default: all-reduces change the summation order, which bf16 turns into
occasional greedy flips on near-ties; `--dtype bfloat16` shows that rate. Exit 1 when a float32 run differs.

    python scripts/tp_check.py                      # the embedded model, N = the largest power of 2 that fits
    python scripts/tp_check.py --model /models/GLM-4.5-Air --tp 2 --dtype bfloat16 --max-model-len 4096
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch


def mixed_batch(vocab_size: int, num: int, seed: int = 0):
    from engine import SamplingParams

    rng = random.Random(seed)
    lengths = [1, 2, 15, 16, 17, 300] + [rng.randint(1, 200) for _ in range(num - 6)]
    prompts = [{"prompt_token_ids": [rng.randrange(10, vocab_size - 10) for _ in range(n)]} for n in lengths]
    params = [SamplingParams(temperature=0, max_tokens=rng.randint(8, 48), ignore_eos=True) for _ in prompts]
    return prompts, params


def run(args, prompts, params, **kwargs) -> tuple[list[list[int]], float]:
    from engine import LLM

    llm = LLM(args.model, dtype=args.dtype, max_model_len=args.max_model_len, **kwargs)
    try:
        start = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs], time.perf_counter() - start
    finally:
        llm.shutdown()


def main() -> int:
    from engine.config import ModelConfig
    from engine.llm import default_model_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--tp", type=int, default=None, help="default: the largest power of 2 <= GPUs that fits heads")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument("--num-prompts", type=int, default=24)
    args = p.parse_args()
    args.model = args.model or str(default_model_path())
    config = ModelConfig.from_pretrained(args.model)
    tp = args.tp or 1
    while args.tp is None and tp * 2 <= torch.cuda.device_count() and config.num_attention_heads % (tp * 2) == 0:
        tp *= 2
    if tp < 2:
        print("tp_check: needs at least 2 GPUs")
        return 2
    prompts, params = mixed_batch(config.vocab_size, args.num_prompts)
    print(f"| run | identical completions | generate s |\n|---|---|---|")
    reference, seconds = run(args, prompts, params)
    print(f"| TP=1 | reference | {seconds:.2f} |")
    failed = False
    for ep in (False, True):
        for k in ((0, 2) if config.has_mtp else (0,)):
            tokens, seconds = run(args, prompts, params, tensor_parallel_size=tp, enable_expert_parallel=ep,
                                  num_speculative_tokens=k)
            same = sum(a == b for a, b in zip(tokens, reference))
            failed |= same != len(reference) and args.dtype == "float32"
            print(f"| TP={tp}{' +EP' if ep else ''}{f' +MTP k={k}' if k else ''} | {same}/{len(reference)} | "
                  f"{seconds:.2f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
