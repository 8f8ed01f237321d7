"""What a transformers user runs instead of glm-serve: `generate` with static batches, and continuous batching.

Both take prompts as token ids and one output length per prompt, decode greedily with EOS disabled (as
ignore_eos does) and return (seconds, generated token ids per prompt, in prompt order). Warm-up is excluded.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def load_model(model_dir: Path, dtype: str, device: str | None):
    from transformers import Glm4MoeForCausalLM

    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = Glm4MoeForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(target).eval()
    model.generation_config.eos_token_id = None  # decode every requested token, as ignore_eos does
    return model


def run_static_batches(model, prompts: list[list[int]], output_lens: list[int],
                       batch_size: int) -> tuple[float, list[list[int]]]:
    """`generate` on left-padded batches in arrival order; each batch decodes until its longest output is done."""
    pad = model.config.pad_token_id or 0

    def one_batch(batch: list[list[int]], max_new: int) -> list[list[int]]:
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=model.device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=pad)
        return out[:, width:].tolist()

    one_batch([prompts[0][:32]], 4)  # warm-up
    start = time.perf_counter()
    results: list[list[int]] = []
    for i in range(0, len(prompts), batch_size):
        batch, lens = prompts[i : i + batch_size], output_lens[i : i + batch_size]
        for tokens, n in zip(one_batch(batch, max(lens)), lens):
            results.append(tokens[:n])
    return time.perf_counter() - start, results


def run_continuous_batching(model, prompts: list[list[int]], output_lens: list[int], max_batch_tokens: int,
                            max_cache_tokens: int = 65536) -> tuple[float, list[list[int]]]:
    """transformers' continuous batching (the manager behind `generate_batch`), one request per prompt.

    NOTE: `generate_batch` takes one max_new_tokens for all prompts; its manager's `add_request` takes one per
    request, so this drives the manager directly (as `generate_batch` does) to give each prompt its own length.
    NOTE: the KV cache is sized to hold every request at once (num_blocks), up to `max_cache_tokens`: left to
    size itself on a CPU, it takes a fraction of the machine's memory, and its attention masks grow with it (40 s
    to build on 2 cores). Its dense masks cost max_batch_tokens x cache tokens x 4 bytes, so a cache for 256
    prompts of up to 1,280 tokens (8 GB of masks) is refused by transformers' own memory check; past the cap,
    requests wait for blocks, as in any paged engine.
    """
    from transformers import ContinuousBatchingConfig, GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    config = GenerationConfig(do_sample=False, max_new_tokens=max(output_lens), eos_token_id=-1)
    page = ContinuousBatchingConfig().page_size
    num_blocks = sum(-(-(len(p) + n) // page) for p, n in zip(prompts, output_lens)) + 1  # + 1: the warm-up
    num_blocks = min(num_blocks, max_cache_tokens // page)
    cb_config = ContinuousBatchingConfig(max_batch_tokens=max_batch_tokens, num_blocks=num_blocks)
    hints = WorkloadHints(max_prompt_length=max(map(len, prompts)), max_generated_length=max(output_lens),
                          num_requests=len(prompts))
    with model.continuous_batching_context_manager(generation_config=config, continuous_batching_config=cb_config,
                                                   workload_hints=hints) as manager:
        _collect(manager, [manager.add_request(prompts[0][:32], max_new_tokens=4, eos_token_id=-1)])  # warm-up
        start = time.perf_counter()
        ids = [manager.add_request(p, request_id=f"bench-{i}", max_new_tokens=n, eos_token_id=-1)
               for i, (p, n) in enumerate(zip(prompts, output_lens))]
        done = _collect(manager, ids)
        elapsed = time.perf_counter() - start
    return elapsed, [done[i].generated_tokens for i in ids]


def _collect(manager, request_ids: list[str]) -> dict:
    pending, done = set(request_ids), {}
    while pending:
        result = manager.get_result(timeout=1)
        if result is None:
            if not manager.is_running():
                raise RuntimeError(f"transformers' continuous batching stopped with {len(pending)} requests left")
            continue
        if result.is_finished():
            if result.error is not None:
                raise RuntimeError(f"transformers' continuous batching: {result.request_id}: {result.error}")
            done[result.request_id] = result
            pending.discard(result.request_id)
    return done
