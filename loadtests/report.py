"""The printed summary and the JSON result of a run (vLLM's `vllm bench serve` keys, plus error_counts)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtests.metric_summary import percentile_key
from loadtests.metrics import BenchmarkMetrics
from loadtests.runner import BenchmarkRun

METRIC_TITLES = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
}


def format_report(run: BenchmarkRun, metrics: BenchmarkMetrics, request_rate: float,
                  percentile_metrics: tuple[str, ...]) -> str:
    lines = ["{:=^60}".format(" Serving Benchmark Result ")]

    def row(label: str, value: Any) -> None:
        lines.append(f"{label:<44} {value:.2f}" if isinstance(value, float) else f"{label:<44} {value}")

    row("Successful requests:", metrics.completed)
    row("Failed requests:", metrics.failed)
    for kind, count in sorted(metrics.error_counts.items()):
        row(f"  failed with {kind}:", count)
    if run.max_concurrency is not None:
        row("Maximum request concurrency:", run.max_concurrency)
    if not math.isinf(request_rate):
        row("Request rate configured (RPS):", request_rate)
    row("Benchmark duration (s):", run.duration_s)
    row("Total input tokens:", metrics.total_input)
    row("Total generated tokens:", metrics.total_output)
    row("Request throughput (req/s):", metrics.request_throughput)
    if metrics.request_goodput is not None:
        row("Request goodput (req/s):", metrics.request_goodput)
    row("Output token throughput (tok/s):", metrics.output_throughput)
    row("Total token throughput (tok/s):", metrics.total_token_throughput)
    row("Peak concurrent requests:", metrics.max_concurrent_requests)
    if run.spec_decode:
        row("Spec decode acceptance rate (%):", run.spec_decode["spec_decode_acceptance_rate"])
        row("Spec decode acceptance length:", run.spec_decode["spec_decode_acceptance_length"])
    for name in percentile_metrics:
        short, title = METRIC_TITLES[name]
        summary = metrics.summary(name)
        lines.append("{:-^60}".format(title))
        row(f"Mean {short} (ms):", summary.mean)
        row(f"Median {short} (ms):", summary.median)
        for p, value in summary.percentiles:
            if p == 50:
                continue  # the median, printed above
            row(f"P{percentile_key(p)[1:]} {short} (ms):", value)
    lines.append("=" * 60)
    return "\n".join(lines)


def build_result(run: BenchmarkRun, metrics: BenchmarkMetrics, percentile_metrics: tuple[str, ...],
                 header: dict[str, Any], detailed: bool) -> dict[str, Any]:
    """`header` carries the run's settings (date, backend, model_id, request_rate, ...)."""
    result: dict[str, Any] = {
        **header,
        "max_concurrency": run.max_concurrency,
        "duration": run.duration_s,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "error_counts": metrics.error_counts,
        "total_input_tokens": metrics.total_input,
        "total_output_tokens": metrics.total_output,
        "request_throughput": metrics.request_throughput,
        "request_goodput": metrics.request_goodput,
        "output_throughput": metrics.output_throughput,
        "total_token_throughput": metrics.total_token_throughput,
        "max_concurrent_requests": metrics.max_concurrent_requests,
    }
    for name in percentile_metrics:
        result.update(metrics.summary(name).to_dict(name))
    result.update(run.spec_decode or {})
    if detailed:
        result.update(_detailed(run))
    return result


def _detailed(run: BenchmarkRun) -> dict[str, list]:
    """Per-request arrays, in sample order; kept in the file only with --save-detailed (as vLLM)."""
    outs = run.outputs
    return {
        "input_lens": [o.prompt_tokens if o.prompt_tokens is not None else o.prompt_len for o in outs],
        "output_lens": [o.output_tokens if o.success else 0 for o in outs],
        "ttfts": [o.ttft for o in outs],
        "itls": [o.itl for o in outs],
        "latencies": [o.latency for o in outs],
        "start_times": [o.start_time for o in outs],
        "queue_times": [o.client_queue_time for o in outs],
        "generated_texts": [o.reasoning_text + o.generated_text for o in outs],
        "errors": [o.error for o in outs],
        "error_kinds": [o.error_kind for o in outs],
    }


def default_result_name(label: str, request_rate: float, max_concurrency: int | None, model_id: str) -> str:
    """vLLM's file naming: {label}-{rate}qps[-concurrency{c}]-{model basename}-{YYYYmmdd-HHMMSS}.json."""
    concurrency = f"-concurrency{max_concurrency}" if max_concurrency is not None else ""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{label}-{request_rate}qps{concurrency}-{model_id.rstrip('/').split('/')[-1]}-{stamp}.json"


def save_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # NOTE: allow_nan=False: an inf request rate is written as the string "inf" by the caller, never as Infinity.
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
