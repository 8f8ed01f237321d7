"""A serving sweep against a `glm-serve` this script starts: throughput and p99 latency against concurrency.

Starts `glm-serve` (default: the embedded model; torch threads --threads) and runs `bench_serve
--sweep-concurrency` on bench_serve's `random` dataset through /v1/chat/completions, streaming, greedy, EOS
ignored; writes the sweep JSON and its PNG plots (latency CDFs, throughput and p99 vs concurrency) to --result-dir.

    python -m loadtests.bench_serve_sweep --sweep-concurrency 1,4,16,32 --result-dir results/sweep
"""

from __future__ import annotations

import argparse

from loadtests.server_process import glm_serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory (default: the embedded glm-4.5-tiny)")
    p.add_argument("--sweep-concurrency", default="1,4,16,32")
    p.add_argument("--num-prompts", type=int, default=64, help="requests per concurrency")
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads (OMP_NUM_THREADS)")
    p.add_argument("--result-dir", default="results/sweep")
    p.add_argument("--label", default="glm-serve")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from engine.llm import default_model_path
    from loadtests import bench_serve

    model = args.model or str(default_model_path())
    env = {"OMP_NUM_THREADS": str(args.threads)}
    with glm_serve(["--model", model, "--log-level", "warning"], env=env) as server:
        return bench_serve.main([
            "--backend", "openai-chat", "--base-url", server.url, "--tokenizer", model, "--dataset-name", "random",
            "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len), "--ignore-eos",
            "--num-prompts", str(args.num_prompts), "--num-warmups", "2", "--sweep-concurrency",
            args.sweep_concurrency, "--seed", "0", "--disable-tqdm", "--save-result", "--result-dir",
            args.result_dir, "--label", args.label, "--metadata", f"server_threads={args.threads}",
        ])


if __name__ == "__main__":
    main()
