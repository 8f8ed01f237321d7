"""Benchmark-level metrics from per-request outputs, with the definitions of vLLM's serving benchmark.

- TPOT of a request = (latency - ttft) / (output_tokens - 1), only for outputs of more than one token;
- ITL = every gap between output chunks of every successful request, pooled;
- output tokens = the server's usage.completion_tokens; input tokens = usage.prompt_tokens (what the server
  prefilled, chat template included), else the client-side --tokenizer count;
- goodput = successful requests meeting every SLO given with --goodput, per second (TPOT counts as 0 for
  one-token outputs, as vLLM);
- failed requests are counted by error kind and never enter a latency or token figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtests.metric_summary import MetricSummary
from loadtests.request_func import RequestFuncOutput

LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
GOODPUT_METRICS = ("ttft", "tpot", "e2el")


def parse_goodput(items: Sequence[str] | None) -> dict[str, float]:
    """`["ttft:500", "tpot:50"]` -> {"ttft": 500.0, "tpot": 50.0} (milliseconds)."""
    slos: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition(":")
        if not sep or name not in GOODPUT_METRICS:
            raise ValueError(f"goodput: {item!r} must be NAME:MS with NAME in {GOODPUT_METRICS}")
        try:
            slos[name] = float(value)
        except ValueError:
            raise ValueError(f"goodput: {item!r} has a value that is not a number of milliseconds") from None
        if not slos[name] >= 0:
            raise ValueError(f"goodput: {item!r} must be >= 0 ms")
    return slos


def request_tpot(output: RequestFuncOutput) -> float | None:
    """Seconds per output token after the first; None for outputs of at most one token."""
    if output.output_tokens is None or output.output_tokens <= 1:
        return None
    return (output.latency - output.ttft) / (output.output_tokens - 1)


def input_tokens(output: RequestFuncOutput) -> int:
    if output.prompt_tokens is not None:
        return output.prompt_tokens
    return output.prompt_len or 0


def peak_concurrency(outputs: Sequence[RequestFuncOutput]) -> int:
    """Most requests in flight at once, over half-open intervals [start, start + latency)."""
    events = [(o.start_time, 1) for o in outputs] + [(o.start_time + o.latency, -1) for o in outputs]
    events.sort()  # NOTE: at equal times the -1 (departure) sorts first, so back-to-back requests do not overlap
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def latency_samples(outputs: Sequence[RequestFuncOutput]) -> dict[str, list[float]]:
    """Seconds per LATENCY_METRICS name over successful requests (ITL pooled over every chunk gap)."""
    ok = [o for o in outputs if o.success]
    return {
        "ttft": [o.ttft for o in ok],
        "tpot": [t for t in map(request_tpot, ok) if t is not None],
        "itl": [gap for o in ok for gap in o.itl],
        "e2el": [o.latency for o in ok],
    }


def is_good(output: RequestFuncOutput, slos_ms: Mapping[str, float]) -> bool:
    values_s = {"ttft": output.ttft, "tpot": request_tpot(output) or 0.0, "e2el": output.latency}
    return all(values_s[name] * 1000.0 <= slo for name, slo in slos_ms.items())


@dataclass(frozen=True)
class BenchmarkMetrics:
    completed: int
    failed: int
    # Failed requests by kind (http_503, timeout, stream_error, ...); empty when all succeeded.
    error_counts: dict[str, int]
    total_input: int
    total_output: int
    # Per second of benchmark duration.
    request_throughput: float
    request_goodput: float | None  # None when no --goodput SLO was given
    output_throughput: float
    total_token_throughput: float
    max_concurrent_requests: int
    # Milliseconds.
    ttft: MetricSummary
    tpot: MetricSummary
    itl: MetricSummary
    e2el: MetricSummary

    def summary(self, name: str) -> MetricSummary:
        return getattr(self, name)


def calculate_metrics(
    outputs: Sequence[RequestFuncOutput],
    duration_s: float,
    percentiles: Sequence[float],
    goodput_slos_ms: Mapping[str, float] | None = None,
) -> BenchmarkMetrics:
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    ok = [o for o in outputs if o.success]
    total_input = sum(input_tokens(o) for o in ok)
    total_output = sum(o.output_tokens or 0 for o in ok)
    samples = latency_samples(ok)
    good = sum(is_good(o, goodput_slos_ms) for o in ok) if goodput_slos_ms else None
    return BenchmarkMetrics(
        completed=len(ok),
        failed=len(outputs) - len(ok),
        error_counts=dict(Counter(o.error_kind or "unknown" for o in outputs if not o.success)),
        total_input=total_input,
        total_output=total_output,
        request_throughput=len(ok) / duration_s,
        request_goodput=None if good is None else good / duration_s,
        output_throughput=total_output / duration_s,
        total_token_throughput=(total_input + total_output) / duration_s,
        max_concurrent_requests=peak_concurrency(ok),
        ttft=MetricSummary.of_seconds(samples["ttft"], percentiles),
        tpot=MetricSummary.of_seconds(samples["tpot"], percentiles),
        itl=MetricSummary.of_seconds(samples["itl"], percentiles),
        e2el=MetricSummary.of_seconds(samples["e2el"], percentiles),
    )
