"""Where one decode step's time goes, on this machine: exclusive wall time per part of the engine step.

Wraps (per instance, no engine change) the scheduler, input preparation, each layer's attention (projections,
QK-norm, RoPE), the attention backend (KV-cache write and gather, SDPA/bmm), MoE layers (router, routed and shared
experts), dense MLPs, the LM head and the sampler, each timed exclusive of the parts nested in it; "other" is the
rest of the step (embedding, norms, residuals, the runner's and the core's Python). B requests decode together
after their prefill; --steps decode steps are timed.

    python -m loadtests.profile_step --batch-sizes 1,32            # embedded glm-4.5-tiny
    python -m loadtests.profile_step --random-model                # the tiny random model of bench_offline
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch


class ExclusiveTimer:
    """Wall time per label, exclusive of labelled calls nested inside (a stack of open calls)."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self._stack: list[list] = []  # [label, start, time spent in nested labelled calls]

    def wrap(self, obj, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            self._stack.append([label, time.perf_counter(), 0.0])
            try:
                return inner(*args, **kwargs)
            finally:
                _, start, nested = self._stack.pop()
                spent = time.perf_counter() - start
                self.totals[label] += spent - nested
                if self._stack:
                    self._stack[-1][2] += spent

        setattr(obj, name, timed)


def instrument(llm, timer: ExclusiveTimer) -> None:
    from engine.model import MLP, Attention, MoE

    core, runner = llm.engine, llm.engine.model_runner
    timer.wrap(core.scheduler, "schedule", "scheduler")
    timer.wrap(core.scheduler, "update_from_output", "scheduler")
    timer.wrap(runner, "prepare_inputs", "input preparation")
    timer.wrap(runner.attn, "plan", "input preparation")
    timer.wrap(runner.attn, "forward", "attention core (KV write/gather, SDPA)")
    timer.wrap(runner.model, "compute_logits", "LM head (logits)")
    timer.wrap(runner, "sampler", "sampling")  # NOTE: the instance attribute: a call goes through type.__call__
    for layer in runner.model.model.layers:
        for module in layer.modules():
            if isinstance(module, Attention):
                timer.wrap(module, "forward", "attention projections, QK-norm, RoPE")
            elif isinstance(module, MoE):
                timer.wrap(module, "forward", "MoE (router, routed + shared experts)")
        if isinstance(layer.mlp, MLP):
            timer.wrap(layer.mlp, "forward", "dense MLP")


def profile(model_dir: Path | None, batch_size: int, steps: int, prompt_len: int) -> tuple[float, Counter[str]]:
    """(mean seconds per decode step, seconds per step by part); model_dir None: the embedded model."""
    from engine import LLM, SamplingParams

    llm = LLM(model=model_dir, device="cpu", max_num_seqs=batch_size, async_scheduling=False,
              enable_prefix_caching=False)
    vocab = llm.config.model_config.vocab_size
    params = SamplingParams(temperature=0, max_tokens=steps + 8, ignore_eos=True)
    for i in range(batch_size):
        prompt = [(7 * i + 13 * j) % (vocab - 10) + 5 for j in range(prompt_len)]
        llm.engine.add_request(f"r{i}", prompt, params)
    while not all(r.num_output_tokens for r in llm.engine.scheduler.running) or llm.engine.scheduler.waiting:
        llm.engine.step()  # prefill (and the first decode steps of early requests)
    for _ in range(3):
        llm.engine.step()  # warm-up decode steps
    timer = ExclusiveTimer()
    instrument(llm, timer)
    start = time.perf_counter()
    for _ in range(steps):
        llm.engine.step()
    total = (time.perf_counter() - start) / steps
    parts = Counter({label: seconds / steps for label, seconds in timer.totals.items()})
    parts["other (embedding, norms, residuals, runner and core Python)"] = total - sum(parts.values())
    return total, parts


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory (default: the embedded glm-4.5-tiny)")
    p.add_argument("--random-model", action="store_true", help="bench_offline's tiny random model instead")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from loadtests.machine_info import machine_summary

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model_dir(args, Path(tmp))
        print(f"machine: {machine_summary()}\nmodel: {model_dir.name}, prompt {args.prompt_len} tokens, "
              f"{args.steps} decode steps timed")
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            total, parts = profile(model_dir, batch_size, args.steps, args.prompt_len)
            results[batch_size] = {"ms_per_step": total * 1e3, "parts_ms": {k: v * 1e3 for k, v in parts.items()}}
            print(f"\nbatch {batch_size}: {total * 1e3:.2f} ms per decode step ({batch_size / total:.0f} tok/s)")
            for label, seconds in parts.most_common():
                print(f"  {label:62s} {seconds * 1e3:7.2f} ms {seconds / total:6.1%}")
    return results


def _model_dir(args: argparse.Namespace, tmp: Path) -> Path:
    if args.random_model:
        from loadtests.bench_offline import build_tiny_model
        from loadtests.bench_offline import parse_args as offline_args

        return build_tiny_model(tmp / "tiny-random", offline_args([]))
    if args.model:
        return Path(args.model)
    from engine.llm import default_model_path

    return default_model_path()


if __name__ == "__main__":
    main()
