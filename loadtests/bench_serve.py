"""Serving benchmark for OpenAI-compatible servers, with the flags of `vllm bench serve`.

    python -m loadtests.bench_serve --backend openai-chat --base-url http://127.0.0.1:8000 \
        --dataset-name random --random-input-len 512 --random-output-len 128 --num-prompts 200 \
        --request-rate 8 --max-concurrency 32 --save-result --result-dir results/

Streaming always; output tokens come from the server's usage chunk (stream_options.include_usage). A
`--sweep-concurrency 1,2,4,8` run repeats the benchmark once per cap and plots throughput and p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.dataset_config import DATASET_NAMES, DatasetConfig
from loadtests.datasets import get_samples
from loadtests.metrics import LATENCY_METRICS, calculate_metrics, parse_goodput
from loadtests.report import build_result, default_result_name, format_report, save_json
from loadtests.request_func import BACKENDS, DEFAULT_ENDPOINTS
from loadtests.runner import BenchmarkRun, discover_model, run_benchmark
from loadtests.sample_request import SampleRequest
from loadtests.serve_config import ServeBenchConfig
from loadtests.token_counter import TokenCounter

SWEEP_PERCENTILES = (50.0, 90.0, 99.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS, default="openai",
                   help="openai: /v1/completions bodies (vLLM's default); openai-chat: chat bodies")
    p.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000 (overrides --host/--port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--endpoint", default=None, help="default: /v1/completions or /v1/chat/completions by backend")
    p.add_argument("--model", default=None, help="served model name (default: first id of /v1/models)")
    p.add_argument("--tokenizer", default=None, help="model dir or tokenizer.json for client-side token counts")
    p.add_argument("--dataset-name", choices=DATASET_NAMES, default="random")
    p.add_argument("--dataset-path", default=None)
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--random-input-len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=128)
    p.add_argument("--random-range-ratio", type=float, default=0.0)
    p.add_argument("--random-prefix-len", type=int, default=0)
    p.add_argument("--sharegpt-output-len", type=int, default=None)
    p.add_argument("--chat-output-len", type=int, default=None)
    p.add_argument("--request-rate", type=float, default=math.inf, help="requests/s; inf = all at once")
    p.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of arrival gaps; 1 = Poisson")
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--sweep-concurrency", default=None, help="comma-separated caps, e.g. 1,2,4,8,16")
    p.add_argument("--num-warmups", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--extra-body", default=None, help="JSON object merged into every request body")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    p.add_argument("--percentile-metrics", default="ttft,tpot,itl,e2el")
    p.add_argument("--metric-percentiles", default="50,90,99")
    p.add_argument("--goodput", nargs="+", default=None, help="SLOs as NAME:MS, NAME in ttft, tpot, e2el")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request, connect to [DONE]")
    p.add_argument("--ready-check-timeout-sec", type=float, default=600.0)
    p.add_argument("--disable-tqdm", action="store_true")
    p.add_argument("--label", default=None, help="result label (default: the backend)")
    p.add_argument("--save-result", action="store_true")
    p.add_argument("--save-detailed", action="store_true", help="keep per-request arrays in the result file")
    p.add_argument("--result-dir", default=None)
    p.add_argument("--result-file", default=None)
    p.add_argument("--metadata", nargs="*", default=None, help="KEY=VALUE pairs added to the result file")
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots next to the result file")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[ServeBenchConfig, DatasetConfig]:
    sweep = tuple(int(v) for v in args.sweep_concurrency.split(",")) if args.sweep_concurrency else None
    extra_body = json.loads(args.extra_body) if args.extra_body else {}
    if not isinstance(extra_body, dict):
        raise ValueError("extra_body must be a JSON object")
    serve = ServeBenchConfig(
        backend=args.backend,
        base_url=args.base_url or f"http://{args.host}:{args.port}",
        endpoint=args.endpoint or DEFAULT_ENDPOINTS[args.backend],
        model=args.model,
        request_rate=args.request_rate,
        burstiness=args.burstiness,
        max_concurrency=args.max_concurrency,
        sweep_concurrency=sweep,
        num_warmups=args.num_warmups,
        seed=args.seed,
        ignore_eos=args.ignore_eos,
        temperature=args.temperature,
        api_key=args.api_key,
        extra_body=extra_body,
        percentile_metrics=tuple(m.strip() for m in args.percentile_metrics.split(",") if m.strip()),
        metric_percentiles=tuple(float(p) for p in args.metric_percentiles.split(",")),
        goodput_slos_ms=parse_goodput(args.goodput),
        request_timeout_s=args.request_timeout,
        ready_check_timeout_s=args.ready_check_timeout_sec,
        disable_tqdm=args.disable_tqdm,
    )
    dataset = DatasetConfig(
        dataset_name=args.dataset_name,
        dataset_path=Path(args.dataset_path) if args.dataset_path else None,
        num_prompts=args.num_prompts,
        seed=args.seed,
        random_input_len=args.random_input_len,
        random_output_len=args.random_output_len,
        random_range_ratio=args.random_range_ratio,
        random_prefix_len=args.random_prefix_len,
        sharegpt_output_len=args.sharegpt_output_len,
        chat_output_len=args.chat_output_len,
    )
    return serve, dataset


def _header(args: argparse.Namespace, serve: ServeBenchConfig, model: str) -> dict[str, Any]:
    header = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "label": args.label or serve.backend,
        "backend": serve.backend,
        "endpoint": serve.endpoint,
        "model_id": model,
        "tokenizer_id": args.tokenizer,
        "dataset_name": args.dataset_name,
        "num_prompts": args.num_prompts,
        "request_rate": serve.request_rate if math.isfinite(serve.request_rate) else "inf",
        "burstiness": serve.burstiness,
        "ignore_eos": serve.ignore_eos,
        "goodput_slos_ms": serve.goodput_slos_ms or None,
        "client_machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
    }
    for item in args.metadata or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"metadata: {item!r} must be KEY=VALUE")
        header[key] = value
    return header


def _result_path(args: argparse.Namespace, serve: ServeBenchConfig, model: str, cap: int | None) -> Path:
    name = args.result_file or default_result_name(args.label or serve.backend, serve.request_rate, cap, model)
    return Path(args.result_dir or ".") / name


async def _run_one(args, serve: ServeBenchConfig, model: str, samples: list[SampleRequest]) -> dict[str, Any]:
    run = await run_benchmark(serve, model, samples, serve.max_concurrency)
    metrics = calculate_metrics(run.outputs, run.duration_s, serve.metric_percentiles, serve.goodput_slos_ms)
    print(format_report(run, metrics, serve.request_rate, serve.percentile_metrics))
    _print_errors(run)
    result = build_result(run, metrics, serve.percentile_metrics, _header(args, serve, model), args.save_detailed)
    if args.save_result or args.result_file:
        path = _result_path(args, serve, model, serve.max_concurrency)
        save_json(result, path)
        print(f"result written to {path}")
        if not args.no_plots:
            from loadtests.plots import plot_latency_cdfs

            label = f"concurrency {serve.max_concurrency}" if serve.max_concurrency else "unbounded"
            png = plot_latency_cdfs({label: run.outputs}, path.with_name(path.stem + "_cdf.png"), path.stem)
            print(f"latency CDFs plotted to {png}")
    return result


async def _run_sweep(args, serve: ServeBenchConfig, model: str, samples: list[SampleRequest]) -> dict[str, Any]:
    assert serve.sweep_concurrency is not None
    percentiles = tuple(sorted(set(serve.metric_percentiles) | set(SWEEP_PERCENTILES)))
    points, runs = [], {}
    for cap in serve.sweep_concurrency:
        print(f"--- sweep: max concurrency {cap} ---")
        run = await run_benchmark(serve, model, samples, cap)
        metrics = calculate_metrics(run.outputs, run.duration_s, percentiles, serve.goodput_slos_ms)
        print(format_report(run, metrics, serve.request_rate, serve.percentile_metrics))
        _print_errors(run)
        points.append(build_result(run, metrics, LATENCY_METRICS, {}, args.save_detailed))
        runs[f"concurrency {cap}"] = run.outputs
    result = {**_header(args, serve, model), "sweep_concurrency": list(serve.sweep_concurrency), "points": points}
    if args.save_result or args.result_file:
        path = _result_path(args, serve, model, None)
        path = path.with_name(path.stem.replace("qps", "qps-sweep", 1) + path.suffix) if not args.result_file else path
        save_json(result, path)
        print(f"sweep result written to {path}")
        if not args.no_plots:
            from loadtests.plots import plot_latency_cdfs, plot_sweep

            print(f"plots: {plot_sweep(points, path.with_name(path.stem + '_sweep.png'), path.stem)}, "
                  f"{plot_latency_cdfs(runs, path.with_name(path.stem + '_cdf.png'), path.stem)}")
    return result


def _print_errors(run: BenchmarkRun, limit: int = 10) -> None:
    failed = [o for o in run.outputs if not o.success]
    for i, output in enumerate(failed[:limit]):
        print(f"error {i} ({output.error_kind}): {output.error}")
    if len(failed) > limit:
        print(f"... and {len(failed) - limit} more failed requests")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    serve, dataset = configs_from_args(args)
    counter = TokenCounter.from_path(args.tokenizer) if args.tokenizer else None
    samples = get_samples(dataset, counter)
    model = serve.model or await discover_model(serve)
    if serve.sweep_concurrency:
        return await _run_sweep(args, serve, model, samples)
    return await _run_one(args, serve, model, samples)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark and returns the result dict (also what --save-result writes)."""
    args = build_parser().parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, RuntimeError) as error:  # bad flags or an unusable server: one line, no traceback
        print(f"bench_serve: error: {error}", file=sys.stderr)
        sys.exit(2)
