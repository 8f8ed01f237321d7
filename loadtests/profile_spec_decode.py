"""Where the time of a decode step goes, with and without MTP speculation: wall time per phase of the engine step.

Wraps the engine's phases (scheduler, input preparation, attention planning, target forward, logits, sampling or
verification, MTP draft-extend and draft steps) with timers and decodes held-out chat prompts of the embedded model
one at a time (greedy), then prints milliseconds per engine step for each phase (nested phases are included in
their parents). With --modules, the model's building blocks (attention, MoE, experts, norms, RoPE) are timed too.
Times are process CPU time (one thread: on a shared machine this leaves out the time spent waiting for a core).

Not a test; run it by hand, e.g.
    OMP_NUM_THREADS=1 .venv/bin/python -m loadtests.profile_spec_decode --k 0
    OMP_NUM_THREADS=1 .venv/bin/python -m loadtests.profile_spec_decode --k 3 --modules
"""

from __future__ import annotations

import argparse
import collections
import functools
import time

import torch

from loadtests.bench_spec_decode import chat_prompts, make_llm, resolve_model, run_once
from loadtests.bench_spec_decode import parse_args as bench_args


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def wrap(self, owner: object, name: str, label: str | None = None) -> None:
        """Replace owner.name by a timed wrapper (instances and classes alike)."""
        inner, label = getattr(owner, name), label or name

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] += time.process_time() - start
                self.calls[label] += 1

        setattr(owner, name, timed)

    def report(self, num_steps: int) -> None:
        for label in sorted(self.seconds, key=lambda x: -self.seconds[x]):
            per_call = self.seconds[label] / self.calls[label] * 1e6
            print(f"  {label:22s} {self.seconds[label] * 1e3 / num_steps:8.3f} ms/step  "
                  f"({self.calls[label]} calls, {per_call:.0f} us/call)")


def instrument(llm, timer: PhaseTimer, modules: bool) -> None:
    core, runner = llm.engine, llm.engine.model_runner
    timer.wrap(core.scheduler, "schedule")
    timer.wrap(core.scheduler, "update_from_output")
    timer.wrap(runner, "prepare_inputs")
    timer.wrap(runner.attn, "plan")
    timer.wrap(runner.model, "forward", "target_forward")
    timer.wrap(runner.model, "compute_logits")
    timer.wrap(runner, "sampler")
    if runner.proposer is not None:
        timer.wrap(runner, "_verify_and_propose")
        timer.wrap(runner.proposer, "_draft_extend")
        timer.wrap(runner.proposer, "_draft_steps")
        timer.wrap(runner.model, "mtp_forward")
        timer.wrap(runner.model, "compute_mtp_logits")
    if modules:
        import engine.model as model_module
        import kernels.attention.torch_paged as torch_paged

        for cls in (model_module.RMSNorm, model_module.RotaryEmbedding, model_module.Attention, model_module.MoE,
                    model_module.Router, model_module.DecoderLayer):
            timer.wrap(cls, "forward", cls.__name__)
        timer.wrap(model_module, "fused_experts")
        timer.wrap(torch_paged.TorchPagedAttention, "forward", "paged_attention")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory with an MTP layer (default: the embedded model)")
    p.add_argument("--k", type=int, default=0, help="num_speculative_tokens")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--modules", action="store_true", help="also time the model's building blocks")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model_dir = resolve_model(args.model)
    prompts = chat_prompts(model_dir, args.prompts)
    llm = make_llm(model_dir, args.k, bench_args(["--batch-sizes", "1"]))
    run_once(llm, prompts, 1, args.max_tokens)  # warm-up, and fills the prefix cache: the timed run is decode
    timer = PhaseTimer()
    instrument(llm, timer, args.modules)
    cpu_start = time.process_time()
    _, outputs, stats = run_once(llm, prompts, 1, args.max_tokens)
    seconds = time.process_time() - cpu_start
    num_tokens, num_steps = sum(map(len, outputs)), timer.calls["schedule"]
    print(f"k={args.k}: {num_tokens} tokens in {seconds:.2f} CPU s = {num_tokens / seconds:.1f} tok/s, {num_steps} steps "
          f"({seconds / num_steps * 1e3:.2f} ms/step), mean accepted length {stats.mean_acceptance_length:.2f}")
    timer.report(num_steps)


if __name__ == "__main__":
    main()
