"""Server overhead: glm-serve over HTTP at --max-concurrency vs the offline engine, same workload, one script.

1. The offline engine (`engine.LLM.generate`) runs the workload with max_num_seqs = --max-concurrency (the same
   batch occupancy a client holding that many requests in flight gives the server).
2. `glm-serve` starts as a subprocess with the same model, dtype and torch threads, and `bench_serve` sends the
   same prompts (`/v1/completions`, raw text, streaming) at --max-concurrency, greedy, EOS ignored.
The two run --repeats times, interleaved (offline, serving, offline, ...), and the best of each is kept, so that
load from other processes on a shared machine hurts both alike. Printed: both output tokens/s and their ratio
(the target is >= 0.85). The workload is bench_serve's `random`
dataset: its prompt texts are tokenized here with the model's tokenizer (exactly what the server's completions
route prefills; the script checks the server's usage agrees) and every request gets --output-len tokens.

    python -m loadtests.bench_server_overhead --num-prompts 128 --max-concurrency 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from loadtests.dataset_config import DatasetConfig
from loadtests.datasets import get_samples
from loadtests.machine_info import machine_summary
from loadtests.proc_cpu import main_and_other_cpu_seconds
from loadtests.token_counter import TokenCounter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory (default: the embedded glm-4.5-tiny)")
    p.add_argument("--num-prompts", type=int, default=128)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--max-concurrency", type=int, default=32)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the engine, offline and in the server")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; the best is kept")
    p.add_argument("--result-dir", default=None, help="write the JSON results (offline + serving) here")
    p.add_argument("--server-arg", action="append", default=[], help="extra glm-serve flag (repeatable)")
    return p.parse_args(argv)


def model_dir(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    from engine.llm import default_model_path

    return default_model_path()


def make_llm(path: Path, prompts: list[list[int]], args):
    from engine import LLM, SamplingParams

    # NOTE: no prefix caching on either side: every repeat sends the same prompts, and must compute them again.
    llm = LLM(model=path, dtype=args.dtype, max_num_seqs=args.max_concurrency, seed=args.seed,
              enable_prefix_caching=False)
    warmup = [{"prompt_token_ids": p} for p in prompts[:2]]
    llm.generate(warmup, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True), use_tqdm=False)
    return llm


def run_offline(llm, prompts: list[list[int]], output_lens: list[int]) -> float:
    """Seconds `LLM.generate` takes for the whole workload."""
    from engine import SamplingParams

    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in output_lens]
    start = time.perf_counter()
    outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    seconds = time.perf_counter() - start
    if [len(o.outputs[0].token_ids) for o in outputs] != output_lens:
        raise RuntimeError("offline: output lengths differ from the requested ones")
    return seconds


def bench_args(url: str, path: Path, args: argparse.Namespace) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--tokenizer", str(path), "--dataset-name", "random",
            "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
            "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.max_concurrency),
            "--ignore-eos", "--num-warmups", "2", "--seed", str(args.seed), "--disable-tqdm"]


def run_both(path: Path, prompts: list[list[int]], output_lens: list[int], args):
    """(best offline seconds, best serving result, least CPU seconds per 1k output tokens by part, per-repeat
    serving/offline ratios) over --repeats
    interleaved runs. CPU parts: offline process; server event loop (main thread), server engine and workers
    (other threads: the engine thread, tokenization in asyncio.to_thread), benchmark client (this process)."""
    from loadtests import bench_serve
    from loadtests.server_process import glm_serve

    llm = make_llm(path, prompts, args)
    server_args = ["--model", str(path), "--dtype", args.dtype, "--seed", str(args.seed), "--log-level", "warning",
                   "--no-enable-prefix-caching", *args.server_arg]
    best_offline, best_serving, cpu, ratios = float("inf"), None, {}, []
    per_k = 1000.0 / sum(output_lens)
    with glm_serve(server_args, env={"OMP_NUM_THREADS": str(args.threads)}) as server:
        for i in range(args.repeats):
            cpu0 = time.process_time()
            offline_s = run_offline(llm, prompts, output_lens)
            cpu1, before = time.process_time(), main_and_other_cpu_seconds(server.pid)
            serving = bench_serve.main(bench_args(server.url, path, args))
            cpu2, after = time.process_time(), main_and_other_cpu_seconds(server.pid)
            parts = {"offline": cpu1 - cpu0, "client": cpu2 - cpu1}
            if before and after:
                parts.update(server_loop=after[0] - before[0], server_engine_workers=after[1] - before[1])
            cpu = {name: min(cpu.get(name, float("inf")), seconds * per_k) for name, seconds in parts.items()}
            print(f"repeat {i}: offline {sum(output_lens) / offline_s:.1f} tok/s, serving "
                  f"{serving['output_throughput']:.1f} tok/s; CPU s per 1k tokens: "
                  + ", ".join(f"{name} {seconds * per_k:.2f}" for name, seconds in parts.items()))
            ratios.append(serving["output_throughput"] * offline_s / sum(output_lens))
            best_offline = min(best_offline, offline_s)
            if best_serving is None or serving["output_throughput"] > best_serving["output_throughput"]:
                best_serving = serving
    return best_offline, best_serving, cpu, ratios


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = model_dir(args)
    counter = TokenCounter.from_path(path)
    dataset = DatasetConfig(dataset_name="random", num_prompts=args.num_prompts, seed=args.seed,
                            random_input_len=args.input_len, random_output_len=args.output_len)
    samples = get_samples(dataset, counter)
    prompts = [counter.encode(s.prompt).ids for s in samples]
    output_lens = [s.expected_output_len for s in samples]
    machine = machine_summary()
    print(f"machine: {machine}\nworkload: {len(prompts)} prompts, {sum(map(len, prompts))} prompt tokens, "
          f"{sum(output_lens)} output tokens, concurrency {args.max_concurrency}")
    out_dir = Path(args.result_dir) if args.result_dir else None
    offline_s, serving, cpu, ratios = run_both(path, prompts, output_lens, args)
    offline_tps = sum(output_lens) / offline_s
    print(f"offline LLM.generate (best of {args.repeats}): {offline_s:.2f} s, {offline_tps:.1f} output tok/s")
    if serving["failed"] or serving["total_input_tokens"] != sum(map(len, prompts)):
        raise RuntimeError(f"serving run differs from the offline workload: {serving['failed']} failed, "
                           f"{serving['total_input_tokens']} prompt tokens")
    ratio = serving["output_throughput"] / offline_tps
    print(f"server at concurrency {args.max_concurrency} (best of {args.repeats}): "
          f"{serving['output_throughput']:.1f} output tok/s "
          f"= {ratio:.3f} of offline (target >= 0.85)")
    print("serving / offline per repeat: " + ", ".join(f"{r:.3f}" for r in ratios))
    print("least CPU seconds per 1k output tokens: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine, "model": str(path),
              "num_prompts": len(prompts), "input_len": args.input_len, "output_len": args.output_len,
              "max_concurrency": args.max_concurrency, "threads": args.threads, "repeats": args.repeats,
              "offline_seconds": offline_s, "cpu_seconds_per_1k_output_tokens": cpu,
              "ratio_per_repeat": ratios,
              "offline_output_throughput": offline_tps, "serving_duration": serving["duration"],
              "serving_output_throughput": serving["output_throughput"], "ratio": ratio}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "server_overhead.json").write_text(json.dumps(result, indent=2))
        (out_dir / "server_overhead_serving.json").write_text(json.dumps(serving, indent=2))  # the best run
    return result


if __name__ == "__main__":
    main()
