"""Weight bytes a decode step reads, with and without MTP speculation, and the speed-up they allow.

When decoding is bound by reading weights (memory bandwidth, or a cache that the weights do not fit), a step costs
in proportion to the weight bytes it reads, and speculation can gain at most
    (bytes per output token with k = 0) / (bytes per output token with k),
however good its drafts. This script counts those bytes on the real engine, decoding held-out chat prompts of the
embedded model one at a time (greedy, batch 1), and prints that ceiling beside the measured speed-up (process CPU
time, the same engine and prompts, interleaved runs, best of `--repeats`).

Counted per call: every parameter of the module that owns it (attention and MLP projections, norms, router, MTP
eh_proj), the whole LM head (target and MTP logits), the embedding rows looked up, and for the routed experts only the
experts that received a token (w13 and w2 of each distinct expert id). Activations and the KV cache are left out
(small next to the weights at these context lengths).

Not a test; run it by hand, e.g.
    OMP_NUM_THREADS=1 .venv/bin/python -m loadtests.spec_decode_traffic --ks 0,1,2,3
"""

from __future__ import annotations

import argparse
import time

import torch

from loadtests.bench_spec_decode import chat_prompts, make_llm, resolve_model, run_once
from loadtests.bench_spec_decode import parse_args as bench_args


class WeightTraffic:
    """`with WeightTraffic(model) as traffic:` counts in `traffic.bytes` the weight bytes the model reads inside the
    block, in `traffic.mtp_bytes` the share read by MTP passes and MTP logits, and in `traffic.steps` the target
    forwards (one per engine step) (forward hooks, and wrappers around fused_experts and the model's MTP entry
    points); all are removed on exit."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.bytes = 0
        self.mtp_bytes = 0
        self.steps = 0
        self._in_mtp = False
        self._handles: list = []
        self._fused_experts = None

    def __enter__(self) -> WeightTraffic:
        import engine.model as model_module
        from engine.parallel.vocab import VocabParallelEmbedding

        self._handles.append(self.model.register_forward_hook(self._count_step))
        for module in self.model.modules():
            if isinstance(module, model_module.MoE):  # router tensors; w13/w2 are counted per expert below
                num_bytes = module.gate.weight.nbytes + module.gate.e_score_correction_bias.nbytes
            elif isinstance(module, VocabParallelEmbedding):
                self._handles.append(module.register_forward_hook(self._count_rows))
                continue
            elif isinstance(module, model_module.Router):
                continue
            else:
                num_bytes = sum(p.nbytes for p in module.parameters(recurse=False))
            if num_bytes:
                self._handles.append(module.register_forward_hook(lambda *_, n=num_bytes: self._add(n)))
        self._fused_experts = inner = model_module.fused_experts

        def counted_experts(x, w13, w2, topk_ids, topk_weights, *args, **kwargs):
            num_experts = int((torch.unique(topk_ids) < w13.shape[0]).sum())
            self._add(num_experts * (w13[0].nbytes + w2[0].nbytes))
            return inner(x, w13, w2, topk_ids, topk_weights, *args, **kwargs)

        model_module.fused_experts = counted_experts  # NOTE: MoE.forward looks the name up in engine.model
        if getattr(self.model, "has_mtp", False):
            for name in ("mtp_forward", "compute_mtp_logits"):
                setattr(self.model, name, self._flag_mtp(getattr(self.model, name)))
        return self

    def _flag_mtp(self, inner):
        def flagged(*args, **kwargs):
            self._in_mtp = True
            try:
                return inner(*args, **kwargs)
            finally:
                self._in_mtp = False

        return flagged

    def __exit__(self, *exc) -> None:
        import engine.model as model_module

        model_module.fused_experts = self._fused_experts
        for name in ("mtp_forward", "compute_mtp_logits"):
            self.model.__dict__.pop(name, None)  # the instance wrappers; the class methods show through again
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _add(self, num_bytes: int) -> None:
        self.bytes += num_bytes
        if self._in_mtp:
            self.mtp_bytes += num_bytes

    def _count_step(self, *_) -> None:
        self.steps += 1

    def _count_rows(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._add(inputs[0].numel() * module.weight[0].nbytes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory with an MTP layer (default: the embedded model)")
    p.add_argument("--ks", default="0,1,2,3", help="num_speculative_tokens values, comma-separated (0 first)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per k, interleaved; the best counts")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    if ks[0] != 0:
        raise ValueError("--ks must start with 0 (the baseline)")
    torch.set_num_threads(1)
    model_dir = resolve_model(args.model)
    prompts = chat_prompts(model_dir, args.prompts)
    llms = {k: make_llm(model_dir, k, bench_args(["--batch-sizes", "1"])) for k in ks}
    traffic, mtp_traffic, steps, tokens = {}, {}, {}, {}
    for k, llm in llms.items():
        run_once(llm, prompts, 1, args.max_tokens)  # warm-up; fills the prefix cache, so the counted run is decode
        with WeightTraffic(llm.engine.model_runner.model) as counter:
            _, outputs, _ = run_once(llm, prompts, 1, args.max_tokens)
        traffic[k], mtp_traffic[k] = counter.bytes, counter.mtp_bytes
        steps[k], tokens[k] = counter.steps, sum(map(len, outputs))
    best = dict.fromkeys(ks, float("inf"))
    for _ in range(args.repeats):
        for k, llm in llms.items():
            start = time.process_time()
            run_once(llm, prompts, 1, args.max_tokens)
            best[k] = min(best[k], time.process_time() - start)
    print(f"model {model_dir}, {len(prompts)} prompts, batch 1, greedy, max_tokens={args.max_tokens}")
    print(f"{'k':>2s} {'tokens/step':>11s} {'MB/step':>8s} {'of it MTP':>9s} {'MB/token':>9s} {'bound':>7s} "
          f"{'measured':>9s}")
    base = traffic[0] / tokens[0]
    for k in ks:
        per_token = traffic[k] / tokens[k]
        measured = (tokens[k] / best[k]) / (tokens[0] / best[0])
        print(f"{k:2d} {tokens[k] / steps[k]:11.2f} {traffic[k] / steps[k] / 1e6:8.2f} "
              f"{mtp_traffic[k] / steps[k] / 1e6:9.2f} {per_token / 1e6:9.2f} "
              f"{base / per_token:6.2f}x {measured:8.2f}x")


if __name__ == "__main__":
    main()
